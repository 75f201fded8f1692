"""The pages and JSON answers Flask-Spark shows: sign-in failures, "please sign in",
"try again later". Each page is a template an app may override (``spark/<reason>.html``,
then ``spark/error.html``)."""

from __future__ import annotations

import contextlib
import math
from typing import Any

from flask import jsonify, redirect, render_template, request, url_for
from werkzeug.wrappers import Response

from .errors import PlatformUnavailable, RateLimited, SparkError, StoreUnavailable
from .redirects import safe_next
from .text import printable

#: Title and message of each sign-in failure, by reason.
REASONS: dict[str, tuple[str, str]] = {
    "cancelled": (
        "Sign-in cancelled",
        "You cancelled signing in with Flexmls. Nothing was shared.",
    ),
    "platform_error": (
        "Sign-in did not finish",
        "Flexmls could not complete the sign-in.",
    ),
    "no_cookie": (
        "Sign-in could not be matched to your browser",
        (
            "Your browser did not send back this site's session cookie. This happens when "
            "cookies are blocked, when the site is opened under another host name than the "
            "one registered (for example localhost and 127.0.0.1), or when the session "
            "cookie uses SameSite=Strict."
        ),
    ),
    "unknown_state": (
        "Sign-in link not recognised",
        "This sign-in link was already used or does not belong to this browser session.",
    ),
    "expired_state": (
        "Sign-in took too long",
        "This sign-in started too long ago. Please sign in again.",
    ),
    "bad_request": (
        "Sign-in link not valid",
        "The address Flexmls sent you back to was malformed.",
    ),
    "exchange_failed": (
        "Sign-in did not finish",
        "Flexmls did not accept the sign-in. Please try again.",
    ),
    "cross_site": (
        "Sign-out refused",
        "Signing out must be requested from a page of this site.",
    ),
    "store_unavailable": (
        "Sign-in did not finish",
        "Sign-in storage is unavailable right now. Please try again in a moment.",
    ),
    "platform_unavailable": (
        "Sign-in did not finish",
        "Flexmls could not be reached. Please try again in a moment.",
    ),
    "id_token_invalid": (
        "Sign-in could not be verified",
        (
            "Flexmls's answer to this sign-in failed a check, so nothing was kept. "
            "Please try again; if it keeps happening, tell the site's administrators."
        ),
    ),
    "busy": (
        "Sign-in did not finish",
        (
            "This site is making as many requests to Flexmls as it may right now. "
            "Please try again in a minute."
        ),
    ),
}


def clean_description(value: str | None) -> str | None:
    """The platform's ``error_description``, printable and capped (Jinja escapes it);
    ``None`` when nothing is left."""
    return printable(value) or None


def wants_json() -> bool:
    """Whether the current request prefers JSON over HTML."""
    if request.is_json:
        return True
    best = request.accept_mimetypes.best_match(["text/html", "application/json"])
    return (
        best == "application/json"
        and request.accept_mimetypes[best] > request.accept_mimetypes["text/html"]
    )


def error_page(reason: str, status: int, *, offer_login: bool = True, **context: Any) -> Response:
    """Render the page for ``reason`` with ``status``; no-store, no referrer."""
    title, message = REASONS.get(reason, ("Something went wrong", ""))
    html = render_template(
        [f"spark/{reason}.html", "spark/error.html"],
        reason=reason,
        title=title,
        message=message,
        status=status,
        login_url=url_for("spark.login") if offer_login else None,
        **context,
    )
    return private(Response(html, status=status, mimetype="text/html"))


def uncached(response: Response) -> Response:
    """``response``, kept out of every cache: it is for this browser, now."""
    response.headers["Cache-Control"] = "no-store"
    return response


def private(response: Response) -> Response:
    """``response``, kept out of caches and sending no referrer: a page or redirect of a
    sign-in (its URL can hold a code or a state)."""
    response.headers["Referrer-Policy"] = "no-referrer"
    return uncached(response)


def login_url_for_here(instance: str) -> str:
    """``instance``'s ``/login?next=<the current page>``, mount point (``SCRIPT_NAME``)
    included."""
    here = request.script_root + request.path
    if request.query_string:
        with contextlib.suppress(UnicodeDecodeError):  # not UTF-8: drop the query
            here = f"{here}?{request.query_string.decode()}"
    return url_for(f"{instance}.login", next=safe_next(here))


def unauthorized(instance: str) -> Response:
    """Not signed in: redirect pages to ``instance``'s sign-in, answer JSON requests with
    401."""
    if wants_json():
        response = jsonify(error="not_signed_in", message="Sign in with Flexmls first.")
        response.status_code = 401
        response.headers["WWW-Authenticate"] = 'Cookie realm="Flexmls sign-in"'
        return response
    return redirect(login_url_for_here(instance), code=302)


def unavailable(error: SparkError) -> Response:
    """Platform down, rate limited or token store down: 503 with ``Retry-After``."""
    retry_after: float | None = None
    if isinstance(error, RateLimited | PlatformUnavailable):
        retry_after = error.retry_after
    seconds = max(1, math.ceil(retry_after)) if retry_after is not None else 30
    if isinstance(error, RateLimited) and error.from_budget:
        message = (
            "This site is making as many requests to Flexmls as it may right now. "
            "Please try again shortly."
        )
    elif isinstance(error, RateLimited):
        message = "Flexmls asked us to slow down. Please try again shortly."
    elif isinstance(error, StoreUnavailable):
        message = "Sign-in storage is unavailable right now. Please try again shortly."
    else:
        message = "Flexmls could not be reached. Please try again shortly."
    response: Response
    if wants_json():
        response = jsonify(error="unavailable", message=message)
        response.status_code = 503
    else:
        response = Response(
            render_template(
                ["spark/unavailable.html", "spark/error.html"],
                reason="unavailable",
                title="Temporarily unavailable",
                message=message,
                status=503,
                login_url=None,
            ),
            status=503,
            mimetype="text/html",
        )
    response.headers["Retry-After"] = str(seconds)
    return uncached(response)
