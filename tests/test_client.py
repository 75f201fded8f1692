"""spark_api against the simulator: calls, refresh both ways, rotation, retries, errors."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest
from flask import Flask, jsonify, request

from flask_spark import (
    NotSignedIn,
    PlatformUnavailable,
    SparkAPIError,
    spark_api,
    spark_login_required,
    token_refreshed,
)
from flask_spark.testing import Fault, SparkPlatform

from .conftest import AppFactory, Browser, grant_of, same_browser, same_session_burst

pytestmark = pytest.mark.usefixtures("no_secret_in_logs")


def add_views(app: Flask) -> None:
    @app.get("/account")
    @spark_login_required
    def account() -> Any:
        return jsonify(spark_api.get("/my/account"))

    @app.get("/listings")
    @spark_login_required
    def listings() -> Any:
        return jsonify([item["Id"] for item in spark_api.paginate("/listings", _limit=25)])

    @app.post("/contacts")
    @spark_login_required
    def contacts() -> Any:
        return jsonify(spark_api.post("/contacts", {"DisplayName": request.form["name"]}))

    @app.get("/envelope")
    def envelope() -> Any:
        answer = spark_api.request("GET", "/listings", params={"_pagination": 1, "_limit": 5})
        return jsonify(
            status=answer.status,
            success=answer.envelope["Success"],
            pagination=answer.pagination,
            count=len(answer.results),
        )

    loaded, release = threading.Event(), threading.Event()
    app.extensions["slow_view_events"] = (loaded, release)

    @app.get("/slow")
    def slow() -> Any:
        spark_api.get("/my/account")  # loads the (old) tokens
        loaded.set()
        release.wait(10)
        return "done"

    @app.get("/missing")
    @spark_login_required
    def missing() -> Any:
        try:
            spark_api.get("/listings/00000000000000000000000000")
        except SparkAPIError as exc:
            return jsonify(status=exc.status, code=exc.code, message=exc.message)
        return "unexpected"


@pytest.fixture
def app(make_app: AppFactory) -> Flask:
    app = make_app(SPARK_RETRIES=2, SPARK_MAX_RETRY_WAIT=1.0)
    add_views(app)
    return app


@pytest.fixture
def browser(app: Flask, browser_for: Any) -> Browser:
    browser = browser_for(app)
    assert browser.sign_in().status_code == 303
    return browser


def stored(app: Flask, browser: Browser, scope: str = "idx") -> dict[str, Any]:
    grant = grant_of(app, browser.client, scope)
    assert grant is not None
    return {
        "access_token": grant.access_token,
        "refresh_token": grant.refresh_token,
        "expires_at": grant.expires_at,
        "obtained_at": grant.obtained_at,
    }


def data_statuses(platform: SparkPlatform) -> list[int]:
    """Statuses of the data calls after the sign-in's own ``/my/account`` read."""
    return [r.status for r in platform.requests_for("data")][1:]


def test_reactive_refresh_on_1020_retries_once(
    app: Flask, browser: Browser, spark_platform: SparkPlatform
) -> None:
    before = stored(app, browser)
    spark_platform.expire_all()
    response = browser.client.get("/account")
    assert response.status_code == 200
    assert spark_platform.stats.refreshes == 1
    assert data_statuses(spark_platform) == [401, 200]
    after = stored(app, browser)
    assert after["access_token"] != before["access_token"]
    assert after["refresh_token"] != before["refresh_token"]
    refresh = spark_platform.requests_for("grant")[-1]
    assert refresh.json == {
        "client_id": spark_platform.client_id,
        "client_secret": spark_platform.client_secret,
        "grant_type": "refresh_token",
        "refresh_token": before["refresh_token"],
        "redirect_uri": "http://localhost/callback",
    }


def test_proactive_refresh_before_expiry(
    app: Flask, browser: Browser, spark_platform: SparkPlatform, monkeypatch: pytest.MonkeyPatch
) -> None:
    import flask_spark.tokens

    record = stored(app, browser)
    later = record["expires_at"] - 30  # inside the 60 s leeway
    monkeypatch.setattr(flask_spark.tokens.time, "time", lambda: later)
    assert browser.client.get("/account").status_code == 200
    assert spark_platform.stats.refreshes == 1
    assert data_statuses(spark_platform) == [200]  # refreshed before the call, no 401


