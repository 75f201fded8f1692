"""Configuration is validated once, at init_app, with errors that name the key."""

from __future__ import annotations

import warnings
from typing import Any

import pytest
from cachelib import FileSystemCache
from flask import Flask
from flask_session import Session

from flask_spark import ConfigurationError, Spark, SparkWarning, __version__
from flask_spark.config import normalize_portal


def make(tmp_path: Any, session: bool = True, **config: Any) -> Flask:
    app = Flask("configured", instance_path=str(tmp_path / "instance"))
    app.config.update(
        SECRET_KEY="k",
        SESSION_TYPE="cachelib",
        SESSION_CACHELIB=FileSystemCache(str(tmp_path)),
        SPARK_CLIENT_ID="id",
        SPARK_CLIENT_SECRET="secret",
    )
    app.config.update(config)
    if session:
        Session(app)
    return app


def test_version_comes_from_the_installed_metadata() -> None:
    from importlib.metadata import version

    assert __version__ == version("Flask-Spark")


def test_minimal_config_works(tmp_path: Any) -> None:
    app = make(tmp_path)
    Spark(app)
    state = app.extensions["spark"]
    assert state.config.platform_url == "https://sparkplatform.com"
    assert state.config.grant_url == "https://sparkapi.com/v1/oauth2/grant"
    assert state.config.role == "idx"
    assert {r.endpoint for r in app.url_map.iter_rules()} >= {
        "spark.login",
        "spark.callback",
        "spark.logout",
    }


@pytest.mark.parametrize(
    ("overrides", "key"),
    [
        ({"SPARK_CLIENT_ID": None}, "SPARK_CLIENT_ID"),
        ({"SPARK_CLIENT_SECRET": ""}, "SPARK_CLIENT_SECRET"),
        ({"SPARK_ROLE": "admin"}, "SPARK_ROLE"),
        ({"SPARK_ROLE": "vow"}, "SPARK_PORTAL"),
        ({"SPARK_ROLE": "vow", "SPARK_PORTAL": "my/portal"}, "SPARK_PORTAL"),
        ({"SPARK_ROLE": "vow", "SPARK_PORTAL": "my.portal"}, "SPARK_PORTAL"),
        ({"SPARK_ROLE": "vow", "SPARK_PORTAL": "my portal"}, "SPARK_PORTAL"),
        ({"SPARK_PLATFORM_URL": "http://sparkplatform.com"}, "SPARK_PLATFORM_URL"),
        ({"SPARK_API_URL": "ftp://sparkapi.com"}, "SPARK_API_URL"),
        ({"SPARK_API_URL": "https://user@sparkapi.com"}, "SPARK_API_URL"),
        ({"SPARK_API_URL": "https://sparkapi.com/?x=1"}, "SPARK_API_URL"),
        ({"SPARK_API_URL": "https://sparkapi.com:99999"}, "SPARK_API_URL"),
        (
            {"SPARK_ALLOW_HTTP_LOOPBACK": True, "SPARK_API_URL": "http://localhost:80@evil.test"},
            "SPARK_API_URL",
        ),
        (
            {"SPARK_ALLOW_HTTP_LOOPBACK": True, "SPARK_API_URL": "http://10.0.0.1"},
            "SPARK_API_URL",
        ),
        ({"SPARK_ALLOW_HTTP_LOOPBACK": "yes"}, "SPARK_ALLOW_HTTP_LOOPBACK"),
        ({"SPARK_TIMEOUT": 0}, "SPARK_TIMEOUT"),
        ({"SPARK_TIMEOUT": "10"}, "SPARK_TIMEOUT"),
        ({"SPARK_RETRIES": -1}, "SPARK_RETRIES"),
        ({"SPARK_USER_AGENT": "app\r\nX-Injected: 1"}, "SPARK_USER_AGENT"),
        ({"SPARK_REDIRECT_URI": "/callback"}, "SPARK_REDIRECT_URI"),
        ({"SPARK_REFRESH_TOKEN": "abc"}, "SPARK_ACCESS_TOKEN"),
        ({"SPARK_AUTH_FLOW": "saml"}, "SPARK_AUTH_FLOW"),
        (
            {"SPARK_AUTH_FLOW": "openid", "SPARK_ROLE": "vow", "SPARK_PORTAL": "p"},
            "SPARK_AUTH_FLOW",
        ),
        ({"SPARK_OPENID_SCOPE": "profile email"}, "SPARK_OPENID_SCOPE"),
        (
            {"SPARK_OPENID_DISCOVERY_URL": "http://sparkplatform.com/x"},
            "SPARK_OPENID_DISCOVERY_URL",
        ),
        ({"SPARK_OPENID_LEEWAY": -1}, "SPARK_OPENID_LEEWAY"),
        ({"SPARK_TOKEN_SCHEME": "Basic"}, "SPARK_TOKEN_SCHEME"),
        (
            {"SPARK_ACCESS_TOKEN": "abc", "SPARK_REFRESH_TOKEN": "def"},
            "SPARK_REDIRECT_URI",
        ),
    ],
)
def test_bad_config_names_the_key(tmp_path: Any, overrides: dict[str, Any], key: str) -> None:
    app = make(tmp_path)
    for name, value in overrides.items():
        if value is None:
            del app.config[name]
        else:
            app.config[name] = value
    with pytest.raises(ConfigurationError) as info:
        Spark(app)
    assert info.value.key == key
    assert key in str(info.value)
    assert "spark" not in app.extensions


