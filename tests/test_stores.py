"""Every grant store keeps the promises of :class:`~flask_spark.stores.base.GrantStore`.

The same tests run against each backend (``any_store``: memory, SQLite, PostgreSQL,
MariaDB, Redis standalone, Sentinel and Cluster). Times are the ``now`` arguments the
protocol takes, never sleeps: a test says which moment each call happens at.
"""

from __future__ import annotations

import multiprocessing
import os
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from typing import Any

import pytest
import sqlalchemy as sa

from flask_spark.stores import GrantStore, store_from_url
from flask_spark.stores.base import (
    TOUCH_INTERVAL,
    Binding,
    Grant,
    GrantKey,
    Tokens,
    new_secret,
    rate_bucket,
)
from flask_spark.stores.sql import SQLGrantStore, _lost_race

from .store_fixtures import clean_store_url

KEY = GrantKey("client-a", "account-1", "idx")
#: How many threads, and how many processes, race for one lease or one pending sign-in.
THREADS = 16
PROCESSES = 4


@pytest.fixture
def now() -> float:
    """A whole number of seconds near the real clock: Redis derives its key expiry from
    the real clock, and whole numbers keep ``now + n`` exact."""
    return float(int(time.time()))


def make_grant(
    key: GrantKey,
    now: float,
    access: str = "access-1",
    refresh: str = "refresh-1",
    **changes: Any,
) -> Grant:
    grant = Grant(
        key=key,
        access_token=access,
        refresh_token=refresh,
        expires_at=now + 3600,
        obtained_at=now,
        redirect_uri="https://portal.example/callback",
        account={
            "Id": key.account_id,
            "Name": "Zoë Agent",
            "Emails": [{"Address": "zoe@example.com", "Primary": True}],
            "Office": None,
            "Count": 3,
        },
        created_at=now,
        updated_at=now,
        last_used_at=now,
    )
    return replace(grant, **changes)


def put(store: GrantStore, grant: Grant) -> Grant:
    """Put a new grant; returns it as stored."""
    assert store.put(grant) is None
    stored = store.get(grant.key)
    assert stored is not None
    return stored


def refreshed(
    grant: Grant, now: float, access: str, refresh: str, holder: str | None = None
) -> Grant:
    """``grant`` after a refresh at ``now`` by the lease holder ``holder``."""
    tokens = Tokens(access, refresh, expires_at=now + 3600, obtained_at=now)
    return replace(grant.with_tokens(tokens, now), lease_holder=holder)


# -- get / put --------------------------------------------------------------------------


def test_get_of_a_missing_grant_is_none(any_store: GrantStore) -> None:
    assert any_store.get(KEY) is None


def test_put_creates_a_grant_that_get_returns_unchanged(any_store: GrantStore, now: float) -> None:
    grant = make_grant(KEY, now)
    assert any_store.put(grant) is None
    assert any_store.get(KEY) == grant

    bare = make_grant(
        GrantKey("client-a", "account-2", "vow/portal-1"), now, redirect_uri=None, account={}
    )
    assert any_store.put(bare) is None
    assert any_store.get(bare.key) == bare
    assert any_store.get(KEY) == grant


def test_put_replaces_tokens_and_account_and_returns_the_replaced_grant(
    any_store: GrantStore, now: float
) -> None:
    first = put(any_store, make_grant(KEY, now))
    later = now + 500
    second = make_grant(
        KEY,
        later,
        "access-2",
        "refresh-2",
        redirect_uri="https://portal.example/other-callback",
        account={"Id": KEY.account_id, "Name": "Zoë Broker"},
    )

    assert any_store.put(second) == first
    assert any_store.get(KEY) == replace(second, created_at=now, last_used_at=now)


def test_put_frees_the_lease(any_store: GrantStore, now: float) -> None:
    put(any_store, make_grant(KEY, now))
    won, _ = any_store.take_lease(KEY, "access-1", "holder-a", now + 30, now)
    assert won

    old = any_store.put(make_grant(KEY, now + 1, "access-2", "refresh-2"))
    assert old is not None
    assert (old.lease_holder, old.lease_until) == ("holder-a", now + 30)
    stored = any_store.get(KEY)
    assert stored is not None
    assert (stored.lease_holder, stored.lease_until) == (None, 0.0)
    won, _ = any_store.take_lease(KEY, "access-2", "holder-b", now + 31, now + 2)
    assert won

    other = GrantKey("client-a", "account-2", "idx")
    any_store.put(make_grant(other, now, lease_holder="holder-c", lease_until=now + 30))
    stored = any_store.get(other)
    assert stored is not None
    assert (stored.lease_holder, stored.lease_until) == (None, 0.0)


