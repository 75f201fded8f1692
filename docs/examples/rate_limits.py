"""A nightly copy that shares the app's rate budget with its web workers: when the budget
has no room, it waits as long as it is told and goes on where it stopped."""

import time

from flask_spark import RateLimited


def copy_everything(api, save, sleep=time.sleep):
    """Save every listing of the replication host; returns how often it had to wait."""
    since, waits = None, 0
    while True:
        run = api.replicate("/listings", _skiptoken=since)
        try:
            for listing in run:
                save(listing)
            return waits
        except RateLimited as exc:
            since = run.skiptoken  # the last listing saved
            waits += 1
            sleep(exc.retry_after or 60)