def test_rotation_across_several_expiries(
    app: Flask, browser: Browser, spark_platform: SparkPlatform
) -> None:
    seen = {stored(app, browser)["refresh_token"]}
    for round_ in range(1, 5):
        spark_platform.expire_all()
        assert browser.client.get("/account").status_code == 200
        assert spark_platform.stats.refreshes == round_
        seen.add(stored(app, browser)["refresh_token"])
    assert len(seen) == 5
    assert spark_platform.stats.rejected_refreshes == 0


def test_refresh_refused_sends_the_user_to_sign_in(
    app: Flask, browser: Browser, spark_platform: SparkPlatform
) -> None:
    spark_platform.revoke_refresh_token(stored(app, browser)["refresh_token"])
    spark_platform.expire_all()
    page = browser.client.get("/account?x=1")
    assert page.status_code == 302
    assert page.headers["Location"] == "/login?next=/account?x%3D1"
    assert spark_platform.stats.rejected_refreshes == 1
    api = browser.client.get("/account", headers={"Accept": "application/json"})
    assert api.status_code == 401
    assert spark_platform.stats.rejected_refreshes == 1  # the grant was forgotten


@pytest.mark.parametrize(
    "fault",
    [
        Fault("grant", "status", status=503),
        Fault("grant", "malformed"),
        Fault("grant", "html"),
        Fault("grant", "rate_limit", retry_after=7, status=429),
        Fault("grant", "rate_limit", retry_after=7, status=503),
        Fault("grant", "missing_fields"),
        Fault("grant", "drop"),
    ],
)
def test_refresh_failure_keeps_the_tokens(
    app: Flask, browser: Browser, spark_platform: SparkPlatform, fault: Fault
) -> None:
    before = stored(app, browser)
    spark_platform.expire_all()
    spark_platform.add_fault(fault)
    page = browser.client.get("/account")
    assert page.status_code == 503
    assert int(page.headers["Retry-After"]) >= 1
    assert stored(app, browser) == before
    assert browser.client.get("/account").status_code == 200
    assert spark_platform.stats.refreshes == 1


def test_idempotent_calls_retry_on_rate_limit(
    browser: Browser, spark_platform: SparkPlatform
) -> None:
    spark_platform.add_fault(Fault("data", "rate_limit", retry_after=0, status=429))
    spark_platform.add_fault(Fault("data", "rate_limit", retry_after=0, status=503))
    assert browser.client.get("/account").status_code == 200
    assert data_statuses(spark_platform) == [429, 503, 200]


def test_rate_limit_beyond_retries_answers_503_with_retry_after(
    browser: Browser, spark_platform: SparkPlatform
) -> None:
    spark_platform.add_fault(Fault("data", "rate_limit", retry_after=0, count=None))
    page = browser.client.get("/account")
    assert page.status_code == 503
    assert page.headers["Retry-After"] == "1"
    assert len(data_statuses(spark_platform)) == 3  # one call, two retries


def test_long_retry_after_is_not_waited_out(
    browser: Browser, spark_platform: SparkPlatform
) -> None:
    spark_platform.add_fault(Fault("data", "rate_limit", retry_after=120))
    page = browser.client.get("/account", headers={"Accept": "application/json"})
    assert page.status_code == 503
    assert page.headers["Retry-After"] == "120"
    assert page.json == {
        "error": "unavailable",
        "message": "Flexmls asked us to slow down. Please try again shortly.",
    }
    assert len(data_statuses(spark_platform)) == 1


def test_post_is_never_retried(browser: Browser, spark_platform: SparkPlatform) -> None:
    spark_platform.add_fault(Fault("data", "rate_limit", retry_after=0))
    page = browser.client.post("/contacts", data={"name": "Pat"})
    assert page.status_code == 503
    assert len(data_statuses(spark_platform)) == 1


def test_post_wraps_the_body_and_returns_the_resource_uri(
    browser: Browser, spark_platform: SparkPlatform
) -> None:
    response = browser.client.post("/contacts", data={"name": "Pat Doe"})
    assert response.status_code == 200
    assert response.json is not None
    assert response.json[0]["ResourceUri"].startswith("/v1/contacts/")
    sent = spark_platform.requests_for("data")[-1]
    assert sent.method == "POST"
    assert sent.headers["Content-Type"] == "application/json"
    assert sent.json == {"D": {"DisplayName": "Pat Doe"}}
    assert sent.status == 201