def test_add_creates_a_missing_grant_and_nothing_else(any_store: GrantStore, now: float) -> None:
    grant = make_grant(KEY, now)

    assert any_store.add(grant)
    assert any_store.get(KEY) == grant

    assert not any_store.add(make_grant(KEY, now + 1, "access-2", "refresh-2"))
    assert any_store.get(KEY) == grant
    assert any_store.end(KEY, "access-1")
    assert not any_store.add(make_grant(KEY, now + 2, "access-3", "refresh-3"))
    tombstone = any_store.get(KEY)
    assert tombstone is not None
    assert tombstone.ended


# -- take_lease --------------------------------------------------------------------------


def test_take_lease_on_a_missing_grant(any_store: GrantStore, now: float) -> None:
    assert any_store.take_lease(KEY, "access-1", "holder-a", now + 30, now) == (False, None)
    assert any_store.get(KEY) is None


def test_take_lease_wins_a_free_lease(any_store: GrantStore, now: float) -> None:
    grant = put(any_store, make_grant(KEY, now))

    won, current = any_store.take_lease(KEY, "access-1", "holder-a", now + 30, now)

    assert won
    assert current == replace(grant, lease_holder="holder-a", lease_until=now + 30)
    assert any_store.get(KEY) == current


@pytest.mark.parametrize(
    "stale",
    ["access-0", "ACCESS-1", "access-1 ", "access-", ""],
    ids=["other", "other-case", "trailing-space", "prefix", "empty"],
)
def test_take_lease_with_a_token_the_grant_no_longer_holds(
    any_store: GrantStore, now: float, stale: str
) -> None:
    grant = put(any_store, make_grant(KEY, now))

    won, current = any_store.take_lease(KEY, stale, "holder-a", now + 30, now)

    assert not won
    assert current == grant
    assert any_store.get(KEY) == grant


def test_a_held_lease_blocks_another_holder_until_it_expires(
    any_store: GrantStore, now: float
) -> None:
    put(any_store, make_grant(KEY, now))
    assert any_store.take_lease(KEY, "access-1", "holder-a", now + 30, now)[0]

    for moment in (now, now + 10, now + 29.5):
        won, current = any_store.take_lease(KEY, "access-1", "holder-b", moment + 30, moment)
        assert not won
        assert current is not None
        assert (current.lease_holder, current.lease_until) == ("holder-a", now + 30)

    won, current = any_store.take_lease(KEY, "access-1", "holder-b", now + 61, now + 31)
    assert won
    assert current is not None
    assert (current.lease_holder, current.lease_until) == ("holder-b", now + 61)


def test_the_holder_takes_its_own_lease_again(any_store: GrantStore, now: float) -> None:
    put(any_store, make_grant(KEY, now))
    assert any_store.take_lease(KEY, "access-1", "holder-a", now + 30, now)[0]

    won, current = any_store.take_lease(KEY, "access-1", "holder-a", now + 40, now + 10)

    assert won
    assert current is not None
    assert (current.lease_holder, current.lease_until) == ("holder-a", now + 40)


def test_lease_holders_are_compared_exactly(any_store: GrantStore, now: float) -> None:
    put(any_store, make_grant(KEY, now))
    holder = new_secret()
    assert any_store.take_lease(KEY, "access-1", holder, now + 30, now)[0]

    for other in (holder.swapcase(), holder + " "):
        assert not any_store.take_lease(KEY, "access-1", other, now + 30, now + 1)[0]
        any_store.release_lease(KEY, other)
    current = any_store.get(KEY)
    assert current is not None
    assert current.lease_holder == holder


# -- finish_refresh ----------------------------------------------------------------------


def test_finish_refresh_stores_the_tokens_and_frees_its_holders_lease(
    any_store: GrantStore, now: float
) -> None:
    grant = put(any_store, make_grant(KEY, now))
    won, leased = any_store.take_lease(KEY, "access-1", "holder-a", now + 30, now)
    assert won
    assert leased is not None
    new = refreshed(leased, now + 5, "access-2", "refresh-2", holder="holder-a")

    assert any_store.finish_refresh(KEY, "access-1", new)

    assert any_store.get(KEY) == replace(
        grant,
        access_token="access-2",
        refresh_token="refresh-2",
        expires_at=now + 5 + 3600,
        obtained_at=now + 5,
        updated_at=now + 5,
    )


