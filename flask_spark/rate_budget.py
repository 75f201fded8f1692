"""One rate budget per app key, shared by every thread, worker and host of the app.

The platform limits each key to so many requests in any window of five minutes (1,500
for IDX keys, 4,000 for VOW and Private ones) and answers code 1550 past it. Counting the
calls in the grant store before they are sent keeps every worker under that limit
together, instead of each one finding it as 429s and backing off alone.

A call is counted shortly before it is sent, and holds its place for the window plus a
small margin (1% of the window, from 50 ms to one second) that covers the time it takes
to reach the platform and a little clock difference between hosts.

A busy process counts its calls in small batches: one round trip to the store counts
the calls it expects in the next half margin, and they are sent from memory. A batch
doubles (up to :data:`MAX_BATCH`, and to 1/64 of the limit) each time it runs out within
its half margin, and shrinks to what was used when some of it was not, so a quiet process
counts one call at a time and a small limit is never counted in advance. Places counted
and never used are lost to the window, never added to it.
"""

from __future__ import annotations

import logging
import math
import threading
import time

from .errors import RateLimited, StoreUnavailable
from .stores.base import MAX_BATCH, GrantStore, rate_bucket

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
        #: How long places counted in advance stay usable: half the margin, so a call
        #: sent at the end of it still leaves the window before its place does.
        self._fresh = margin(window) / 2
        self._max_batch = max(1, min(MAX_BATCH, limit // 64))
        self._lock = threading.Lock()
        self._batch = 1  # the calls the next round trip counts
        self._counted = 0  # the calls the last one counted,
        self._left = 0  # how many of them are still unsent,
        self._usable_until = 0.0  # and until when they may be sent
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
            with self._lock:
                now = time.time()
                if self._left > 0 and now < self._usable_until:
                    self._left -= 1
                    return
                try:
                    counted, wait = self._store.spend(
                        self._bucket, self.limit, self._held, now, self._next_batch(now)
                    )
                except StoreUnavailable:
                    self._warn(now, _UNCOUNTED)
                    return
                if counted:
                    self._counted, self._left = counted, counted - 1
                    self._usable_until = now + self._fresh
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

    def _next_batch(self, now: float) -> int:
        """How many calls to count at ``now``, from how the last batch went (under the
        lock): twice as many when it ran out while still usable, as many as were used
        when some of it was not."""
        if self._left:
            self._batch = max(1, self._counted - self._left)
        elif now < self._usable_until:
            self._batch = min(self._batch * 2, self._max_batch)
        self._left = 0
        return self._batch

    def _warn(self, now: float, text: str, *args: object) -> None:
        """Log ``text`` at most once per :data:`WARN_INTERVAL`."""
        if now - self._warned_at.get(text, -math.inf) >= WARN_INTERVAL:
            self._warned_at[text] = now
            log.warning(text, *args)


__all__ = ["MAX_BATCH", "PUBLISHED_LIMITS", "PUBLISHED_WINDOW", "RateBudget", "margin"]
