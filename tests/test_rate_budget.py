"""The shared rate budget, over HTTPS against the simulator: calls past the key's limit
wait for room or are refused before they reach the platform, every app (worker, host)
on one grant store shares the count, and the platform's own 1550 still works."""

from __future__ import annotations

import logging
from typing import Any

import pytest
from flask import Flask

from flask_spark import ConfigurationError, RateLimited, rate_budget, spark_api
from flask_spark.rate_budget import PUBLISHED_LIMITS, RateBudget, margin
from flask_spark.stores import MemoryGrantStore, store_from_url
from flask_spark.testing import SparkPlatform

from .conftest import AppFactory, Browser, add_probe, app_with_pair, in_request
from .redis_server import free_port
from .store_fixtures import clean_store_url

pytestmark = pytest.mark.usefixtures("no_secret_in_logs")


def calls(app: Flask, count: int) -> list[Any]:
    """``count`` calls to ``/my/account``: each one's account name, or the error raised."""
    outcomes: list[Any] = []
    with app.app_context():
        for _ in range(count):
            try:
                outcomes.append(spark_api.get("/my/account")[0]["Name"])
            except RateLimited as exc:
                outcomes.append(exc)
    return outcomes


# -- configuration -----------------------------------------------------------------------


@pytest.mark.parametrize("role", ["idx", "vow", "private"])
def test_the_budget_defaults_to_the_platforms_published_limit(
    make_app: AppFactory, role: str
) -> None:
    app = make_app(SPARK_ROLE=role, SPARK_PORTAL="agentportal")
    budget = app.extensions["spark"].budget
    assert (budget.limit, budget.window) == (PUBLISHED_LIMITS[role], 300.0)
    assert PUBLISHED_LIMITS == {"idx": 1500, "vow": 4000, "private": 4000}


def test_none_turns_the_budget_off(
    make_app: AppFactory, spark_platform: SparkPlatform, redis_client: Any
) -> None:
    pair = spark_platform.issue_tokens()
    app = app_with_pair(make_app, pair, SPARK_RATE_LIMIT=None, SPARK_GRANT_STORE="memory://")
    assert app.extensions["spark"].budget is None
    assert calls(app, 3) == [spark_platform.accounts[0]["Name"]] * 3


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("SPARK_RATE_LIMIT", 0),
        ("SPARK_RATE_LIMIT", "1500"),
        ("SPARK_RATE_LIMIT", True),
        ("SPARK_RATE_LIMIT", 2.5),
        ("SPARK_RATE_WINDOW", 0),
        ("SPARK_RATE_WINDOW", "300"),
    ],
)
def test_bad_settings_are_refused_at_init_app(make_app: AppFactory, key: str, value: Any) -> None:
    with pytest.raises(ConfigurationError) as info:
        make_app(**{key: value})
    assert info.value.key == key


# -- one app ---------------------------------------------------------------------------


def test_calls_past_the_budget_are_refused_before_the_platform(
    make_app: AppFactory, spark_platform: SparkPlatform
) -> None:
    pair = spark_platform.issue_tokens()
    app = app_with_pair(
        make_app, pair, SPARK_RATE_LIMIT=3, SPARK_RATE_WINDOW=300, SPARK_MAX_RETRY_WAIT=1
    )
    name = spark_platform.accounts[0]["Name"]

    outcomes = calls(app, 5)

    assert outcomes[:3] == [name] * 3
    for refused in outcomes[3:]:
        assert isinstance(refused, RateLimited)
        assert refused.from_budget
        assert (refused.status, refused.code) == (429, None)
        assert 290 < refused.retry_after <= 304  # the window, its margin, rounded up
        assert "shared rate budget (3 calls per 300 s)" in str(refused)
    assert spark_platform.stats.data_calls == 3
    assert spark_platform.stats.rate_limited == 0