def test_finish_refresh_stores_only_while_the_grant_holds_the_stale_token(
    any_store: GrantStore, now: float
) -> None:
    grant = put(any_store, make_grant(KEY, now))

    assert not any_store.finish_refresh(KEY, "access-0", refreshed(grant, now, "a-x", "r-x"))
    assert any_store.get(KEY) == grant

    first = refreshed(grant, now + 1, "access-2", "refresh-2")
    assert any_store.finish_refresh(KEY, "access-1", first)
    late = refreshed(grant, now + 2, "access-3", "refresh-3")
    assert not any_store.finish_refresh(KEY, "access-1", late)
    assert not any_store.finish_refresh(KEY, "ACCESS-2", late)
    current = any_store.get(KEY)
    assert current is not None
    assert (current.access_token, current.refresh_token) == ("access-2", "refresh-2")
    assert current.updated_at == now + 1


def test_finish_refresh_again_after_it_stored_the_tokens(
    any_store: GrantStore, now: float
) -> None:
    grant = put(any_store, make_grant(KEY, now))
    assert any_store.take_lease(KEY, "access-1", "holder-a", now + 30, now)[0]
    new = refreshed(grant, now + 5, "access-2", "refresh-2", holder="holder-a")
    assert any_store.finish_refresh(KEY, "access-1", new)
    assert any_store.take_lease(KEY, "access-2", "holder-b", now + 60, now + 6)[0]

    assert any_store.finish_refresh(KEY, "access-1", new)  # a retry: harmless, and true

    current = any_store.get(KEY)
    assert current is not None
    assert (current.access_token, current.refresh_token) == ("access-2", "refresh-2")
    assert (current.lease_holder, current.lease_until) == ("holder-b", now + 60)


def test_finish_refresh_keeps_another_holders_lease(any_store: GrantStore, now: float) -> None:
    grant = put(any_store, make_grant(KEY, now))
    assert any_store.take_lease(KEY, "access-1", "holder-a", now + 30, now)[0]

    by_b = refreshed(grant, now + 1, "access-2", "refresh-2", holder="holder-b")
    assert any_store.finish_refresh(KEY, "access-1", by_b)
    unleased = refreshed(grant, now + 2, "access-3", "refresh-3", holder=None)
    assert any_store.finish_refresh(KEY, "access-2", unleased)

    current = any_store.get(KEY)
    assert current is not None
    assert current.access_token == "access-3"
    assert (current.lease_holder, current.lease_until) == ("holder-a", now + 30)


def test_finish_refresh_of_a_missing_grant(any_store: GrantStore, now: float) -> None:
    grant = make_grant(KEY, now)
    assert not any_store.finish_refresh(KEY, "access-1", refreshed(grant, now, "a-2", "r-2"))
    assert any_store.get(KEY) is None


# -- release_lease -----------------------------------------------------------------------


def test_release_lease_frees_it_only_for_its_holder(any_store: GrantStore, now: float) -> None:
    grant = put(any_store, make_grant(KEY, now))
    assert any_store.take_lease(KEY, "access-1", "holder-a", now + 30, now)[0]

    any_store.release_lease(KEY, "holder-b")
    current = any_store.get(KEY)
    assert current is not None
    assert current.lease_holder == "holder-a"

    any_store.release_lease(KEY, "holder-a")
    assert any_store.get(KEY) == grant
    assert any_store.take_lease(KEY, "access-1", "holder-b", now + 31, now + 1)[0]

    any_store.release_lease(GrantKey("client-a", "nobody", "idx"), "holder-b")


# -- end ---------------------------------------------------------------------------------


def test_end_turns_the_grant_into_a_tombstone(any_store: GrantStore, now: float) -> None:
    grant = put(any_store, make_grant(KEY, now))
    binding_id = any_store.bind(KEY, now, 3600)
    assert binding_id is not None
    assert any_store.take_lease(KEY, "access-1", "holder-a", now + 30, now)[0]

    assert not any_store.end(KEY, "access-0")
    assert not any_store.end(KEY, "ACCESS-1")
    current = any_store.get(KEY)
    assert current is not None
    assert current.access_token == "access-1"

    assert any_store.end(KEY, "access-1")
    tombstone = any_store.get(KEY)
    assert tombstone is not None
    assert tombstone.ended
    assert tombstone == replace(grant, access_token="", refresh_token="")
    assert not any_store.end(KEY, "access-1")
    assert any_store.take_lease(KEY, "access-1", "holder-b", now + 30, now) == (False, tombstone)
    resolved = any_store.resolve(binding_id, now + 1, 3600)
    assert resolved is not None
    assert resolved[1].ended


