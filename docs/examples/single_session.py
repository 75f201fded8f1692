"""Single-session keys: one app-wide grant for jobs and anonymous pages."""

import click
from flask import Flask

from flask_spark import spark_api


def register_commands(app: Flask) -> None:
    @app.cli.command("count-listings")
    def count_listings():
        """Print how many listings the key can see: no browser, no sign-in."""
        answer = spark_api.request("GET", "/listings", params={"_pagination": "count"})
        click.echo(f"{answer.pagination['TotalRows']} listings")