def test_paginate_walks_every_page(browser: Browser, spark_platform: SparkPlatform) -> None:
    response = browser.client.get("/listings")
    ids = response.json
    assert ids is not None
    calls = spark_platform.requests_for("data")[1:]  # after the sign-in's account read
    assert [c.query.get("_page") for c in calls] == ["1", "2", "3"]
    assert all(c.query.get("_pagination") == "1" for c in calls)
    assert len(ids) == len(set(ids)) == 57


def test_api_errors_carry_status_code_and_message(browser: Browser) -> None:
    response = browser.client.get("/missing")
    assert response.json is not None
    assert response.json["status"] == 404
    assert response.json["code"] == 404
    assert response.json["message"]


def test_whole_envelope_is_reachable(browser: Browser) -> None:
    body = browser.client.get("/envelope").json
    assert body is not None
    assert body["status"] == 200
    assert body["success"] is True
    assert body["pagination"]["PageSize"] == 5
    assert body["pagination"]["CurrentPage"] == 1
    assert body["count"] == 5


def test_platform_garbage_is_a_typed_error(
    browser: Browser, spark_platform: SparkPlatform
) -> None:
    spark_platform.add_fault(Fault("data", "html"))
    page = browser.client.get("/account")
    assert page.status_code == 503


def test_unsafe_paths_are_refused(app: Flask) -> None:
    with app.app_context():
        for path in ("https://evil.example/x", "//evil.example/x", "/../x", "/a b", ""):
            with pytest.raises(ValueError, match="plain path"):
                spark_api.get(path)


def test_anonymous_call_raises_not_signed_in(app: Flask) -> None:
    with app.test_request_context("/"), pytest.raises(NotSignedIn):
        spark_api.get("/my/account")


def test_outside_an_app_context(app: Flask) -> None:
    with pytest.raises(RuntimeError, match="application context"):
        spark_api.get("/my/account")


def test_token_refreshed_signal(
    app: Flask, browser: Browser, spark_platform: SparkPlatform
) -> None:
    received: list[dict[str, Any]] = []
    spark_platform.expire_all()
    with token_refreshed.connected_to(lambda sender, **kw: received.append(kw), app):
        browser.client.get("/account")
    assert received == [
        {
            "instance": "spark",
            "scope": "idx",
            "app_wide": False,
            "account_id": spark_platform.accounts[0]["Id"],
        }
    ]


def test_connections_are_pooled_and_kept_alive(app: Flask, browser: Browser) -> None:
    for _ in range(10):
        assert browser.client.get("/account").status_code == 200
    manager = app.extensions["spark"].transport._manager()
    pools = list(manager.pools._container.values())
    assert len(pools) == 1
    assert pools[0].num_connections == 1


@pytest.mark.slow
def test_same_session_burst_refreshes_once(
    app: Flask, browser: Browser, spark_platform: SparkPlatform
) -> None:
    cookie = browser.client.get_cookie("session")
    assert cookie is not None
    for _round in range(3):
        spark_platform.expire_all()
        assert same_session_burst(app, cookie.value, 16) == [200] * 16
    assert spark_platform.stats.refreshes == 3
    assert spark_platform.stats.rejected_refreshes == 0


@pytest.mark.slow
def test_requests_queued_behind_a_refresh_take_its_tokens_from_memory(
    app: Flask, browser: Browser, spark_platform: SparkPlatform
) -> None:
    """A burst at expiry: the threads queued behind this process's refresh find the new
    tokens in memory, instead of each reading the grant from the store in turn."""
    cookie = browser.client.get_cookie("session")
    assert cookie is not None
    store = app.extensions["spark"].tokens.store
    reads: list[str] = []
    real_get = store.get

    def counted_get(key: Any) -> Any:
        reads.append(key.id)
        return real_get(key)

    spark_platform.expire_all()
    # The refresh is held at the platform for a second: every other thread of the burst
    # has had its 401 and queued behind it long before it ends.
    spark_platform.add_fault(Fault("grant", "delay", delay=1.0))
    store.get = counted_get  # the real store, its reads counted
    try:
        assert same_session_burst(app, cookie.value, 16) == [200] * 16
    finally:
        del store.get
    assert spark_platform.stats.refreshes == 1
    # The refreshing thread reads it once, before and after its lease; the others none.
    assert len(reads) <= 3, len(reads)