def test_end_of_a_missing_grant(any_store: GrantStore) -> None:
    assert not any_store.end(KEY, "access-1")
    assert any_store.get(KEY) is None


# -- delete ------------------------------------------------------------------------------


def test_delete_removes_the_grant_and_every_binding_to_it(
    any_store: GrantStore, now: float
) -> None:
    grant = put(any_store, make_grant(KEY, now))
    other = put(any_store, make_grant(GrantKey("client-a", "account-2", "idx"), now))
    ours = [any_store.bind(KEY, now, 3600) for _ in range(3)]
    theirs = any_store.bind(other.key, now, 3600)
    assert theirs is not None

    assert any_store.delete(KEY) == grant

    assert any_store.get(KEY) is None
    for binding_id in ours:
        assert binding_id is not None
        assert any_store.resolve(binding_id, now + 1, 3600) is None
    assert any_store.resolve(theirs, now + 1, 3600) is not None
    # A new sign-in to the same account does not bring the old bindings back.
    put(any_store, make_grant(KEY, now + 2, "access-9", "refresh-9"))
    for binding_id in ours:
        assert binding_id is not None
        assert any_store.resolve(binding_id, now + 3, 3600) is None
    assert any_store.delete(other.key) == other
    assert any_store.resolve(theirs, now + 4, 3600) is None


def test_delete_of_a_missing_grant(any_store: GrantStore) -> None:
    assert any_store.delete(KEY) is None


# -- grants ------------------------------------------------------------------------------


def test_grants_lists_every_grant_of_one_app_key_and_no_other(
    any_store: GrantStore, now: float
) -> None:
    mine = [
        GrantKey("client-a", "account-1", "idx"),
        GrantKey("client-a", "account-1", "private"),
        GrantKey("client-a", "account-2", "vow/portal-1"),
    ]
    theirs = GrantKey("client-b", "account-1", "idx")
    for key in [*mine, theirs]:
        any_store.put(make_grant(key, now))
    assert any_store.end(mine[2], "access-1")

    listed = list(any_store.grants("client-a"))

    assert sorted(g.key.id for g in listed) == sorted(k.id for k in mine)
    assert all(g.key.client_id == "client-a" for g in listed)
    assert {g.key: g for g in listed} == {k: any_store.get(k) for k in mine}
    assert [g.key for g in any_store.grants("client-b")] == [theirs]
    assert list(any_store.grants("client-c")) == []


# -- bind / resolve / unbind -------------------------------------------------------------


def test_bind_to_a_missing_grant(any_store: GrantStore, now: float) -> None:
    assert any_store.bind(KEY, now, 3600) is None


def test_bind_then_resolve(any_store: GrantStore, now: float) -> None:
    grant = put(any_store, make_grant(KEY, now - 500, last_used_at=now - 500))

    first = any_store.bind(KEY, now, 3600)
    second = any_store.bind(KEY, now + 1, 3600)

    assert first is not None
    assert second is not None
    assert first != second
    assert any_store.resolve(first, now + 1, 3600) == (
        Binding(KEY.id, KEY.account_id, KEY.scope, now, now),
        grant,
    )
    resolved = any_store.resolve(second, now + 2, 3600)
    assert resolved is not None
    assert resolved[0] == Binding(KEY.id, KEY.account_id, KEY.scope, now + 1, now + 1)


def test_resolve_of_an_unknown_binding(any_store: GrantStore, now: float) -> None:
    put(any_store, make_grant(KEY, now))
    binding_id = any_store.bind(KEY, now, 3600)
    assert binding_id is not None

    for unknown in (
        "",
        "x",
        new_secret(),
        binding_id[:-1],
        binding_id + "x",
        f"{KEY.id}.{new_secret()}",
        f"{KEY.id}.",
    ):
        assert any_store.resolve(unknown, now + 1, 3600) is None, unknown
        any_store.unbind(unknown)
    assert any_store.resolve(binding_id, now + 1, 3600) is not None


