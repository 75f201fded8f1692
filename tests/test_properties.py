"""Generated input: no `next` ever leaves the site, no callback query ever answers 5xx."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote_from_bytes, urlsplit

import pytest
import redis
from flask import Flask
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from flask_spark.redirects import safe_next
from flask_spark.testing import SparkPlatform

from .conftest import AppFactory

pytestmark = pytest.mark.slow  # hypothesis: hundreds of examples a test

NEXT_ALPHABET = st.sampled_from(
    [
        *"/\\\t\n\r :@.%?#&=;",
        *("//", "/\\", "http", "https:", "evil.example", "\x00", "é", "\u3000", "\uff0f"),
    ]
)
next_values = st.one_of(
    st.text(max_size=40),
    st.lists(NEXT_ALPHABET | st.text(max_size=3), max_size=12).map("".join),
)


def stays_on_site(location: str) -> bool:
    parts = urlsplit(location)
    return (
        not parts.scheme
        and not parts.netloc
        and location.startswith("/")
        and not location.startswith("//")
        and "\\" not in location
        and all("\x21" <= ch <= "\x7e" for ch in location)
    )


@settings(max_examples=10000, deadline=None)
@given(next_values)
def test_safe_next_never_points_off_site(value: str) -> None:
    result = safe_next(value)
    assert result is None or stays_on_site(result)


@pytest.fixture
def app(make_app: AppFactory) -> Flask:
    return make_app()


@settings(
    max_examples=500, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(next_values)
def test_no_sign_in_ever_lands_off_site(app: Flask, browser_for: Any, value: str) -> None:
    """The whole flow, through the simulator: whatever ``next`` /login got, the Location
    the callback answers with stays on this site."""
    browser = browser_for(app)
    login = browser.client.get("/login", query_string={"next": value})
    assert login.status_code == 302
    callback, _ = browser.authorize(login.headers["Location"])
    response = browser.client.get(callback)
    assert response.status_code == 303
    assert stays_on_site(response.headers["Location"])


raw_params = st.lists(
    st.tuples(
        st.sampled_from([b"state", b"code", b"error", b"error_description", b"next", b"x"])
        | st.binary(max_size=8),
        st.binary(max_size=64) | st.sampled_from([b"\x00", b"\xff\xfe", b"a" * 5000]),
    ),
    max_size=6,
)


def snapshot(store: redis.Redis) -> dict[bytes, Any]:
    """Every key and its serialized value, whatever its type."""
    return {key: store.dump(key) for key in store.keys("*")}


@settings(
    max_examples=1000, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(raw_params, st.booleans())
def test_random_callback_queries_never_answer_5xx(
    app: Flask,
    spark_platform: SparkPlatform,
    redis_client: redis.Redis,
    params: list[tuple[bytes, bytes]],
    login: bool,
) -> None:
    redis_client.flushdb()  # each example on an empty store: the snapshot stays small
    client = app.test_client()
    if login:
        client.get("/login")
    before = snapshot(redis_client)
    query = "&".join(f"{quote_from_bytes(k)}={quote_from_bytes(v)}" for k, v in params)
    # WSGI carries the raw bytes of the query as a latin-1 string: non-UTF-8 and NUL included.
    raw = b"&".join(k + b"=" + v for k, v in params).decode("latin-1")
    for qs in (query, raw):
        response = client.get("/callback", environ_overrides={"QUERY_STRING": qs})
        assert 400 <= response.status_code < 500, response.status_code
    assert snapshot(redis_client) == before  # nothing written to the store
    assert spark_platform.stats.grant_calls == 0


def test_the_callback_page_never_echoes_raw_input(app: Flask) -> None:
    client = app.test_client()
    response: Any = client.get(
        "/callback", query_string={"error": "x", "error_description": "<img src=x onerror=1>"}
    )
    assert b"<img" not in response.data
