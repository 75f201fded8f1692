"""A copy of the MLS's Fargo listings that goes on where it stopped."""

from flask_spark.sparkql import field


def copy_listings(api, save, checkpoint, since=None):
    """Save every listing after ``since``; ``checkpoint`` hears where the copy has got to.
    Returns the pages fetched."""
    run = api.replicate("/listings", _filter=field("City") == "Fargo", _skiptoken=since)
    for listing in run:
        save(listing)
        checkpoint(run.skiptoken)
    return run.calls
