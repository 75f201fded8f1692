"""Tokens encrypted at rest: what a store holds is sealed, keys rotate, and a record that
does not open reads as no sign-in (never a 500)."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import pytest
import redis
import sqlalchemy as sa
from cachelib import FileSystemCache
from flask import Flask, jsonify
from flask_session import Session

from flask_spark import ConfigurationError, Spark, spark_api, spark_login_required
from flask_spark.sealing import PREFIX, Sealer
from flask_spark.testing import SparkPlatform

from .conftest import AppFactory, Browser, grant_of
from .store_fixtures import clean_store_url

OLD_KEY = "old-token-key-0123456789abcdefghijklmnop"
NEW_KEY = "new-token-key-0123456789abcdefghijklmnop"
OTHER_KEY = "another-key-0123456789abcdefghijklmnopq"

pytestmark = pytest.mark.usefixtures("no_secret_in_logs")


# -- the sealer --------------------------------------------------------------------------


def test_a_sealed_value_opens_for_its_context_only() -> None:
    sealer = Sealer([NEW_KEY])
    sealed = sealer.seal("AT0123456789", "grant-a/access")
    assert sealed.startswith(PREFIX)
    assert "AT0123456789" not in sealed
    assert sealed != sealer.seal("AT0123456789", "grant-a/access")  # a fresh nonce each time
    assert sealer.open(sealed, "grant-a/access") == "AT0123456789"
    assert sealer.open(sealed, "grant-b/access") is None  # moved to another grant
    assert sealer.open(sealed, "grant-a/refresh") is None  # moved to another field


def test_tampered_foreign_and_clear_values_do_not_open() -> None:
    sealer = Sealer([NEW_KEY])
    sealed = sealer.seal("AT0123456789", "g/access")
    flipped = sealed[:-2] + ("A" if sealed[-2] != "A" else "B") + sealed[-1]
    assert sealer.open(flipped, "g/access") is None
    assert Sealer([OTHER_KEY]).open(sealed, "g/access") is None
    assert sealer.open("AT0123456789", "g/access") is None  # written in clear
    assert sealer.open(PREFIX + "!!!", "g/access") is None
    assert sealer.open(PREFIX, "g/access") is None
    assert sealer.open("", "g/access") == ""  # an ended grant's empty tokens


def test_every_key_opens_and_the_first_seals() -> None:
    old = Sealer([OLD_KEY]).seal("RT0123456789", "g/refresh")
    rotated = Sealer([NEW_KEY, OLD_KEY])
    assert rotated.open(old, "g/refresh") == "RT0123456789"
    assert Sealer([NEW_KEY]).open(rotated.seal("RT0123456789", "g/refresh"), "g/refresh")
    assert Sealer([NEW_KEY]).open(old, "g/refresh") is None
    assert "0123456789" not in repr(rotated)


@pytest.mark.parametrize(
    "keys",
    [[], ["short"], "short", [OLD_KEY, 42], {"key": OLD_KEY}],
    ids=["empty", "short", "short string", "not a string", "a dict"],
)
def test_bad_token_keys_are_refused_at_init_app(make_app: AppFactory, keys: Any) -> None:
    with pytest.raises(ConfigurationError) as info:
        make_app(SPARK_TOKEN_KEYS=keys)
    assert info.value.key == "SPARK_TOKEN_KEYS"
    assert OLD_KEY not in str(info.value)


def test_without_secret_key_token_keys_are_required(tmp_path: Path) -> None:
    app = Flask("keyless", instance_path=str(tmp_path))
    app.config.update(
        SESSION_TYPE="cachelib",
        SESSION_CACHELIB=FileSystemCache(str(tmp_path / "sessions")),
        SPARK_CLIENT_ID="id",
        SPARK_CLIENT_SECRET="secret",
    )
    Session(app)
    with pytest.raises(ConfigurationError, match="SECRET_KEY") as info:
        Spark(app)
    assert info.value.key == "SPARK_TOKEN_KEYS"


# -- live: what the stores hold ----------------------------------------------------------


def _portal(make_app: AppFactory, **config: Any) -> Flask:
    app = make_app(**config)

    @app.get("/account")
    @spark_login_required
    def account() -> Any:
        return jsonify(spark_api.get("/my/account"))

    return app


def _issued_tokens(platform: SparkPlatform) -> set[str]:
    return {v for v in platform.issued_values() if v != platform.client_secret}


def _sign_in_and_refresh(app: Flask, browser_for: Any, platform: SparkPlatform) -> list[Browser]:
    browsers = []
    for user in (account["Id"] for account in platform.accounts):
        browser: Browser = browser_for(app)
        platform.auto_approve = False
        callback, _ = browser.authorize(browser.start_login(), user=user)
        assert browser.client.get(callback).status_code == 303
        browsers.append(browser)
    platform.auto_approve = True
    platform.expire_all()
    for browser in browsers:
        assert browser.client.get("/account").status_code == 200
    assert platform.stats.refreshes == 3
    return browsers


def _redis_text(url: str) -> str:
    client = redis.Redis.from_url(url)
    parts = []
    for key in client.scan_iter(count=1000):
        kind = client.type(key)
        if kind == b"hash":
            parts.append(repr(client.hgetall(key)))
        elif kind == b"string":
            parts.append(repr(client.get(key)))
        elif kind == b"set":
            parts.append(repr(client.smembers(key)))
    client.close()
    return "\n".join(parts)


def _sql_text(url: str) -> str:
    engine = sa.create_engine(url)
    parts = []
    with engine.connect() as conn:
        for name in sa.inspect(conn).get_table_names():
            rows = conn.execute(sa.text(f"SELECT * FROM {name}"))  # noqa: S608 - our tables
            parts.extend(repr(tuple(row)) for row in rows)
    engine.dispose()
    return "\n".join(parts)


@pytest.mark.parametrize("kind", ["sqlite", "postgresql", "mariadb", "redis"])
@pytest.mark.slow
def test_no_token_in_clear_in_any_store(
    kind: str,
    request: pytest.FixtureRequest,
    make_app: AppFactory,
    browser_for: Any,
    spark_platform: SparkPlatform,
    redis_server: Any,
    tmp_path: Path,
) -> None:
    url = clean_store_url(request, kind)
    app = _portal(make_app, SPARK_GRANT_STORE=url, SPARK_TOKEN_KEYS=[NEW_KEY])
    _sign_in_and_refresh(app, browser_for, spark_platform)
    app.extensions["spark"].tokens.store.close()

    tokens = _issued_tokens(spark_platform)
    assert len(tokens) >= 9  # three codes, three pairs, three refreshed pairs
    # Every byte the store's backend holds, and the session store's too (Redis).
    text = _redis_text(redis_server.url)
    if kind == "sqlite":
        files = sorted(tmp_path.glob("grants.sqlite3*"))  # with its -wal and -shm
        assert files
        raw = b"".join(f.read_bytes() for f in files)
        text += raw.decode("latin-1")
        with sqlite3.connect(files[0]) as db:
            text += repr(
                db.execute("SELECT access_token, refresh_token FROM spark_grants").fetchall()
            )
    elif kind != "redis":  # Redis was read above: the grants share the session's server
        text += _sql_text(url)
    assert PREFIX in text  # the sealed tokens are there
    assert not [t for t in tokens if t in text]


# -- live: rotation, SECRET_KEY, records that do not open ---------------------------------


def test_rotating_token_keys_keeps_everyone_signed_in(
    make_app: AppFactory, browser_for: Any, spark_platform: SparkPlatform, tmp_path: Path
) -> None:
    store = f"sqlite:///{tmp_path / 'shared.sqlite3'}"
    before = _portal(make_app, SPARK_GRANT_STORE=store, SPARK_TOKEN_KEYS=[OLD_KEY])
    browsers = _sign_in_and_refresh(before, browser_for, spark_platform)
    cookies = [b.client.get_cookie("session") for b in browsers]

    # The new key first, the old one kept: every user is still signed in, and a refresh
    # re-seals with the new key.
    rotated = _portal(make_app, SPARK_GRANT_STORE=store, SPARK_TOKEN_KEYS=[NEW_KEY, OLD_KEY])
    clients = []
    for cookie in cookies:
        assert cookie is not None
        client = rotated.test_client()
        client.set_cookie("session", cookie.value)
        assert client.get("/account").status_code == 200
        clients.append(client)
    spark_platform.expire_all()
    for client in clients:
        assert client.get("/account").status_code == 200

    # Every grant has been written again: the old key can go.
    new_only = _portal(make_app, SPARK_GRANT_STORE=store, SPARK_TOKEN_KEYS=[NEW_KEY])
    for cookie in cookies:
        assert cookie is not None
        client = new_only.test_client()
        client.set_cookie("session", cookie.value)
        assert client.get("/account").status_code == 200
        assert grant_of(new_only, client) is not None


def test_a_record_no_key_opens_reads_as_signed_out(
    make_app: AppFactory, browser_for: Any, spark_platform: SparkPlatform, tmp_path: Path
) -> None:
    store = f"sqlite:///{tmp_path / 'shared.sqlite3'}"
    app = _portal(make_app, SPARK_GRANT_STORE=store, SPARK_TOKEN_KEYS=[OLD_KEY])
    browser: Browser = browser_for(app)
    assert browser.sign_in().status_code == 303
    cookie = browser.client.get_cookie("session")
    assert cookie is not None

    other = _portal(make_app, SPARK_GRANT_STORE=store, SPARK_TOKEN_KEYS=[OTHER_KEY])
    client = other.test_client()
    client.set_cookie("session", cookie.value)
    page = client.get("/account")
    assert page.status_code == 302  # to /login: signed out, not a 500
    assert "/login" in page.headers["Location"]
    assert client.get("/account", headers={"Accept": "application/json"}).status_code == 401
    with other.app_context():
        assert other.extensions["spark"].extension.grants.list() == []


def test_a_tampered_record_reads_as_signed_out(
    make_app: AppFactory,
    browser_for: Any,
    spark_platform: SparkPlatform,
    redis_client: redis.Redis,
) -> None:
    app = _portal(make_app)  # grants in the session's Redis, sealed with SECRET_KEY's key
    browser: Browser = browser_for(app)
    assert browser.sign_in().status_code == 303
    [key] = redis_client.keys("spark:g:*")
    sealed = redis_client.hget(key, "access_token")
    assert sealed is not None
    assert sealed.startswith(PREFIX.encode())
    redis_client.hset(key, "access_token", sealed[:-4] + b"AAAA")

    assert browser.client.get("/account").status_code == 302
    assert spark_platform.stats.data_calls == 1  # only the sign-in's /my/account


def test_secret_key_fallbacks_keep_users_signed_in(
    make_app: AppFactory, browser_for: Any, spark_platform: SparkPlatform, tmp_path: Path
) -> None:
    store = f"sqlite:///{tmp_path / 'shared.sqlite3'}"
    first = _portal(make_app, SPARK_GRANT_STORE=store, SECRET_KEY="first-secret-key")
    browser: Browser = browser_for(first)
    assert browser.sign_in().status_code == 303
    cookie = browser.client.get_cookie("session")
    assert cookie is not None

    kept = _portal(
        make_app,
        SPARK_GRANT_STORE=store,
        SECRET_KEY="second-secret-key",
        SECRET_KEY_FALLBACKS=["first-secret-key"],
    )
    client = kept.test_client()
    client.set_cookie("session", cookie.value)
    assert client.get("/account").status_code == 200

    dropped = _portal(make_app, SPARK_GRANT_STORE=store, SECRET_KEY="second-secret-key")
    client = dropped.test_client()
    client.set_cookie("session", cookie.value)
    assert client.get("/account").status_code == 302
