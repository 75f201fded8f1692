"""``flask spark``: the commands a developer or an operator runs against an app: its
grants, a check of its settings against the platform, and a local simulator for it."""

from __future__ import annotations

import sys
import time
from typing import TYPE_CHECKING
from urllib.parse import urlsplit, urlunsplit

import click
from flask import current_app
from flask.cli import with_appcontext
from werkzeug.routing import BuildError

from .admin import GrantAdmin
from .checks import check_instance
from .config import is_loopback_host
from .instance import Instance
from .registry import instances

if TYPE_CHECKING:
    from .testing.server import SimulatorServer


@click.group("spark")
def spark_command() -> None:
    """Flask-Spark: sign in with Flexmls."""


@spark_command.group("grants")
def grants_command() -> None:
    """The stored grants of this app's keys."""


_INSTANCE_OPTION = click.option(
    "--instance",
    default=None,
    metavar="NAME",
    help="Only this Spark instance's grants (an app may have several).",
)


def _instances(name: str | None) -> list[Instance]:
    """Every Spark instance on the app, or the one named ``name``."""
    found = instances()
    if not found:
        raise click.ClickException("Flask-Spark is not set up on this app")
    if name is None:
        return list(found.values())
    if name not in found:
        raise click.ClickException(
            f"No Spark instance named {name!r} (there are: {', '.join(sorted(found))})"
        )
    return [found[name]]


def _admins(instance: str | None) -> list[GrantAdmin]:
    """The grant admins of every instance on the app, or of ``instance``."""
    return [GrantAdmin(found) for found in _instances(instance)]


_APP_URL_OPTION = click.option(
    "--app-url",
    default="http://127.0.0.1:5000",
    show_default=True,
    metavar="URL",
    help="Where the app is served: its callback URLs are made from it "
    "(unless SPARK_REDIRECT_URI names one).",
)


def _callback_urls(instance: Instance, app_url: str) -> list[str]:
    """The redirect URIs sign-ins of ``instance`` send when the app is served at ``app_url``:
    ``SPARK_REDIRECT_URI``, else the blueprint's ``/callback`` there (and on ``localhost``
    too for ``127.0.0.1``). None when the callback's URL needs a portal."""
    if instance.config.redirect_uri:
        return [instance.config.redirect_uri]
    with current_app.test_request_context(base_url=app_url):
        try:
            url = current_app.url_for(f"{instance.name}.callback", _external=True)
        except BuildError:  # url_prefix="/<portal>": one callback per portal
            return []
    parts = urlsplit(url)
    if parts.hostname == "127.0.0.1":
        twin = parts._replace(netloc=parts.netloc.replace("127.0.0.1", "localhost", 1))
        return [url, urlunsplit(twin)]
    return [url]


def _when(at: float) -> str:
    if not at:
        return "-"
    return time.strftime("%Y-%m-%d %H:%M", time.localtime(at))


@grants_command.command("list")
@_INSTANCE_OPTION
@with_appcontext
def list_grants(instance: str | None) -> None:
    """List grants: account, scope, expiry, last use (no tokens)."""
    admins = _admins(instance)
    rows = [info for admin in admins for info in admin.list()]
    if not rows:
        click.echo("No grants.")
        return
    several = len(instances()) > 1
    first = f"{'INSTANCE':<12} " if several else ""
    click.echo(f"{first}{'ACCOUNT':<28} {'SCOPE':<24} {'EXPIRES':<16} {'LAST USED':<16} NAME")
    for info in rows:
        expires = "ended" if info.ended else _when(info.expires_at)
        first = f"{info.instance:<12} " if several else ""
        click.echo(
            f"{first}{info.account_id:<28} {info.scope:<24} {expires:<16} "
            f"{_when(info.last_used_at):<16} {info.name or ''}"
        )


@grants_command.command("revoke")
@click.argument("account_id")
@click.option("--scope", default=None, help="Only this scope (idx, private, vow/<portal>).")
@_INSTANCE_OPTION
@with_appcontext
def revoke_grants(account_id: str, scope: str | None, instance: str | None) -> None:
    """End ACCOUNT_ID's grants: sign out every browser, revoke at the platform."""
    count = sum(admin.revoke(account_id, scope) for admin in _admins(instance))
    if not count:
        raise click.ClickException(
            f"No grant of account {account_id}" + (f" in {scope}" if scope else "")
        )
    click.echo(f"Revoked {count} grant{'s' if count != 1 else ''} of account {account_id}.")