@pytest.mark.parametrize(
    "url", ["http://localhost:5001", "http://127.0.0.1:8080", "http://[::1]:9000/"]
)
def test_http_is_allowed_on_loopback_with_the_switch(tmp_path: Any, url: str) -> None:
    app = make(tmp_path, SPARK_ALLOW_HTTP_LOOPBACK=True, SPARK_PLATFORM_URL=url, SPARK_API_URL=url)
    Spark(app)
    assert app.extensions["spark"].config.api_url == url.rstrip("/")


def test_without_flask_session_init_app_fails_fast(tmp_path: Any) -> None:
    app = make(tmp_path, session=False)
    with pytest.raises(ConfigurationError, match="Session") as info:
        Spark(app)
    assert info.value.key == "SESSION_TYPE"


def test_samesite_strict_warns(tmp_path: Any) -> None:
    app = make(tmp_path, SESSION_COOKIE_SAMESITE="Strict")
    with pytest.warns(SparkWarning, match="SAMESITE"):
        Spark(app)


def test_app_factory_pattern(tmp_path: Any) -> None:
    spark = Spark()
    first, second = make(tmp_path), make(tmp_path, SPARK_CLIENT_ID="other")
    spark.init_app(first)
    spark.init_app(second)
    assert first.extensions["spark"].config.client_id == "id"
    assert second.extensions["spark"].config.client_id == "other"
    assert first.extensions["spark"].extension is spark


def test_app_handlers_are_not_overridden(tmp_path: Any) -> None:
    from flask_spark import NotSignedIn

    app = make(tmp_path)

    @app.errorhandler(NotSignedIn)
    def mine(error: NotSignedIn) -> Any:
        return "mine", 401

    Spark(app)
    assert app.error_handler_spec[None][None][NotSignedIn] is mine


def test_portal_names_are_lowercased() -> None:
    assert normalize_portal("MyPortal") == "myportal"


@pytest.mark.parametrize(
    ("key", "says"),
    [
        ("SPARK_REFRESH_LOCK_SECONDS", "no longer read; use SPARK_REFRESH_LEASE_SECONDS"),
        ("SPARK_MAX_PENDING_LOGINS", "SPARK_MAX_PENDING_LOGINS is no longer read."),
    ],
)
def test_keys_of_earlier_builds_are_warned_about(tmp_path: Any, key: str, says: str) -> None:
    app = make(tmp_path, **{key: 5})
    with pytest.warns(SparkWarning, match=says):
        Spark(app)


@pytest.mark.slow
def test_a_cluster_session_redis_without_a_grant_store_is_warned_about(
    tmp_path: Any, cluster_topology: Any
) -> None:
    from redis.cluster import RedisCluster

    client = RedisCluster.from_url(f"redis://127.0.0.1:{cluster_topology.master_ports[0]}")
    try:
        app = make(tmp_path, session=False, SESSION_TYPE="redis", SESSION_REDIS=client)
        with pytest.warns(RuntimeWarning, match="No valid Redis instance"):  # Flask-Session
            Session(app)
        with pytest.warns(SparkWarning, match="SPARK_GRANT_STORE='redis\\+cluster"):
            Spark(app)
        app.extensions["spark"].tokens.store.close()
    finally:
        client.close()


def test_an_https_redirect_uri_without_a_secure_cookie_warns(tmp_path: Any) -> None:
    with pytest.warns(SparkWarning, match="SESSION_COOKIE_SECURE"):
        Spark(make(tmp_path, SPARK_REDIRECT_URI="https://portal.example/callback"))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        Spark(
            make(
                tmp_path,
                SPARK_REDIRECT_URI="https://portal.example/callback",
                SESSION_COOKIE_SECURE=True,
            )
        )
        Spark(make(tmp_path, SPARK_REDIRECT_URI="http://127.0.0.1:5000/callback"))


@pytest.mark.parametrize("key", ["SPARK_ACCESS_TOKEN", "SPARK_REFRESH_TOKEN"])
@pytest.mark.parametrize("value", ["AT\r\nX-Injected: 1", "tökén", "a b", "x" * 4097])
def test_a_configured_token_must_be_a_token(tmp_path: Any, key: str, value: str) -> None:
    app = make(
        tmp_path,
        SPARK_ACCESS_TOKEN="access",
        SPARK_REFRESH_TOKEN="refresh",
        SPARK_REDIRECT_URI="https://portal.example/callback",
    )
    app.config[key] = value
    with pytest.raises(ConfigurationError) as info:
        Spark(app)
    assert info.value.key == key
    assert value not in str(info.value)
