"""Roles and VOW portals: the right endpoint per role, many portals in one app, tokens
scoped to their portal."""

from __future__ import annotations

import threading
import time
from typing import Any
from urllib.parse import urlsplit

import pytest
from flask import Flask, jsonify, request

from flask_spark import Spark, spark_api, spark_login_required
from flask_spark.testing import Fault, SparkPlatform

from .conftest import AppFactory, same_browser

PORTALS = ("alpha", "beta")

pytestmark = pytest.mark.usefixtures("no_secret_in_logs")


@pytest.mark.parametrize(
    ("config", "path"),
    [
        ({}, "/oauth2"),
        ({"SPARK_ROLE": "idx"}, "/oauth2"),
        ({"SPARK_ROLE": "private"}, "/oauth2"),
        ({"SPARK_ROLE": "vow", "SPARK_PORTAL": "MyPortal"}, "/auth/vow/myportal"),
        ({"SPARK_ROLE": "vow", "SPARK_PORTAL": "agent_Jane-2"}, "/auth/vow/agent_jane-2"),
    ],
)
def test_each_role_signs_in_at_its_endpoint(
    make_app: AppFactory,
    browser_for: Any,
    spark_platform: SparkPlatform,
    config: dict[str, Any],
    path: str,
) -> None:
    app = make_app(**config)
    browser = browser_for(app)
    location = browser.start_login()
    assert urlsplit(location).path == path
    response = browser.client.get(browser.authorize(location)[0])
    assert response.status_code == 303
    assert spark_platform.stats.code_exchanges == 1
    authorize = spark_platform.requests_for("authorize")[-1]
    assert authorize.path == path


def make_portal_app(make_app: AppFactory, platform: SparkPlatform, **config: Any) -> Flask:
    """One app, one VOW key, a portal per URL segment: /alpha/..., /beta/..."""
    platform.register_client(
        "vow-key", "vow-secret", tuple(f"http://localhost/{p}/callback" for p in PORTALS)
    )
    spark = Spark(
        url_prefix="/<portal>",
        portal_loader=lambda: (request.view_args or {}).get("portal"),
    )
    return make_app(
        spark=spark,
        SPARK_ROLE="vow",
        SPARK_CLIENT_ID="vow-key",
        SPARK_CLIENT_SECRET="vow-secret",
        **config,
    )


@pytest.fixture
def portal_app(make_app: AppFactory, spark_platform: SparkPlatform) -> Flask:
    app = make_portal_app(make_app, spark_platform)

    @app.get("/<portal>/account")
    @spark_login_required
    def account(portal: str) -> Any:
        return jsonify(spark_api.get("/my/account"))

    @app.get("/<portal>/")
    def home(portal: str) -> Any:
        return jsonify(signed_in=spark_api.authenticated)

    return app


def token_used_last(platform: SparkPlatform) -> str:
    auth = platform.requests_for("data")[-1].headers["Authorization"]
    return auth.split(" ", 1)[1]


def test_a_portal_signs_in_at_its_own_endpoint(
    portal_app: Flask, browser_for: Any, spark_platform: SparkPlatform
) -> None:
    browser = browser_for(portal_app)
    location = browser.start_login("/Alpha/login?next=/Alpha/account")
    parts = urlsplit(location)
    assert parts.path == "/auth/vow/alpha"
    callback, _ = browser.authorize(browser.start_login("/alpha/login?next=/alpha/account"))
    assert callback.startswith("/alpha/callback?")
    response = browser.client.get(callback)
    assert response.status_code == 303
    assert response.headers["Location"] == "/alpha/account"


def test_login_required_stays_inside_the_portal(portal_app: Flask) -> None:
    response = portal_app.test_client().get("/beta/account")
    assert response.status_code == 302
    assert response.headers["Location"] == "/beta/login?next=/beta/account"


def test_bad_portal_in_the_url_is_not_found(portal_app: Flask) -> None:
    client = portal_app.test_client()
    assert client.get("/no.dots/login").status_code == 404
    assert client.get("/a%20b/login").status_code == 404