@spark_command.command("check")
@_APP_URL_OPTION
@click.option(
    "--portal", default=None, help="The VOW portal to try (VOW keys sign in per portal)."
)
@_INSTANCE_OPTION
@with_appcontext
def check(app_url: str, portal: str | None, instance: str | None) -> None:
    """Check the settings against the platform: the authorization endpoint (and whether it
    takes this app's redirect URI), the key at the token endpoint, and the API."""
    failed = 0
    for found in _instances(instance):
        urls = _callback_urls(found, app_url)
        if not urls and portal:
            with current_app.test_request_context(base_url=app_url):
                urls = [
                    current_app.url_for(f"{found.name}.callback", portal=portal, _external=True)
                ]
        if not urls:
            raise click.ClickException(
                f"The {found.name!r} instance's callback URL needs a portal: pass --portal"
            )
        click.echo(f"{found.name} (key {found.config.client_id}):")
        for finding in check_instance(found, urls[0], portal):
            failed += not finding.ok
            mark = "ok  " if finding.ok else "FAIL"
            click.echo(f"  {mark} {finding.what}: {finding.detail}")
    if failed:
        click.echo(f"{failed} check{'s' if failed != 1 else ''} failed.", err=True)
        sys.exit(1)
    click.echo("Everything answered as it should.")


@spark_command.command("simulate")
@click.option("--host", default="127.0.0.1", show_default=True, help="A loopback address.")
@click.option("--port", default=5001, show_default=True, help="The port (0 for any free one).")
@click.option("--tls", is_flag=True, help="Serve HTTPS with a throwaway CA.")
@click.option(
    "--redirect-uri",
    "redirect_uris",
    multiple=True,
    metavar="URI",
    help="A redirect URI to accept (repeatable; default: the app's callback URLs).",
)
@_APP_URL_OPTION
@click.option("--auto-approve", is_flag=True, help="Skip the consent page.")
@with_appcontext
def simulate(
    host: str,
    port: int,
    tls: bool,
    redirect_uris: tuple[str, ...],
    app_url: str,
    auto_approve: bool,
) -> None:
    """Run the Spark platform simulator for this app's keys, in the foreground.

    It accepts each instance's SPARK_CLIENT_ID and SPARK_CLIENT_SECRET (any values) and the
    app's callback URLs, and prints the settings that point the app at it. Needs
    Flask-Spark's testing extra.
    """
    from .testing.platform import SparkPlatform
    from .testing.server import serve

    if not is_loopback_host(host):
        raise click.BadParameter(f"must be a loopback address, not {host!r}", param_hint="--host")
    clients: dict[str, tuple[str, list[str]]] = {}
    for found in _instances(None):
        uris = list(redirect_uris) or _callback_urls(found, app_url)
        secret, known = clients.setdefault(
            found.config.client_id, (found.config.client_secret, [])
        )
        known.extend(uri for uri in uris if uri not in known)
    if not any(uris for _, uris in clients.values()):
        raise click.ClickException(
            "No callback URL to accept (the callback needs a portal): pass --redirect-uri"
        )
    (client_id, (secret, uris)), *others = clients.items()
    platform = SparkPlatform(client_id, secret, uris, auto_approve=auto_approve)
    for other_id, (other_secret, other_uris) in others:
        if other_uris:
            platform.register_client(other_id, other_secret, other_uris)

    def describe(server: SimulatorServer) -> str:
        settings = [f"SPARK_PLATFORM_URL={server.url}", f"SPARK_API_URL={server.url}"]
        settings.append(
            f"SPARK_CA_CERTS={server.ca_file}" if tls else "SPARK_ALLOW_HTTP_LOOPBACK=1"
        )
        accepted = "\n".join(f"  {uri}" for _, known in clients.values() for uri in known)
        return (
            f"Spark platform simulator listening on {server.url} (Ctrl-C to stop).\n"
            f"It accepts the app's keys and these redirect URIs:\n{accepted}\n"
            "Point the app at it with these settings:\n  " + " ".join(settings)
        )

    status = serve(platform, describe, tls=tls, host=host, port=port)
    if status:
        sys.exit(status)