@pytest.mark.slow
def test_a_call_waits_for_room_and_the_platform_sees_no_window_overfull(
    make_app: AppFactory, spark_platform: SparkPlatform
) -> None:
    spark_platform.rate_limit, spark_platform.rate_window = 3, 1.0
    pair = spark_platform.issue_tokens()
    app = app_with_pair(make_app, pair, SPARK_RATE_LIMIT=3, SPARK_RATE_WINDOW=1)

    outcomes = calls(app, 9)

    assert outcomes == [spark_platform.accounts[0]["Name"]] * 9
    calls_seen = spark_platform.requests_for("data")
    assert [r.status for r in calls_seen] == [200] * 9  # none refused, so none retried
    arrivals = [r.received_at for r in calls_seen]
    # Any four calls in a row span more than the platform's window: it never saw a
    # fourth call within one second.
    assert all(later - first > 1.0 for first, later in zip(arrivals, arrivals[3:], strict=False))
    assert spark_platform.stats.rate_limited == 0


def test_the_platforms_own_limit_is_handled_as_before(
    make_app: AppFactory, spark_platform: SparkPlatform
) -> None:
    spark_platform.rate_limit = 2  # below the budget (the published 1,500)
    pair = spark_platform.issue_tokens()
    app = app_with_pair(make_app, pair, SPARK_RETRIES=0)

    outcomes = calls(app, 3)

    refused = outcomes[2]
    assert isinstance(refused, RateLimited)
    assert not refused.from_budget
    assert (refused.status, refused.code) == (429, 1550)
    assert spark_platform.stats.rate_limited == 1


def test_a_view_refused_by_the_budget_answers_503_with_retry_after(
    make_app: AppFactory, spark_platform: SparkPlatform
) -> None:
    pair = spark_platform.issue_tokens()
    app = app_with_pair(
        make_app, pair, SPARK_RATE_LIMIT=1, SPARK_RATE_WINDOW=120, SPARK_MAX_RETRY_WAIT=0
    )

    @app.get("/name")
    def name() -> Any:
        return spark_api.get("/my/account")[0]["Name"]

    client = app.test_client()
    assert client.get("/name").status_code == 200
    page = client.get("/name")
    assert page.status_code == 503
    assert 118 <= int(page.headers["Retry-After"]) <= 122
    assert b"as many requests to Flexmls as it may" in page.data
    assert spark_platform.stats.data_calls == 1


# -- sign-in ---------------------------------------------------------------------------


def test_a_sign_in_with_no_room_is_busy_and_keeps_its_code_unspent(
    make_app: AppFactory, browser_for: Any, spark_platform: SparkPlatform
) -> None:
    app = add_probe(make_app(SPARK_RATE_LIMIT=2, SPARK_RATE_WINDOW=120, SPARK_MAX_RETRY_WAIT=0))
    first: Browser = browser_for(app)
    assert first.sign_in().status_code == 303  # the account read: 1 of 2
    assert in_request(app, first, lambda: spark_api.get("/my/account")[0]["Id"])  # 2 of 2

    second: Browser = browser_for(app)
    callback, _ = second.authorize(second.start_login("/login?next=/listings"))
    page = second.client.get(callback)

    assert page.status_code == 503
    assert 118 <= int(page.headers["Retry-After"]) <= 122
    assert b"as many requests to Flexmls as it may" in page.data
    assert b"/login?next=/listings" in page.data  # the retry keeps where it was going
    assert spark_platform.stats.code_exchanges == 1  # the second code was never sent
    assert spark_platform.stats.rate_limited == 0


# -- shared by apps on one store ---------------------------------------------------------


@pytest.mark.parametrize("kind", ["sqlite", "postgresql", "redis", "cluster"])
@pytest.mark.slow
def test_apps_on_one_grant_store_share_one_budget(
    make_app: AppFactory,
    spark_platform: SparkPlatform,
    request: pytest.FixtureRequest,
    kind: str,
) -> None:
    store_url = clean_store_url(request, kind)
    pair = spark_platform.issue_tokens()
    settings = {
        "SPARK_GRANT_STORE": store_url,
        "SPARK_RATE_LIMIT": 5,
        "SPARK_RATE_WINDOW": 300,
        "SPARK_MAX_RETRY_WAIT": 0,
    }
    workers = [app_with_pair(make_app, pair, **settings) for _ in range(3)]

    outcomes = [calls(worker, 1)[0] for _ in range(3) for worker in workers]

    served = [o for o in outcomes if isinstance(o, str)]
    refused = [o for o in outcomes if isinstance(o, RateLimited)]
    assert (len(served), len(refused)) == (5, 4)
    assert all(o.from_budget for o in refused)
    assert spark_platform.stats.data_calls == 5