def test_tokens_never_cross_portals(
    portal_app: Flask, browser_for: Any, spark_platform: SparkPlatform
) -> None:
    browser = browser_for(portal_app)
    browser.client.get(browser.authorize(browser.start_login("/alpha/login"))[0])
    assert browser.client.get("/alpha/").json == {"signed_in": True}
    assert browser.client.get("/beta/").json == {"signed_in": False}
    assert browser.client.get("/beta/account").status_code == 302
    assert browser.client.get("/alpha/account").status_code == 200
    alpha_token = token_used_last(spark_platform)

    browser.client.get(browser.authorize(browser.start_login("/beta/login"))[0])
    # Signing in to beta did not sign alpha out.
    assert browser.client.get("/alpha/account").status_code == 200
    assert token_used_last(spark_platform) == alpha_token
    assert browser.client.get("/beta/account").status_code == 200
    beta_token = token_used_last(spark_platform)
    assert beta_token != alpha_token
    assert spark_platform.user_for(alpha_token) is not None

    # Signing out of beta keeps alpha.
    out = browser.client.post("/beta/logout", headers={"Origin": "http://localhost"})
    assert out.status_code == 303
    assert browser.client.get("/beta/").json == {"signed_in": False}
    assert browser.client.get("/alpha/account").status_code == 200


def test_one_portal_per_session_when_the_app_wants_it(
    make_app: AppFactory, browser_for: Any, spark_platform: SparkPlatform
) -> None:
    app = make_portal_app(make_app, spark_platform, SPARK_ONE_PORTAL_PER_SESSION=True)

    @app.get("/<portal>/")
    def home(portal: str) -> Any:
        return jsonify(signed_in=spark_api.authenticated)

    browser = browser_for(app)
    browser.client.get(browser.authorize(browser.start_login("/alpha/login"))[0])
    browser.client.get(browser.authorize(browser.start_login("/beta/login"))[0])
    assert browser.client.get("/beta/").json == {"signed_in": True}
    assert browser.client.get("/alpha/").json == {"signed_in": False}
    assert spark_platform.stats.revocations == 1  # alpha's grant was revoked, not just dropped


def test_callback_keeps_the_portal_the_sign_in_started_with(
    make_app: AppFactory, browser_for: Any, spark_platform: SparkPlatform
) -> None:
    resolved = {"portal": "Alpha"}
    spark = Spark(portal_loader=lambda: resolved["portal"])
    app = make_app(spark=spark, SPARK_ROLE="vow")

    @app.get("/me")
    def me() -> Any:
        return jsonify(signed_in=spark_api.authenticated)

    browser = browser_for(app)
    location = browser.start_login()
    assert urlsplit(location).path == "/auth/vow/alpha"
    callback, _ = browser.authorize(location)
    resolved["portal"] = "beta"  # the request would now resolve another portal
    assert browser.client.get(callback).status_code == 303
    assert browser.client.get("/me").json == {"signed_in": False}
    resolved["portal"] = "alpha"
    assert browser.client.get("/me").json == {"signed_in": True}
    assert spark_platform.stats.code_exchanges == 1


def test_loader_falls_back_to_the_configured_portal(
    make_app: AppFactory, browser_for: Any
) -> None:
    spark = Spark(portal_loader=lambda: None)
    app = make_app(spark=spark, SPARK_ROLE="vow", SPARK_PORTAL="Default")
    assert urlsplit(browser_for(app).start_login()).path == "/auth/vow/default"


def test_vow_without_any_portal_is_not_found(make_app: AppFactory) -> None:
    spark = Spark(portal_loader=lambda: None)
    app = make_app(spark=spark, SPARK_ROLE="vow")
    assert app.test_client().get("/login").status_code == 404


@pytest.mark.slow
def test_signing_in_to_a_portal_while_another_refreshes(
    portal_app: Flask, browser_for: Any, spark_platform: SparkPlatform
) -> None:
    """The session id rotates (and its records move) while alpha's refresh is at the
    platform: the move waits for the refresh, so alpha's new tokens move too."""
    browser = browser_for(portal_app)
    browser.client.get(browser.authorize(browser.start_login("/alpha/login"))[0])
    alpha = same_browser(portal_app, browser)
    spark_platform.expire_all()
    spark_platform.add_fault(Fault("grant", "delay", delay=1.0))
    result: list[int] = []
    thread = threading.Thread(
        target=lambda: result.append(alpha.get("/alpha/account").status_code)
    )
    thread.start()
    deadline = time.monotonic() + 10
    while spark_platform.in_flight == 0 and time.monotonic() < deadline:
        time.sleep(0.005)  # until alpha's refresh is at the platform
    assert spark_platform.in_flight == 1
    browser.client.get(browser.authorize(browser.start_login("/beta/login"))[0])
    thread.join()
    assert result == [200]
    assert browser.client.get("/alpha/account").status_code == 200
    assert browser.client.get("/beta/account").status_code == 200
    assert spark_platform.stats.rejected_refreshes == 0