def test_a_binding_expires_ttl_seconds_after_its_recorded_use(
    any_store: GrantStore, now: float
) -> None:
    put(any_store, make_grant(KEY, now))
    binding_id = any_store.bind(KEY, now, 100)
    assert binding_id is not None

    assert any_store.resolve(binding_id, now + 50, 100) is not None
    assert any_store.resolve(binding_id, now + 100.5, 100) is None
    assert any_store.get(KEY) is not None


def test_resolve_records_the_use_only_after_the_touch_interval(
    any_store: GrantStore, now: float
) -> None:
    put(any_store, make_grant(KEY, now))
    touched = any_store.bind(KEY, now, 100)
    untouched = any_store.bind(KEY, now, 100)
    assert touched is not None
    assert untouched is not None

    soon = any_store.resolve(touched, now + TOUCH_INTERVAL - 1, 100)
    assert soon is not None
    assert soon[0].last_used_at == now
    assert soon[1].last_used_at == now
    stored = any_store.get(KEY)
    assert stored is not None
    assert stored.last_used_at == now

    use = now + TOUCH_INTERVAL + 1
    later = any_store.resolve(touched, use, 100)
    assert later is not None
    assert later[0] == Binding(KEY.id, KEY.account_id, KEY.scope, now, use)
    assert later[1].last_used_at == use
    stored = any_store.get(KEY)
    assert stored is not None
    assert stored.last_used_at == use

    # The touched binding now lives 100 s from its use; the other one still from ``now``.
    assert any_store.resolve(untouched, now + 100.5, 100) is None
    again = any_store.resolve(touched, now + 100.5, 100)
    assert again is not None
    assert again[0].last_used_at == use
    assert any_store.resolve(touched, use + 100.5, 100) is None


def test_unbind_deletes_one_binding(any_store: GrantStore, now: float) -> None:
    put(any_store, make_grant(KEY, now))
    gone = any_store.bind(KEY, now, 3600)
    kept = any_store.bind(KEY, now, 3600)
    assert gone is not None
    assert kept is not None

    any_store.unbind(gone)
    any_store.unbind(gone)

    assert any_store.resolve(gone, now + 1, 3600) is None
    assert any_store.resolve(kept, now + 1, 3600) is not None
    assert any_store.get(KEY) is not None


# -- pending sign-ins --------------------------------------------------------------------

RECORD = {
    "verifier": "v" * 43,
    "next": "/listings?page=2",
    "portal": None,
    "scopes": ["idx", "private"],
    "started": 1_700_000_000.5,
    "flags": {"single": True},
}


def test_take_pending_returns_the_record_exactly_once(any_store: GrantStore, now: float) -> None:
    assert any_store.take_pending("state-1", now) is None
    any_store.put_pending("state-1", RECORD, now + 600)
    any_store.put_pending("state-2", {"n": 2}, now + 600)

    assert any_store.take_pending("state-1", now + 1) == RECORD
    assert any_store.take_pending("state-1", now + 1) is None
    assert any_store.take_pending("STATE-2", now + 1) is None
    assert any_store.take_pending("state-2", now + 1) == {"n": 2}


def test_take_pending_not_after_its_keep_time(any_store: GrantStore, now: float) -> None:
    any_store.put_pending("state-early", RECORD, now + 600)
    any_store.put_pending("state-late", RECORD, now + 600)

    assert any_store.take_pending("state-early", now + 599.5) == RECORD
    assert any_store.take_pending("state-late", now + 600.5) is None


# -- markers -----------------------------------------------------------------------------


def test_a_marker_exists_until_its_expiry(any_store: GrantStore, now: float) -> None:
    assert not any_store.marked("retired-1", now)

    any_store.mark("retired-1", now + 100)

    assert any_store.marked("retired-1", now + 50)
    assert not any_store.marked("retired-2", now + 50)
    assert not any_store.marked("RETIRED-1", now + 50)
    assert not any_store.marked("retired-1", now + 100.5)
    any_store.mark("retired-1", now + 300)
    assert any_store.marked("retired-1", now + 200)


# -- concurrency -------------------------------------------------------------------------


def race(count: int, attempt: Callable[[int], Any]) -> list[Any]:
    """Run ``attempt(i)`` for ``i`` in ``range(count)`` on as many threads, all released
    at once."""
    start = threading.Barrier(count)

    def run(i: int) -> Any:
        start.wait(timeout=30)
        return attempt(i)

    with ThreadPoolExecutor(max_workers=count) as pool:
        return list(pool.map(run, range(count)))


