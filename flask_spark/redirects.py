"""Where a sign-in may send the browser back to: same-site paths only."""

from __future__ import annotations

from urllib.parse import urlsplit

_MAX_NEXT = 2048


def safe_next(value: str | None) -> str | None:
    """``value`` if it is a path on this site, else ``None``.

    Accepted: a path that starts with exactly one ``/`` (not ``//`` nor ``/\\``), in
    printable ASCII with no spaces, backslashes or control characters, that parses with
    no scheme and no host. Everything else (``//host``, ``/\\host``, ``/\\t/host``,
    ``https:host``, leading spaces, over-long values) is refused: the caller falls back to
    the landing page.
    """
    if not value or len(value) > _MAX_NEXT:
        return None
    if any(not ("\x21" <= ch <= "\x7e") for ch in value) or "\\" in value:
        return None
    if not value.startswith("/") or value.startswith("//"):
        return None
    try:
        parts = urlsplit(value)
    except ValueError:
        return None
    if parts.scheme or parts.netloc or not parts.path.startswith("/"):
        return None
    return value
