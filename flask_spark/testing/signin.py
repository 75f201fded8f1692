""":func:`sign_in`: a Flask test client signs in through the simulator as a browser does,
for an app's own tests."""

from __future__ import annotations

import http.client
import re
import ssl
from typing import TYPE_CHECKING, Protocol
from urllib.parse import parse_qs, urlencode, urlsplit

if TYPE_CHECKING:
    from flask.testing import FlaskClient
    from werkzeug.test import TestResponse

__all__ = ["sign_in"]

_TITLE = re.compile(r"<title>([^<]{0,200})</title>")


class Platform(Protocol):
    """What :func:`sign_in` needs of the simulator: a running
    :class:`~flask_spark.testing.SparkPlatform` has it all."""

    @property
    def platform_url(self) -> str: ...

    @property
    def ca_file(self) -> str | None: ...

    @property
    def auto_approve(self) -> bool: ...


def sign_in(
    client: FlaskClient,
    platform: Platform,
    *,
    login: str = "/login",
    next: str | None = None,
    user: str | None = None,
    approve: bool = True,
) -> TestResponse:
    """Walk one sign-in as a browser would, and return the app's answer to its callback:
    ``GET <login>`` on the app, the platform's authorization page, then the app's
    ``/callback`` with what the platform sent back. A sign-in that went through answers
    303 (to ``next`` or ``SPARK_LOGIN_REDIRECT``) and leaves ``client`` signed in.

    ::

        from flask_spark.testing import sign_in

        def test_dashboard(client, spark_platform):
            assert sign_in(client, spark_platform, next="/dashboard").status_code == 303
            assert client.get("/dashboard").status_code == 200

    :param client: the app's test client (it keeps the session cookie).
    :param platform: the running simulator the app is pointed at (the ``spark_platform``
        fixture).
    :param login: the path of the instance's ``/login`` (``"/portal/lakes/login"``...).
    :param next: where the app should go after the sign-in.
    :param user: the ``Id`` of the account that approves on the consent page (one of
        :data:`~flask_spark.testing.ACCOUNTS`, or a VOW portal's
        :func:`~flask_spark.testing.consumers`); the platform's first by default.
    :param approve: ``False`` clicks "Deny" on the consent page instead.
    :raises AssertionError: the app or the platform did not answer as a sign-in goes
        (not a redirect where one was due), with what they answered.
    """
    path = f"{login}?{urlencode({'next': next})}" if next is not None else login
    started = client.get(path)
    location = started.headers.get("Location", "")
    if started.status_code not in (302, 303) or not location.startswith(platform.platform_url):
        raise AssertionError(
            f"GET {path} answered {started.status_code}, not a redirect to the platform "
            f"at {platform.platform_url}"
        )
    status, callback, title = _authorize(platform, location, user, approve)
    if status != 302:
        raise AssertionError(f"the platform answered {status} ({title}), not a redirect")
    parts = urlsplit(callback)
    return client.get(f"{parts.path}?{parts.query}" if parts.query else parts.path)


def _authorize(
    platform: Platform, url: str, user: str | None, approve: bool
) -> tuple[int, str, str]:
    """Visit the authorization page at ``url``: a plain visit when the platform
    approves by itself, else the consent form sent with the decision. Returns the
    status, the ``Location`` and the page's title (never its text, which may repeat the
    request)."""
    parts = urlsplit(url)
    assert parts.hostname is not None
    if parts.scheme == "https":
        context = ssl.create_default_context(cafile=platform.ca_file)
        conn: http.client.HTTPConnection = http.client.HTTPSConnection(
            parts.hostname, parts.port, context=context, timeout=30
        )
    else:
        conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
    try:
        if platform.auto_approve and user is None and approve:
            conn.request("GET", f"{parts.path}?{parts.query}")
        else:
            fields = {name: values[0] for name, values in parse_qs(parts.query).items()}
            fields["decision"] = "approve" if approve else "deny"
            if user is not None:
                fields["user"] = user
            conn.request(
                "POST",
                parts.path,
                body=urlencode(fields).encode(),
                headers={"Content-Type": "application/x-www-form-urlencoded"},
            )
        reply = conn.getresponse()
        page = reply.read(65536).decode("utf-8", "replace")
        title = _TITLE.search(page)
        return reply.status, reply.getheader("Location") or "", title[1] if title else "no title"
    finally:
        conn.close()