def test_threads_racing_for_one_lease(any_store: GrantStore, now: float) -> None:
    put(any_store, make_grant(KEY, now))

    results = race(
        THREADS, lambda i: any_store.take_lease(KEY, "access-1", f"holder-{i}", now + 30, now)
    )

    winners = [f"holder-{i}" for i, (won, _) in enumerate(results) if won]
    assert len(winners) == 1
    assert all(g is not None and g.lease_holder == winners[0] for _, g in results)
    current = any_store.get(KEY)
    assert current is not None
    assert current.lease_holder == winners[0]


def test_threads_racing_for_one_pending_sign_in(any_store: GrantStore, now: float) -> None:
    any_store.put_pending("state-1", RECORD, now + 600)

    results = race(THREADS, lambda _: any_store.take_pending("state-1", now + 1))

    assert [r for r in results if r is not None] == [RECORD]


def test_threads_racing_to_add_one_grant(any_store: GrantStore, now: float) -> None:
    results = race(
        THREADS, lambda i: any_store.add(make_grant(KEY, now, f"access-{i}", f"refresh-{i}"))
    )

    assert results.count(True) == 1
    winner = results.index(True)
    current = any_store.get(KEY)
    assert current is not None
    assert (current.access_token, current.refresh_token) == (
        f"access-{winner}",
        f"refresh-{winner}",
    )


def take_lease_in_a_process(
    url: str, holder: str, until: float, now: float, start: Any, answers: Any
) -> None:
    """One racer, in a process of its own, with its own store built from ``url``: it
    connects, waits at ``start`` with the others, and puts its answer on ``answers``."""
    store = store_from_url(url)
    try:
        store.get(KEY)  # connected before the start
        start.wait(timeout=60)
        won, grant = store.take_lease(KEY, "access-1", holder, until, now)
        answers.put((holder, os.getpid(), won, None if grant is None else grant.lease_holder))
    finally:
        store.close()


@pytest.fixture(params=[pytest.param(kind, id=kind) for kind in ("sqlite", "postgresql", "redis")])
def shared_url(request: pytest.FixtureRequest) -> str:
    """An empty store several processes can share."""
    return clean_store_url(request, request.param)


@pytest.mark.slow
def test_processes_racing_for_one_lease(shared_url: str, now: float) -> None:
    context = multiprocessing.get_context("spawn")
    start, answers = context.Barrier(PROCESSES), context.Queue()
    store = store_from_url(shared_url)
    racers = [
        context.Process(
            target=take_lease_in_a_process,
            args=(shared_url, f"holder-{i}", now + 30, now, start, answers),
        )
        for i in range(PROCESSES)
    ]
    try:
        put(store, make_grant(KEY, now))
        for racer in racers:
            racer.start()
        results = sorted(answers.get(timeout=120) for _ in racers)
        for racer in racers:
            racer.join(30)

        assert len({pid for _, pid, _, _ in results}) == PROCESSES
        winners = [holder for holder, _, won, _ in results if won]
        assert len(winners) == 1
        assert {seen for _, _, _, seen in results} == {winners[0]}
        current = store.get(KEY)
        assert current is not None
        assert current.lease_holder == winners[0]
    finally:
        for racer in racers:
            if racer.is_alive():
                racer.kill()
        store.close()


# -- rate windows ------------------------------------------------------------------------

BUCKET = rate_bucket("client-a")


def test_spend_counts_calls_up_to_the_limit_in_a_sliding_window(
    any_store: GrantStore, now: float
) -> None:
    assert [any_store.spend(BUCKET, 3, 10.0, now + t) for t in (0.0, 0.5, 1.0)] == [(1, 0.0)] * 3

    # Full: room when the oldest call (at now) leaves, at now + 10.
    assert any_store.spend(BUCKET, 3, 10.0, now + 2) == (0, pytest.approx(8.0))
    assert any_store.spend(BUCKET, 3, 10.0, now + 9.75) == (0, pytest.approx(0.25))
    # Refused calls were not counted: at now + 10 exactly one place is free.
    assert any_store.spend(BUCKET, 3, 10.0, now + 10) == (1, 0.0)
    assert any_store.spend(BUCKET, 3, 10.0, now + 10) == (0, pytest.approx(0.5))
    assert any_store.spend(BUCKET, 3, 10.0, now + 11) == (1, 0.0)


