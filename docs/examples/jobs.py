"""Work for signed-in agents with no browser there: spark.client_for and spark.grants."""

import click
from flask import Flask
from flask.cli import with_appcontext

from flask_spark import NotSignedIn, Spark

spark = Spark()  # spark.init_app(app) in the app factory


@click.command("count-listings-for")
@click.argument("account_id")
@with_appcontext
def count_listings_for(account_id):
    """Print how many listings ACCOUNT_ID sees, with the grant of their sign-in."""
    api = spark.client_for(account_id)  # the configured role's scope, or scope="vow/..."
    try:
        answer = api.request("GET", "/listings", params={"_pagination": "count"})
    except NotSignedIn:  # never signed in, signed out, or revoked at Flexmls
        raise click.ClickException(f"{account_id} has to sign in again") from None
    click.echo(f"{answer.pagination['TotalRows']} listings")


def nightly_counts(app: Flask) -> dict[str, int]:
    """A scheduled job (a thread, a task queue's worker): every stored grant, in turn."""
    counts = {}
    with app.app_context():
        for grant in spark.grants.list():
            api = spark.client_for(grant.account_id, grant.scope)
            try:
                answer = api.request("GET", "/listings", params={"_pagination": "count"})
            except NotSignedIn:
                continue  # that agent signed out meanwhile
            counts[grant.account_id] = answer.pagination["TotalRows"]
    return counts


def init_app(app: Flask) -> None:
    """In the app factory, after Session(app)."""
    spark.init_app(app)
    app.cli.add_command(count_listings_for)  # flask count-listings-for <account id>
