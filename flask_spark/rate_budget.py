"""One rate budget per app key, shared by every thread, worker and host of the app.

The platform limits each key to so many requests in any window of five minutes (1,500
for IDX keys, 4,000 for VOW and Private ones) and answers code 1550 past it. Counting the
calls in the grant store before they are sent keeps every worker under that limit
together, instead of each one finding it as 429s and backing off alone.

A call is counted when it is about to be sent, and holds its place for the window plus a
small margin (1% of the window, from 50 ms to one second) that covers the time it takes
to reach the platform and a little clock difference between hosts.
"""

from __future__ import annotations

import logging
import math
import time

from .errors import RateLimited, StoreUnavailable
from .stores.base import GrantStore, rate_bucket

log = logging.getLogger("flask_spark")

#: The platform's published limits: requests per :data:`PUBLISHED_WINDOW`, by role.
PUBLISHED_LIMITS = {"idx": 1500, "vow": 4000, "private": 4000}
#: The platform's window, in seconds ("any five-minute period").
PUBLISHED_WINDOW = 300.0
#: Seconds between two warnings of one kind.
WARN_INTERVAL = 60.0
_UNCOUNTED = (
    "Rate budget: the grant store does not answer; calls go to the platform uncounted "
    "until it does"
)
_SPENT = (
    "Rate budget: %d calls per %g s spent; calls are refused before the platform until "
    "some leave the window"
)


def margin(window: float) -> float:
    """Seconds a counted call holds its place past ``window``: 1% of it, at least 50 ms
    (a busy host's scheduling) and at most one second."""
    return min(1.0, max(0.05, 0.01 * window))


class RateBudget:
    """The shared budget of one app key: :meth:`spend` before each call.

    :param store: where the calls are counted (the app's grant store).
    :param client_id: the app key whose calls these are.
    :param limit: calls allowed in any ``window`` seconds.
    :param max_wait: the longest a call waits for room; one that would wait longer
        raises :class:`~flask_spark.errors.RateLimited` at once.
    """

    def __init__(
        self,
        store: GrantStore,
        client_id: str,
        limit: int,
        window: float,
        max_wait: float,
    ) -> None:
        self.limit = limit
        self.window = window
        self.max_wait = max_wait
        self._store = store
        self._bucket = rate_bucket(client_id)
        self._held = window + margin(window)
        self._warned_at: dict[str, float] = {}

    def __repr__(self) -> str:
        return f"<RateBudget {self.limit} calls per {self.window:g} s>"

    def spend(self) -> None:
        """Count one call, waiting for room up to :attr:`max_wait` seconds in all.

        If the store does not answer, the call is let through uncounted (and a warning
        logged): the platform's own limit still answers 1550, which is handled as ever.

        :raises RateLimited: the budget has no room within :attr:`max_wait`; nothing was
            sent. Its ``retry_after`` says when there will be.
        """
        deadline: float | None = None
        while True:
            now = time.time()
            try:
                wait = self._store.spend(self._bucket, self.limit, self._held, now)
            except StoreUnavailable:
                self._warn(now, _UNCOUNTED)
                return
            if wait <= 0:
                return
            if deadline is None:
                deadline = now + self.max_wait
            if now + wait > deadline:
                self._warn(now, _SPENT, self.limit, self.window)
                raise RateLimited(
                    429,
                    None,
                    f"Over this app's shared rate budget ({self.limit} calls per "
                    f"{self.window:g} s); the call was not sent. Room in {wait:.1f} s",
                    retry_after=float(math.ceil(wait)),
                    from_budget=True,
                )
            time.sleep(wait)

    def _warn(self, now: float, text: str, *args: object) -> None:
        """Log ``text`` at most once per :data:`WARN_INTERVAL`."""
        if now - self._warned_at.get(text, -math.inf) >= WARN_INTERVAL:
            self._warned_at[text] = now
            log.warning(text, *args)


__all__ = ["PUBLISHED_LIMITS", "PUBLISHED_WINDOW", "RateBudget", "margin"]