def test_slow_request_does_not_restore_the_old_token(
    app: Flask, browser: Browser, spark_platform: SparkPlatform
) -> None:
    loaded, release = app.extensions["slow_view_events"]
    cookie = browser.client.get_cookie("session")
    assert cookie is not None
    slow_client = app.test_client()
    slow_client.set_cookie("session", cookie.value)
    result: list[int] = []
    thread = threading.Thread(target=lambda: result.append(slow_client.get("/slow").status_code))
    thread.start()
    assert loaded.wait(10)
    spark_platform.expire_all()
    assert browser.client.get("/account").status_code == 200  # refreshes
    fresh = stored(app, browser)
    release.set()
    thread.join()
    assert result == [200]
    assert stored(app, browser) == fresh
    spark_platform.expire_all()
    assert browser.client.get("/account").status_code == 200
    assert spark_platform.stats.rejected_refreshes == 0
    assert spark_platform.stats.refreshes == 2


def test_platform_unavailable_page_when_unreachable(
    make_app: AppFactory, browser_for: Any, spark_platform: SparkPlatform
) -> None:
    app = make_app()
    add_views(app)
    browser = browser_for(app)
    browser.sign_in()
    transport = app.extensions["spark"].transport
    transport.close()
    transport.ca_certs = None  # the system store does not trust the simulator's CA
    page = browser.client.get("/account")
    assert page.status_code == 503
    assert b"could not be reached" in page.data
    with app.app_context(), pytest.raises(PlatformUnavailable):
        app.extensions["spark"].grants.refresh("x", "http://localhost/callback")


def two_processes(make_app: AppFactory, browser_for: Any) -> tuple[Browser, Any]:
    """Two apps on one Redis stand in for two worker processes: a browser signed in
    through the first, and a test client of the second carrying the same session cookie."""
    first, second = make_app(), make_app()
    add_views(first)
    add_views(second)
    browser = browser_for(first)
    browser.sign_in()
    cookie = browser.client.get_cookie("session")
    assert cookie is not None
    other = second.test_client()
    other.set_cookie("session", cookie.value)
    return browser, other


def test_another_process_uses_a_refreshed_token_at_once(
    make_app: AppFactory, browser_for: Any, spark_platform: SparkPlatform
) -> None:
    browser, other = two_processes(make_app, browser_for)
    assert other.get("/account").status_code == 200

    spark_platform.expire_all()
    assert browser.client.get("/account").status_code == 200  # the first one refreshes
    assert other.get("/account").status_code == 200  # reads the grant fresh: no 401
    assert spark_platform.stats.refreshes == 1
    assert [r.status for r in spark_platform.requests_for("data")][-3:] == [401, 200, 200]

    browser.client.post("/logout", headers={"Origin": "http://localhost"})
    assert other.get("/account").status_code == 302  # the session itself is gone


def test_a_remembered_token_whose_successor_also_expired(
    make_app: AppFactory, browser_for: Any, spark_platform: SparkPlatform
) -> None:
    """The stored token another process refreshed to may itself have expired since: when
    the platform says 1020 again, refresh once more. Never a sign-out."""
    browser, other = two_processes(make_app, browser_for)
    assert other.get("/account").status_code == 200

    spark_platform.expire_all()
    assert browser.client.get("/account").status_code == 200  # refreshed elsewhere
    spark_platform.expire_all()  # and that token expires too
    assert other.get("/account").status_code == 200
    assert spark_platform.stats.refreshes == 2
    assert spark_platform.stats.rejected_refreshes == 0
    assert [r.status for r in spark_platform.requests_for("data")][-2:] == [401, 200]