def test_spend_keeps_app_keys_apart(any_store: GrantStore, now: float) -> None:
    other = rate_bucket("client-b")

    assert any_store.spend(BUCKET, 1, 60.0, now) == (1, 0.0)
    assert any_store.spend(BUCKET, 1, 60.0, now) == (0, pytest.approx(60.0))
    assert any_store.spend(other, 1, 60.0, now) == (1, 0.0)


def test_spend_after_a_long_pause_has_the_whole_limit_again(
    any_store: GrantStore, now: float
) -> None:
    for t in range(5):
        assert any_store.spend(BUCKET, 5, 10.0, now + t) == (1, 0.0)
    assert any_store.spend(BUCKET, 5, 10.0, now + 5)[1] > 0

    later = now + 3600
    results = [any_store.spend(BUCKET, 5, 10.0, later) for _ in range(6)]
    assert results[:5] == [(1, 0.0)] * 5
    assert results[5] == (0, pytest.approx(10.0))


def test_spend_counts_a_batch_as_far_as_the_limit_allows(
    any_store: GrantStore, now: float
) -> None:
    assert any_store.spend(BUCKET, 10, 10.0, now, count=4) == (4, 0.0)
    assert any_store.spend(BUCKET, 10, 10.0, now + 1, count=4) == (4, 0.0)
    assert any_store.spend(BUCKET, 10, 10.0, now + 2, count=4) == (2, 0.0)  # room for 2
    assert any_store.spend(BUCKET, 10, 10.0, now + 3, count=4) == (0, pytest.approx(7.0))
    # The first batch leaves the window together, at now + 10.
    assert any_store.spend(BUCKET, 10, 10.0, now + 10, count=8) == (4, 0.0)


@pytest.mark.parametrize("kind", ["sqlite", "postgresql", "mariadb"])
def test_a_batch_is_one_statement_while_slots_are_made_and_after(
    request: pytest.FixtureRequest, kind: str, now: float
) -> None:
    store = store_from_url(clean_store_url(request, kind))
    assert isinstance(store, SQLGrantStore)
    seen: list[str] = []

    def record(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        seen.append(statement)

    sa.event.listen(store.rate_engine, "before_cursor_execute", record)
    try:
        assert store.spend(BUCKET, 8, 10.0, now, count=4) == (4, 0.0)
        seen.clear()
        assert store.spend(BUCKET, 8, 10.0, now + 1, count=4) == (4, 0.0)
        while_made, seen[:] = list(seen), []
        # All eight made, and free again: the oldest four, then the other four.
        assert store.spend(BUCKET, 8, 10.0, now + 11, count=4) == (4, 0.0)
        seen.clear()
        assert store.spend(BUCKET, 8, 10.0, now + 11.5, count=4) == (4, 0.0)
        assert store.spend(BUCKET, 8, 10.0, now + 11.5, count=4) == (0, pytest.approx(9.5))
    finally:
        sa.event.remove(store.rate_engine, "before_cursor_execute", record)
        store.close()

    assert len(while_made) == 1  # four more slots, numbered on from those made
    assert len(seen) == 1 + 3  # four free slots at once; then none (make, candidates)


def test_threads_racing_for_batches_never_overfill_the_window(
    any_store: GrantStore, now: float
) -> None:
    results = race(THREADS, lambda _: any_store.spend(BUCKET, 20, 60.0, now, count=3))

    assert sum(counted for counted, _ in results) == 20
    assert all(0 < wait <= 60.0 for counted, wait in results if not counted)


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["postgresql", "mariadb"])
def test_a_deadlock_the_database_breaks_is_a_race_to_try_again(
    kind: str, request: pytest.FixtureRequest
) -> None:
    # Two transactions lock two rows in opposite orders: the database undoes one of them.
    # That answer is the one a rate slot's statements retry on, not an outage.
    url = request.getfixturevalue("postgres_url" if kind == "postgresql" else "mariadb_url")
    engine = sa.create_engine(url)
    rows = sa.Table("deadlock_rows", sa.MetaData(), sa.Column("id", sa.Integer, primary_key=True))
    rows.create(engine)
    try:
        with engine.begin() as conn:
            conn.execute(rows.insert(), [{"id": 1}, {"id": 2}])
        first, second = engine.connect(), engine.connect()
        lock = rows.update().values(id=rows.c.id)  # locks the row, changes nothing
        first.execute(lock.where(rows.c.id == 1))
        second.execute(lock.where(rows.c.id == 2))
        errors: list[sa.exc.DBAPIError] = []

        def then(conn: sa.Connection, row: int) -> None:
            try:
                conn.execute(lock.where(rows.c.id == row))
            except sa.exc.DBAPIError as exc:
                errors.append(exc)
            finally:
                conn.rollback()  # the survivor gives its locks back
                conn.close()

        other = threading.Thread(target=then, args=(first, 2))
        other.start()
        then(second, 1)
        other.join(timeout=30)

        assert len(errors) == 1
        assert _lost_race(errors[0])
    finally:
        rows.drop(engine)
        engine.dispose()


