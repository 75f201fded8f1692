"""The authorization endpoint's HTML: the consent page and the error page."""

from __future__ import annotations

import html
from collections.abc import Mapping, Sequence
from typing import Any

from werkzeug.wrappers import Response

__all__ = ["consent_page", "error_page"]

#: Readable from a 320 px phone up: one column, controls as wide as the page on a phone,
#: long URIs wrapped rather than scrolled.
_STYLE = (
    "body{font-family:system-ui,sans-serif;max-width:32rem;margin:3rem auto;padding:0 1rem;"
    "line-height:1.5}code,strong{overflow-wrap:anywhere}"
    "button{margin:0 .5rem .5rem 0;padding:.5rem 1.2rem;font:inherit}"
    "select{margin:.5rem 0 1rem;padding:.4rem;font:inherit;max-width:100%}"
    "dt{font-weight:600}dd{margin:0 0 .75rem}"
    "@media (max-width:30rem){body{margin:1.5rem auto}button,select{width:100%}}"
)

_HEADERS = {
    "Cache-Control": "no-store",
    "X-Frame-Options": "DENY",
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'",
}


def _page(
    status: int, title: str, body: str, headers: Mapping[str, str] | None = None
) -> Response:
    """A page of the simulator: ``body`` (markup) under ``title`` (escaped), styled,
    uncached, never framed; ``headers`` added."""
    text = (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f"<title>{html.escape(title)}</title>\n<style>{_STYLE}</style>\n</head>\n"
        f"<body>\n{body}</body>\n</html>\n"
    )
    return Response(
        text,
        status,
        headers={**_HEADERS, **(headers or {})},
        content_type="text/html; charset=utf-8",
    )


def html_response(
    status: int,
    title: str,
    *paragraphs: str,
    headers: dict[str, str] | None = None,
) -> Response:
    """A small error page: ``title`` as its heading and ``paragraphs``, all escaped."""
    body = "".join(f"<p>{html.escape(p)}</p>\n" for p in paragraphs)
    return _page(status, title, f"<h1>{html.escape(title)}</h1>\n{body}", headers)


def consent_page(
    action: str,
    params: Mapping[str, str],
    client_id: str,
    portal: str | None,
    accounts: Sequence[Mapping[str, Any]],
) -> Response:
    """The page a user approves or denies an application on.

    It posts back to ``action`` with the authorization request's ``params`` in hidden
    fields, the chosen ``user`` and ``decision=approve`` or ``decision=deny``.
    """
    esc = html.escape
    hidden = "".join(
        f'<input type="hidden" name="{esc(name)}" value="{esc(value)}">\n'
        for name, value in params.items()
    )
    options = "".join(
        f'<option value="{esc(a["Id"])}"{" selected" if i == 0 else ""}>'
        f"{esc(a['Name'])} ({esc(a['UserType'])})</option>\n"
        for i, a in enumerate(accounts)
    )
    where = f'<p>Portal: <strong class="portal">{esc(portal)}</strong></p>\n' if portal else ""
    body = (
        "<h1>Authorize application</h1>\n"
        f'<p>The application <strong class="client-id">{esc(client_id)}</strong> '
        "asks to access your Flexmls account.</p>\n"
        f"{where}"
        f'<form method="post" action="{esc(action)}">\n{hidden}'
        '<label for="user">Sign in as</label><br>\n'
        f'<select id="user" name="user">\n{options}</select><br>\n'
        '<button type="submit" name="decision" value="approve">Approve</button>\n'
        '<button type="submit" name="decision" value="deny">Deny</button>\n'
        "</form>\n"
    )
    return _page(200, "Authorize application", body)


def error_page(
    status: int, error: str, description: str, details: Sequence[tuple[str, str]] = ()
) -> Response:
    """An authorization error shown to the user instead of a redirect, with ``details``
    (label, text) for the developer looking at it."""
    esc = html.escape
    rows = "".join(
        f"<dt>{esc(label)}</dt><dd><code>{esc(text)}</code></dd>\n" for label, text in details
    )
    body = (
        "<h1>Authorization error</h1>\n"
        f'<p>Error: <code class="error">{esc(error)}</code></p>\n'
        f'<p class="error-description">{esc(description)}</p>\n'
        + (f'<dl class="details">\n{rows}</dl>\n' if rows else "")
    )
    return _page(status, "Authorization error", body)
