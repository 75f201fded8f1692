"""Several Spark instances in one app: an agent portal signing in with OpenID Connect on an
IDX key beside VOW consumer portals on an OAuth 2 VOW key, one browser signed in to all of
them at once, each seeing its own account and tokens."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

import pytest
from click.testing import Result
from flask import Flask, jsonify, request

from flask_spark import (
    ConfigurationError,
    Spark,
    SparkWarning,
    logged_out,
    spark_account,
    spark_api,
    spark_login_required,
    token_obtained,
)
from flask_spark.testing import ACCOUNTS, SparkPlatform, consumers

from .conftest import AppFactory, Browser

pytestmark = pytest.mark.usefixtures("no_secret_in_logs")

JANE = ACCOUNTS[0]["Id"]
# VOW portals are signed in to by their own consumers.
ALPHA = consumers("alpha")[0]["Id"]
BETA = consumers("beta")[1]["Id"]
ORIGIN = {"Origin": "http://localhost"}


def portal_of_url() -> str | None:
    return (request.view_args or {}).get("portal")


def add_views(app: Flask, vow: Spark) -> None:
    """The same views under the agent portal and under each VOW portal."""

    def me(**_: Any) -> Any:
        account = spark_account
        return jsonify(
            id=account.id if account else None, scope=account.scope if account else None
        )

    def api_me(**_: Any) -> Any:
        return jsonify(spark_api.get("/my/account")[0]["Id"])

    app.add_url_rule("/me", "me", me)
    app.add_url_rule("/portal/<portal>/me", "portal_me", me)
    app.add_url_rule("/api-me", "api_me", spark_login_required(api_me))
    app.add_url_rule("/portal/<portal>/api-me", "portal_api_me", spark_login_required(api_me))

    @app.get("/portal/<portal>/both")
    def both(portal: str) -> Any:
        agent = app.extensions["spark"].extension.account
        consumer = vow.account
        return jsonify(
            agent=agent.id if agent else None, consumer=consumer.id if consumer else None
        )


@pytest.fixture
def two_instance_app(make_app: AppFactory, spark_platform: SparkPlatform) -> Iterator[Flask]:
    spark_platform.register_client(
        "vow-key",
        "vow-secret",
        [f"http://localhost/portal/{portal}/callback" for portal in ("alpha", "beta")],
    )
    app = make_app(
        SPARK_AUTH_FLOW="openid",
        SPARK_VOW_CLIENT_ID="vow-key",
        SPARK_VOW_CLIENT_SECRET="vow-secret",
        SPARK_VOW_ROLE="vow",
    )
    vow = Spark(app, name="vow", url_prefix="/portal/<portal>", portal_loader=portal_of_url)
    add_views(app, vow)
    yield app
    app.extensions["spark.instances"]["vow"].transport.close()


def sign_in(browser: Browser, login_path: str, user: str) -> None:
    callback, _ = browser.authorize(browser.start_login(login_path), user)
    assert browser.client.get(callback).status_code == 303


def who(browser: Browser, path: str) -> Any:
    response = browser.client.get(path)
    assert response.status_code == 200
    return response.json


def test_one_browser_signed_in_to_the_agent_portal_and_two_vow_portals(
    two_instance_app: Flask, browser_for: Any, spark_platform: SparkPlatform
) -> None:
    browser: Browser = browser_for(two_instance_app)
    agent_login = browser.start_login("/login")
    assert urlsplit(agent_login).path == "/openid/authorize"
    assert urlsplit(browser.start_login("/portal/Alpha/login")).path == "/auth/vow/alpha"

    sign_in(browser, "/login", JANE)
    sign_in(browser, "/portal/alpha/login", ALPHA)
    sign_in(browser, "/portal/beta/login", BETA)

    assert who(browser, "/me") == {"id": JANE, "scope": "idx"}
    assert who(browser, "/portal/alpha/me") == {"id": ALPHA, "scope": "vow/alpha"}
    assert who(browser, "/portal/beta/me") == {"id": BETA, "scope": "vow/beta"}
    # Each view calls the API with its own portal's tokens: the platform answers as the
    # account those tokens belong to.
    assert who(browser, "/api-me") == JANE
    assert who(browser, "/portal/alpha/api-me") == ALPHA
    assert who(browser, "/portal/beta/api-me") == BETA
    tokens = [r.headers["Authorization"] for r in spark_platform.requests_for("data")[-3:]]
    assert len(set(tokens)) == 3
    # An instance named explicitly, from a view the other one serves.
    assert who(browser, "/portal/alpha/both") == {"agent": JANE, "consumer": ALPHA}
    # The code exchanges went to each flow's own endpoint.
    exchanges = [r.path for r in spark_platform.requests_for("grant")]
    assert exchanges == ["/openid/token", "/v1/oauth2/grant", "/v1/oauth2/grant"]


def test_signing_out_of_one_instance_leaves_the_other(
    two_instance_app: Flask, browser_for: Any, spark_platform: SparkPlatform
) -> None:
    browser: Browser = browser_for(two_instance_app)
    sign_in(browser, "/login", JANE)
    sign_in(browser, "/portal/alpha/login", ALPHA)
    sign_in(browser, "/portal/beta/login", BETA)
    out: list[dict[str, Any]] = []

    with logged_out.connected_to(lambda sender, **kw: out.append(kw), two_instance_app):
        response = browser.client.post("/portal/alpha/logout", headers=ORIGIN)
        assert response.status_code == 303
        assert who(browser, "/portal/alpha/me")["id"] is None
        assert who(browser, "/portal/beta/me")["id"] == BETA
        assert who(browser, "/me")["id"] == JANE
        assert who(browser, "/api-me") == JANE

        assert browser.client.post("/logout", headers=ORIGIN).status_code == 303
        assert who(browser, "/me")["id"] is None
        assert who(browser, "/portal/beta/api-me") == BETA
    assert out == [
        {"instance": "vow", "scope": "vow/alpha", "portal": "alpha", "account_id": ALPHA},
        {"instance": "spark", "scope": "idx", "portal": None, "account_id": JANE},
    ]
    # The consumer's grant was revoked on the OAuth 2 key, the agent's through the OpenID
    # revocation endpoint.
    revoked = [r.path for r in spark_platform.requests_for("revoke")]
    assert [path.startswith("/v1/oauth2/token/") for path in revoked[:-1]] == [True]
    assert revoked[-1] == "/openid/revoke"


def test_login_required_sends_each_portal_to_its_own_sign_in(two_instance_app: Flask) -> None:
    client = two_instance_app.test_client()
    response = client.get("/portal/beta/api-me")
    assert response.status_code == 302
    assert response.headers["Location"] == "/portal/beta/login?next=/portal/beta/api-me"
    response = client.get("/api-me")
    assert response.headers["Location"] == "/login?next=/api-me"


def test_signals_name_the_instance(
    two_instance_app: Flask, browser_for: Any, spark_platform: SparkPlatform
) -> None:
    browser: Browser = browser_for(two_instance_app)
    obtained: list[dict[str, Any]] = []
    with token_obtained.connected_to(lambda sender, **kw: obtained.append(kw), two_instance_app):
        sign_in(browser, "/portal/beta/login", BETA)
        sign_in(browser, "/login", JANE)
    assert [(kw["instance"], kw["scope"], kw["account_id"]) for kw in obtained] == [
        ("vow", "vow/beta", BETA),
        ("spark", "idx", JANE),
    ]


def test_the_grants_command_lists_and_revokes_by_instance(
    two_instance_app: Flask, browser_for: Any
) -> None:
    browser: Browser = browser_for(two_instance_app)
    sign_in(browser, "/login", JANE)
    sign_in(browser, "/portal/alpha/login", ALPHA)
    runner = two_instance_app.test_cli_runner()

    listed: Result = runner.invoke(args=["spark", "grants", "list"])
    assert listed.exit_code == 0, listed.output
    rows = [line.split()[:3] for line in listed.output.splitlines()[1:]]
    assert sorted(rows) == [["spark", JANE, "idx"], ["vow", ALPHA, "vow/alpha"]]

    only_vow = runner.invoke(args=["spark", "grants", "list", "--instance", "vow"])
    assert [line.split()[:3] for line in only_vow.output.splitlines()[1:]] == [
        ["vow", ALPHA, "vow/alpha"]
    ]
    revoked = runner.invoke(args=["spark", "grants", "revoke", ALPHA, "--instance", "vow"])
    assert revoked.exit_code == 0, revoked.output
    assert who(browser, "/portal/alpha/me")["id"] is None
    assert who(browser, "/me")["id"] == JANE
    unknown = runner.invoke(args=["spark", "grants", "list", "--instance", "nope"])
    assert unknown.exit_code != 0
    assert "No Spark instance named 'nope'" in unknown.output


def test_client_for_and_grants_are_per_instance(two_instance_app: Flask, browser_for: Any) -> None:
    browser: Browser = browser_for(two_instance_app)
    sign_in(browser, "/login", JANE)
    sign_in(browser, "/portal/alpha/login", ALPHA)
    agent = two_instance_app.extensions["spark"].extension
    vow = two_instance_app.extensions["spark.instances"]["vow"].extension
    with two_instance_app.app_context():
        assert [g.account_id for g in agent.grants.list()] == [JANE]
        assert [(g.account_id, g.scope) for g in vow.grants.list()] == [(ALPHA, "vow/alpha")]
        assert vow.client_for(ALPHA, "vow/alpha").get("/my/account")[0]["Id"] == ALPHA
        assert agent.client_for(JANE).get("/my/account")[0]["Id"] == JANE


def test_a_named_instance_reads_its_own_prefixed_keys(
    make_app: AppFactory, spark_platform: SparkPlatform
) -> None:
    app = make_app()
    with pytest.raises(ConfigurationError) as missing:
        Spark(app, name="vow")
    assert missing.value.key == "SPARK_VOW_CLIENT_ID"

    app.config.update(
        SPARK_VOW_CLIENT_ID="vow-key", SPARK_VOW_CLIENT_SECRET="vow-secret", SPARK_VOW_ROLE="vow"
    )
    with pytest.raises(ConfigurationError) as no_portal:
        Spark(app, name="vow", config_prefix="SPARK_VOW_", url_prefix="/v")
    assert no_portal.value.key == "SPARK_VOW_PORTAL"
    assert "SPARK_VOW_ROLE='vow'" in str(no_portal.value)

    app.config.update(SPARK_VOW_ROLE="vow", SPARK_VOW_PORTAL="Lakes", SPARK_VOW_TIMEOUT=3)
    vow = Spark(app, name="vow", url_prefix="/v")
    state = app.extensions["spark.instances"]["vow"]
    default = app.extensions["spark"]
    assert (state.config.client_id, state.config.portal) == ("vow-key", "lakes")
    # Where the platform is comes from SPARK_; the instance's own keys win over it.
    assert state.config.api_url == default.config.api_url == spark_platform.api_url
    assert (state.config.timeout, default.config.timeout) == (3.0, 10.0)
    # Both instances keep their grants in the one store the app has.
    assert state.tokens.store.inner is default.tokens.store.inner
    assert repr(vow) == "<Spark 'vow' url_prefix='/v'>"
    state.transport.close()


def test_instance_names_are_checked(make_app: AppFactory) -> None:
    app = make_app()
    with pytest.raises(ValueError, match="lowercase"):
        Spark(name="Vow")
    with pytest.raises(ValueError, match="lowercase"):
        Spark(name="vow:1")
    with pytest.raises(ConfigurationError, match="already set up"):
        Spark(app)


def test_app_wide_warnings_are_given_once_however_many_instances(
    make_app: AppFactory, caplog: pytest.LogCaptureFixture
) -> None:
    with pytest.warns(SparkWarning, match="SAMESITE"):  # for the default instance
        app = make_app(SESSION_COOKIE_SAMESITE="Strict")
    app.config.update(
        SPARK_VOW_CLIENT_ID="vow-key", SPARK_VOW_CLIENT_SECRET="vow-secret", SPARK_VOW_ROLE="vow"
    )
    caplog.clear()  # the default instance's line about SECRET_KEY
    with caplog.at_level(logging.WARNING, logger="flask_spark"):
        # The second instance shares the app's cookie and is sealed with the same
        # SECRET_KEY: nothing more to say (a warning would fail here, as an error).
        Spark(app, name="vow", url_prefix="/portal/<portal>", portal_loader=portal_of_url)
    assert [r.getMessage() for r in caplog.records] == []