def test_threads_racing_to_spend_the_last_places(any_store: GrantStore, now: float) -> None:
    results = race(THREADS * 2, lambda _: any_store.spend(BUCKET, 5, 60.0, now))

    assert results.count((1, 0.0)) == 5
    assert all(0 < wait <= 60.0 for counted, wait in results if not counted)


@pytest.mark.parametrize("kind", ["sqlite", "postgresql", "mariadb"])
def test_a_slot_made_by_another_caller_first_is_read_again(
    request: pytest.FixtureRequest, kind: str, now: float
) -> None:
    """The caller finds room for one more slot, another caller makes it first: the
    first looks again and waits for that slot, instead of failing."""
    url = clean_store_url(request, kind)
    first, other = store_from_url(url), store_from_url(url)
    assert isinstance(first, SQLGrantStore)
    made: list[tuple[int, float]] = []

    def other_caller_first(conn: Any, cursor: Any, statement: str, *_: Any) -> None:
        if "INSERT INTO" in statement.upper() and not made:
            made.append(other.spend(BUCKET, 1, 60.0, now))

    sa.event.listen(first.rate_engine, "before_cursor_execute", other_caller_first)
    try:
        # No slot to reuse, room for one: the other caller makes it just before.
        assert first.spend(BUCKET, 1, 60.0, now + 1) == (0, pytest.approx(59.0))
        assert made == [(1, 0.0)]
    finally:
        sa.event.remove(first.rate_engine, "before_cursor_execute", other_caller_first)
        first.close()
        other.close()


def spend_in_a_process(url: str, calls: int, now: float, start: Any, answers: Any) -> None:
    """Spend ``calls`` times from a process of its own, with its own store."""
    store = store_from_url(url)
    try:
        store.spend(rate_bucket("warm-up"), 1, 1.0, now)  # connected before the start
        start.wait(timeout=60)
        answers.put([store.spend(BUCKET, PROCESSES * 2, 60.0, now)[0] for _ in range(calls)])
    finally:
        store.close()


@pytest.mark.slow
def test_processes_share_one_rate_window(shared_url: str, now: float) -> None:
    context = multiprocessing.get_context("spawn")
    start, answers = context.Barrier(PROCESSES), context.Queue()
    racers = [
        context.Process(target=spend_in_a_process, args=(shared_url, 5, now, start, answers))
        for _ in range(PROCESSES)
    ]
    try:
        for racer in racers:
            racer.start()
        results = [counted for _ in racers for counted in answers.get(timeout=120)]
        for racer in racers:
            racer.join(30)

        # PROCESSES x 5 calls against room for PROCESSES x 2 in the window.
        assert len(results) == PROCESSES * 5
        assert sum(results) == PROCESSES * 2
    finally:
        for racer in racers:
            if racer.is_alive():
                racer.kill()


# -- secrets stay out of reprs -----------------------------------------------------------


def test_no_token_appears_in_any_repr(any_store: GrantStore, now: float) -> None:
    access, refresh = "at-" + new_secret(), "rt-" + new_secret()
    grant = make_grant(KEY, now, access, refresh)
    texts = [repr(grant), str(grant), repr(any_store)]

    any_store.put(grant)
    binding_id = any_store.bind(KEY, now, 3600)
    assert binding_id is not None
    new_access, new_refresh = "at-" + new_secret(), "rt-" + new_secret()
    tokens = Tokens(new_access, new_refresh, now + 3600, now)
    texts += [
        repr(any_store),
        repr(any_store.get(KEY)),
        repr(any_store.take_lease(KEY, access, "holder-a", now + 30, now)),
        repr(any_store.resolve(binding_id, now + 1, 3600)),
        repr(tokens),
        repr(grant.with_tokens(tokens, now)),
        repr(list(any_store.grants(KEY.client_id))),
        repr(any_store),
    ]

    for secret in (access, refresh, new_access, new_refresh):
        assert not [text for text in texts if secret in text]