@pytest.mark.slow
def test_refresh_timeout_answers_503_and_keeps_the_tokens(
    make_app: AppFactory, browser_for: Any, spark_platform: SparkPlatform
) -> None:
    app = make_app(SPARK_TIMEOUT=0.3)
    add_views(app)
    browser = browser_for(app)
    browser.sign_in()
    before = stored(app, browser)
    spark_platform.expire_all()
    spark_platform.add_fault(Fault("grant", "delay", delay=1.0))
    page = browser.client.get("/account")
    assert page.status_code == 503
    assert stored(app, browser) == before
    assert spark_platform.stats.grant_calls == 2  # the code, one refresh: never retried
    # The platform finished that refresh after we gave up, so the kept refresh token is
    # now dead: the user signs in again rather than seeing an error.
    assert spark_platform.wait_idle()
    assert browser.client.get("/account").status_code == 302


def test_a_query_string_in_the_path_is_refused_clearly(app: Flask) -> None:
    with app.app_context(), pytest.raises(ValueError, match="keyword arguments"):
        spark_api.get("/listings?_limit=3", _page=2)


def test_a_binding_lives_as_long_as_the_session_is_used(
    make_app: AppFactory, browser_for: Any, redis_client: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from datetime import timedelta

    import flask_spark.tokens

    app = make_app(PERMANENT_SESSION_LIFETIME=timedelta(hours=2))
    add_views(app)
    browser = browser_for(app)
    browser.sign_in()
    [key] = redis_client.keys("spark:b:*")
    redis_client.expire(key, 60)  # as if signed in almost two hours ago
    real = flask_spark.tokens.time.time
    monkeypatch.setattr(flask_spark.tokens.time, "time", lambda: real() + 61)
    assert browser.client.get("/account").status_code == 200
    assert redis_client.ttl(key) > 7000  # slid forward with the session, like its blob


def test_an_early_refresh_that_fails_keeps_using_the_working_token(
    app: Flask, browser: Browser, spark_platform: SparkPlatform, monkeypatch: pytest.MonkeyPatch
) -> None:
    import flask_spark.tokens

    record = stored(app, browser)
    later = record["expires_at"] - 30  # inside the 60 s leeway, still valid
    monkeypatch.setattr(flask_spark.tokens.time, "time", lambda: later)
    spark_platform.add_fault(Fault("grant", "status", status=503))
    assert browser.client.get("/account").status_code == 200
    sent = spark_platform.requests_for("data")[-1]
    assert sent.headers["Authorization"] == f"OAuth {record['access_token']}"
    assert stored(app, browser) == record


@pytest.mark.slow
def test_a_request_started_during_a_refresh_waits_for_it_instead_of_calling(
    app: Flask, browser: Browser, spark_platform: SparkPlatform
) -> None:
    """A request that finds its grant being refreshed sends no call with the old token
    (the platform would refuse it, and count it against the rate limit): it waits and
    calls once, with the new token."""
    other = same_browser(app, browser)
    spark_platform.expire_all()
    spark_platform.add_fault(Fault("grant", "delay", delay=0.5))
    statuses: list[int] = []
    first = threading.Thread(target=lambda: statuses.append(other.get("/account").status_code))
    first.start()
    deadline = time.monotonic() + 5
    while grant_of(app, browser.client).lease_until <= time.time():  # the refresh's lease
        assert time.monotonic() < deadline, "the first request never took the lease"
        time.sleep(0.005)
    before = len(spark_platform.requests_for("data"))

    assert browser.client.get("/account").status_code == 200
    first.join()
    assert statuses == [200]
    # The first request's retry and the second's one call, both with the new token.
    assert [r.status for r in spark_platform.requests_for("data")[before:]] == [200, 200]
    assert spark_platform.stats.refreshes == 1


@pytest.mark.slow
def test_a_failed_refresh_is_shared_with_the_requests_queued_behind_it(
    make_app: AppFactory, browser_for: Any, spark_platform: SparkPlatform
) -> None:
    app = make_app(SPARK_TIMEOUT=0.3)
    add_views(app)
    browser = browser_for(app)
    browser.sign_in()
    cookie = browser.client.get_cookie("session")
    assert cookie is not None
    spark_platform.expire_all()
    spark_platform.add_fault(Fault("grant", "delay", delay=1.0, count=None))
    statuses = same_session_burst(app, cookie.value, 8)
    assert statuses == [503] * 8
    assert spark_platform.wait_idle()
    assert spark_platform.stats.grant_calls == 2  # the code exchange and one refresh