def test_with_the_store_down_calls_go_through_uncounted_and_say_so(
    caplog: pytest.LogCaptureFixture,
) -> None:
    store = store_from_url(f"redis://127.0.0.1:{free_port()}")  # nothing listens there
    budget = RateBudget(store, "client", limit=1, window=60.0, max_wait=0)
    try:
        with caplog.at_level(logging.WARNING, logger="flask_spark"):
            budget.spend()
            budget.spend()  # not refused: nothing was counted
    finally:
        store.close()
    warnings = [r.getMessage() for r in caplog.records if "Rate budget" in r.getMessage()]
    uncounted = (
        "Rate budget: the grant store does not answer; calls go to the platform uncounted "
        "until it does"
    )
    assert warnings == [uncounted]


def test_a_store_of_the_apps_own_without_spend_turns_the_budget_off_with_a_warning(
    make_app: AppFactory, spark_platform: SparkPlatform
) -> None:
    from flask_spark import Spark, SparkWarning

    class OlderStore(MemoryGrantStore):
        """A store written before the protocol had spend()."""

        spend = None  # type: ignore[assignment]

    pair = spark_platform.issue_tokens()
    with pytest.warns(SparkWarning, match="no spend"):
        app = app_with_pair(make_app, pair, spark=Spark(grant_store=OlderStore()))
    assert app.extensions["spark"].budget is None
    assert calls(app, 2) == [spark_platform.accounts[0]["Name"]] * 2


# -- counting in batches -----------------------------------------------------------------


class CountingStore(MemoryGrantStore):
    """A memory store that records what each ``spend`` round trip asked for and how many
    calls it counted."""

    def __init__(self) -> None:
        super().__init__()
        self.asked: list[int] = []
        self.counted: list[int] = []

    def spend(
        self, bucket: str, limit: int, window: float, now: float, count: int = 1
    ) -> tuple[int, float]:
        self.asked.append(count)
        answer = super().spend(bucket, limit, window, now, count)
        self.counted.append(answer[0])
        return answer


class Clock:
    """Stands in for :mod:`time` in :mod:`flask_spark.rate_budget`: time moves only when
    the test says."""

    def __init__(self) -> None:
        self.now = 1_000_000.0

    def time(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    fake = Clock()
    monkeypatch.setattr(rate_budget, "time", fake)
    return fake


def test_a_busy_process_counts_its_calls_in_growing_batches(clock: Clock) -> None:
    store = CountingStore()
    budget = RateBudget(store, "client", limit=100_000, window=300.0, max_wait=0)

    for _ in range(200):
        budget.spend()

    # One round trip for 1 call, then 2, 4, ... up to MAX_BATCH: 9 round trips, not 200.
    assert store.asked == [1, 2, 4, 8, 16, 32, 64, 64, 64]
    assert store.counted == store.asked


def test_places_counted_ahead_are_used_only_within_half_the_margin(clock: Clock) -> None:
    store = CountingStore()
    budget = RateBudget(store, "client", limit=100_000, window=300.0, max_wait=0)
    for _ in range(2):  # a batch of 1, then one of 2: one place of it is left
        budget.spend()
    clock.now += margin(300.0) / 2  # no longer usable: sent now, it would outlive its place

    budget.spend()

    assert store.asked == [1, 2, 1]  # counted again, as many as the last batch used
    assert store.counted == [1, 2, 1]


def test_a_quiet_process_and_a_small_limit_count_one_call_at_a_time(clock: Clock) -> None:
    quiet_store, small_store = CountingStore(), CountingStore()
    quiet = RateBudget(quiet_store, "client", limit=100_000, window=300.0, max_wait=0)
    small = RateBudget(small_store, "client", limit=63, window=300.0, max_wait=0)

    for _ in range(10):
        quiet.spend()
        small.spend()
        small.spend()
        clock.now += 1.0  # the next call of the quiet process comes a second later

    assert quiet_store.asked == [1] * 10
    assert small_store.asked == [1] * 20
