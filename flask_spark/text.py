"""Text that came from the platform (an OAuth ``error``, an ``error_description``),
made fit to show on a page or put in a message: printable characters only, capped."""

from __future__ import annotations

#: The longest text kept, in characters.
MAX_TEXT = 300


def printable(value: object, limit: int = MAX_TEXT) -> str:
    """``value``'s printable characters, at most ``limit`` of them (the last one an
    ellipsis when cut); ``""`` for anything but a string."""
    text = value if isinstance(value, str) else ""
    text = "".join(ch for ch in text if ch.isprintable())
    if len(text) > limit:
        text = text[: limit - 1] + "…"
    return text
