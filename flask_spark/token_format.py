"""What a token from the platform may look like before anything stores or sends it.

RFC 6750's ``b64token``: ASCII letters, digits and ``-._~+/``, then optional ``=``
padding, at most :data:`MAX_TOKEN_LENGTH` characters. Anything else (CR/LF, spaces,
non-ASCII, megabytes) is refused where it enters, so no header is ever built from it.
"""

from __future__ import annotations

import re

#: The longest access or refresh token taken from the platform (Spark's are ~30 characters).
MAX_TOKEN_LENGTH = 4096

_TOKEN_RE = re.compile(r"[A-Za-z0-9\-._~+/]+=*")


def is_token(value: object) -> bool:
    """Whether ``value`` is a string a token may be: RFC 6750's charset, not too long."""
    return (
        isinstance(value, str)
        and 0 < len(value) <= MAX_TOKEN_LENGTH
        and _TOKEN_RE.fullmatch(value) is not None
    )


def authorization(token: str, scheme: str = "OAuth") -> str:
    """The ``Authorization`` header value for ``token`` (``OAuth <token>``, or ``Bearer
    <token>`` with that ``scheme``).

    :raises ValueError: ``token`` is not a token (the message never holds it).
    """
    if not is_token(token):
        raise ValueError("refusing to send a malformed token")
    return f"{scheme} {token}"
