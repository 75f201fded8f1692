"""A hostile platform: answers built to break the client, over HTTPS from the simulator.

Whatever comes back (tokens with CR/LF, non-ASCII or megabytes in them, HTML, ``{}``,
megabyte bodies, answers trickled a byte at a time, nonsense ``expires_in``), the user
sees a page the app renders, no traceback and no token reaches a log, nothing hostile is
stored, and every call is over within ``SPARK_TIMEOUT`` plus a second.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pytest
from flask import Flask, jsonify

from flask_spark import SparkError, spark_api, spark_login_required
from flask_spark.testing import Fault, SparkPlatform

from .conftest import AppFactory, Browser, grant_of

TIMEOUT = 1.0
BIG = 10 * 1024 * 1024

pytestmark = pytest.mark.usefixtures("no_secret_in_logs")

CRLF_TOKEN = "AThostile0123456789\r\nX-Injected: 1"
ACCENTED_TOKEN = "AThostilé0123456789"


def _with(**fields: Any) -> Callable[[Any], Any]:
    return lambda answer: {**answer, **fields}


#: Grant answers a hostile platform might send, each of which must fail the sign-in.
HOSTILE_GRANTS: dict[str, Callable[[Any], Any]] = {
    "crlf access token": _with(access_token=CRLF_TOKEN),
    "non-ascii access token": _with(access_token=ACCENTED_TOKEN),
    "10 MB access token": _with(access_token="A" * BIG),
    "number as access token": _with(access_token=12345678901234567890),
    "crlf refresh token": _with(refresh_token=CRLF_TOKEN),
    "html": lambda _: b"<!DOCTYPE html><html><body>Maintenance</body></html>",
    "empty object": lambda _: {},
    "10 MB body": lambda answer: {**answer, "padding": " " * BIG},
}


@pytest.fixture
def app(make_app: AppFactory) -> Flask:
    # The embedded default grant store (SQLite in the instance folder): what is stored
    # is read back through the public admin API.
    app = make_app(SPARK_TIMEOUT=TIMEOUT, SPARK_MAX_RESPONSE_BYTES=1024 * 1024)

    @app.get("/account")
    @spark_login_required
    def account() -> Any:
        return jsonify(spark_api.get("/my/account"))

    return app


def _stored(app: Flask) -> list[Any]:
    with app.app_context():
        return app.extensions["spark"].extension.grants.list()  # type: ignore[no-any-return]


def _timed(fn: Callable[[], Any]) -> tuple[Any, float]:
    start = time.monotonic()
    result = fn()
    return result, time.monotonic() - start


def _assert_clean_page(response: Any, *hostile: str) -> None:
    assert 400 <= response.status_code < 600
    page = response.get_data(as_text=True)
    assert "Traceback" not in page
    for value in hostile:
        assert value not in page
        assert value[:19] not in page


@pytest.mark.parametrize("answer", list(HOSTILE_GRANTS), ids=list(HOSTILE_GRANTS))
def test_a_hostile_grant_answer_fails_the_sign_in_and_stores_nothing(
    answer: str,
    app: Flask,
    browser_for: Any,
    spark_platform: SparkPlatform,
    log_text: Callable[[], str],
) -> None:
    browser: Browser = browser_for(app)
    callback, _ = browser.authorize(browser.start_login())
    spark_platform.add_fault(Fault("grant", "tamper", tamper=HOSTILE_GRANTS[answer]))

    response, took = _timed(lambda: browser.client.get(callback))

    assert response.status_code == 502
    assert "sign-in did not finish" in response.get_data(as_text=True).lower()
    _assert_clean_page(response, CRLF_TOKEN, ACCENTED_TOKEN)
    assert took < TIMEOUT + 1
    assert _stored(app) == []
    assert browser.client.get("/account").status_code == 302  # not signed in
    logs = log_text()
    assert "Traceback" not in logs
    assert "X-Injected" not in logs
    assert ACCENTED_TOKEN not in logs


def test_an_exchange_whose_refresh_token_is_unusable_is_revoked(
    app: Flask, browser_for: Any, spark_platform: SparkPlatform
) -> None:
    browser: Browser = browser_for(app)
    callback, _ = browser.authorize(browser.start_login())
    spark_platform.add_fault(Fault("grant", "tamper", tamper=_with(refresh_token=CRLF_TOKEN)))

    assert browser.client.get(callback).status_code == 502

    # The access token in that answer was usable: nothing holds its grant, so it is given
    # back at the platform rather than left alive.
    assert spark_platform.stats.code_exchanges == 1
    assert spark_platform.stats.revocations == 1


@pytest.mark.slow
def test_a_trickled_grant_answer_is_cut_at_the_timeout(
    app: Flask, browser_for: Any, spark_platform: SparkPlatform
) -> None:
    browser: Browser = browser_for(app)
    callback, _ = browser.authorize(browser.start_login())
    spark_platform.add_fault(Fault("grant", "trickle", delay=0.1))

    response, took = _timed(lambda: browser.client.get(callback))

    assert response.status_code == 502
    assert TIMEOUT - 0.05 < took < TIMEOUT + 1
    assert _stored(app) == []


@pytest.mark.parametrize(
    "answer",
    ["crlf access token", "non-ascii access token", "10 MB access token", "empty object"],
)
def test_a_hostile_refresh_answer_keeps_the_stored_tokens(
    answer: str, app: Flask, browser_for: Any, spark_platform: SparkPlatform
) -> None:
    browser: Browser = browser_for(app)
    assert browser.sign_in().status_code == 303
    before = grant_of(app, browser.client)
    spark_platform.expire_all()
    spark_platform.add_fault(Fault("grant", "tamper", tamper=HOSTILE_GRANTS[answer]))

    response, took = _timed(lambda: browser.client.get("/account"))

    assert response.status_code == 503
    assert response.headers["Retry-After"]
    _assert_clean_page(response, CRLF_TOKEN, ACCENTED_TOKEN)
    assert took < 2 * (TIMEOUT + 1)  # a refresh and one retry of the data call at most
    after = grant_of(app, browser.client)
    assert after is not None  # still signed in
    assert (after.access_token, after.refresh_token) == (
        before.access_token,
        before.refresh_token,
    )


@pytest.mark.slow
def test_a_trickled_refresh_is_cut_at_the_timeout(
    app: Flask, browser_for: Any, spark_platform: SparkPlatform
) -> None:
    browser: Browser = browser_for(app)
    assert browser.sign_in().status_code == 303
    spark_platform.expire_all()
    spark_platform.add_fault(Fault("grant", "trickle", delay=0.1))

    response, took = _timed(lambda: browser.client.get("/account"))

    assert response.status_code == 503
    assert took < TIMEOUT + 1
    assert grant_of(app, browser.client) is not None


@pytest.mark.parametrize(
    "fault",
    [
        Fault("data", "trickle", delay=0.1),
        Fault("data", "tamper", tamper=lambda _: b"{" + b" " * BIG + b"}"),
        Fault("data", "tamper", tamper=lambda _: {}),
        Fault("data", "tamper", tamper=lambda _: b"<html>proxy</html>"),
    ],
    ids=["trickled", "10 MB body", "empty object", "html"],
)
@pytest.mark.slow
def test_a_hostile_data_answer_is_a_503_page(
    fault: Fault, app: Flask, browser_for: Any, spark_platform: SparkPlatform
) -> None:
    browser: Browser = browser_for(app)
    assert browser.sign_in().status_code == 303
    spark_platform.add_fault(fault)

    response, took = _timed(lambda: browser.client.get("/account"))

    assert response.status_code == 503
    assert response.headers["Retry-After"]
    _assert_clean_page(response)
    assert took < TIMEOUT + 1
    assert browser.client.get("/account").status_code == 200  # still signed in


@pytest.mark.parametrize(
    ("expires_in", "lifetime"),
    [
        (1e-300, (55, 61)),
        ("1e-300", (55, 61)),
        (0, (86000, 86401)),
        (-5, (86000, 86401)),
        ("soon", (86000, 86401)),
        (True, (86000, 86401)),
        (1e308, (86000 * 10, 864001)),
        (None, (86000, 86401)),
    ],
)
def test_nonsense_expires_in_gives_a_sane_lifetime(
    expires_in: Any,
    lifetime: tuple[float, float],
    app: Flask,
    browser_for: Any,
    spark_platform: SparkPlatform,
) -> None:
    browser: Browser = browser_for(app)
    callback, _ = browser.authorize(browser.start_login())
    spark_platform.add_fault(Fault("grant", "tamper", tamper=_with(expires_in=expires_in)))

    assert browser.client.get(callback).status_code == 303

    grant = grant_of(app, browser.client)
    low, high = lifetime
    assert low <= grant.expires_at - grant.obtained_at <= high
    assert browser.client.get("/account").status_code == 200
    assert browser.client.get("/account").status_code == 200
    assert spark_platform.stats.refreshes == 0  # no refresh before every call


def test_a_platform_echoing_the_token_in_an_error_does_not_put_it_in_the_exception(
    app: Flask, browser_for: Any, spark_platform: SparkPlatform
) -> None:
    caught: list[BaseException] = []

    @app.get("/echo")
    def echo() -> Any:
        try:
            spark_api.get("/listings")
        except SparkError as exc:
            caught.append(exc)
        return "done"

    browser: Browser = browser_for(app)
    assert browser.sign_in().status_code == 303
    token = grant_of(app, browser.client).access_token
    answer = {"D": {"Success": False, "Code": 1050, "Message": f"Bad token {token} here"}}
    spark_platform.add_fault(Fault("data", "tamper", tamper=lambda _: answer))
    assert browser.client.get("/echo").status_code == 200
    [error] = caught
    assert token not in str(error)
    assert token not in repr(error)
    assert "Bad token [token] here" in str(error)
