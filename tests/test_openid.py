"""OpenID Connect sign-in (``SPARK_AUTH_FLOW = "openid"``) over HTTPS against the
simulator: the whole flow with the account from the id_token, every id_token check as a
failed sign-in that stores nothing, JWKS rotation, userinfo, refresh and revocation
through the OpenID endpoints, and single flight at expiry."""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from flask import Flask, jsonify

from flask_spark import spark_account, spark_api
from flask_spark.testing import ACCOUNTS, Fault, SparkPlatform

from .conftest import AppFactory, Browser, same_session_burst

pytestmark = pytest.mark.usefixtures("no_secret_in_logs")


@pytest.fixture
def app(make_app: AppFactory) -> Flask:
    app = make_app(SPARK_AUTH_FLOW="openid", SPARK_RETRIES=0)

    @app.get("/me")
    def me() -> Any:
        account = spark_account
        return jsonify(
            id=account.id if account else None,
            name=account.name if account else None,
            email=account.email if account else None,
        )

    @app.get("/api-account")
    def api_account() -> Any:
        return jsonify(spark_api.get("/my/account")[0]["Id"])

    return app


@pytest.fixture
def browser(app: Flask, browser_for: Any) -> Browser:
    browser: Browser = browser_for(app)
    return browser


def stored_grants(app: Flask) -> list[Any]:
    with app.app_context():
        return list(app.extensions["spark"].extension.grants.list())


def test_the_whole_sign_in_takes_the_account_from_the_id_token(
    app: Flask, browser: Browser, spark_platform: SparkPlatform
) -> None:
    login = browser.start_login()
    parts = urlsplit(login)
    query = {k: v[0] for k, v in parse_qs(parts.query).items()}
    assert parts.path == "/openid/authorize"
    assert query["scope"] == "openid profile email"
    assert len(query["nonce"]) >= 32
    assert query["nonce"] != query["state"]

    callback, _ = browser.authorize(login, user=ACCOUNTS[1]["Id"])
    assert browser.client.get(callback).status_code == 303

    me = browser.client.get("/me").json
    assert me == {
        "id": ACCOUNTS[1]["Id"],
        "name": ACCOUNTS[1]["Name"],
        "email": ACCOUNTS[1]["Emails"][0]["Address"],
    }
    assert spark_platform.stats.data_calls == 0  # no /my/account call at sign-in
    [exchange] = spark_platform.requests_for("grant")
    assert exchange.path == "/openid/token"
    assert exchange.auth_scheme == "Basic"  # client_secret_basic, listed first
    assert b"client_secret" not in exchange.body

    assert browser.client.get("/api-account").json == ACCOUNTS[1]["Id"]
    [call] = spark_platform.requests_for("data")
    assert call.auth_scheme == "OAuth"  # SPARK_TOKEN_SCHEME's default


def test_client_secret_post_when_that_is_all_the_platform_lists(
    app: Flask, browser: Browser, spark_platform: SparkPlatform
) -> None:
    spark_platform.openid_auth_methods = ["client_secret_post"]
    assert browser.sign_in().status_code == 303
    [exchange] = spark_platform.requests_for("grant")
    assert exchange.auth_scheme is None
    assert b"client_secret=" in exchange.body


ID_TOKEN_FAULTS = [
    (Fault("grant", "id_token", claims={"iss": "https://elsewhere.example"}), "issuer"),
    (Fault("grant", "id_token", claims={"aud": "another-client"}), "audience"),
    (Fault("grant", "id_token", claims={"nonce": "another-sign-in"}), "nonce"),
    (Fault("grant", "id_token", claims={"nonce": None}), "nonce"),
    (Fault("grant", "id_token", claims={"exp": 1_000_000_000}), "expired"),
    (Fault("grant", "id_token", claims={"iat": 4_000_000_000}), "issued_at"),
    (Fault("grant", "id_token", claims={"at_hash": "AAAAAAAAAAAAAAAAAAAAAA"}), "at_hash"),
    (Fault("grant", "id_token", claims={"sub": "no spaces allowed"}), "subject"),
    (Fault("grant", "id_token", signing="bad_signature"), "signature"),
    (Fault("grant", "id_token", signing="unknown_kid"), "unknown_key"),
    (Fault("grant", "tamper", tamper=lambda a: {**a, "id_token": "not.a.jwt"}), "malformed"),
    (
        Fault("grant", "tamper", tamper=lambda a: {k: v for k, v in a.items() if k != "id_token"}),
        "missing",
    ),
]


@pytest.mark.parametrize(
    ("fault", "check"), ID_TOKEN_FAULTS, ids=[check for _, check in ID_TOKEN_FAULTS]
)
def test_each_failed_id_token_check_is_a_failed_sign_in_that_stores_nothing(
    app: Flask, browser: Browser, spark_platform: SparkPlatform, fault: Fault, check: str
) -> None:
    callback, _ = browser.authorize(browser.start_login("/login?next=/listings"))
    spark_platform.add_fault(fault)
    page = browser.client.get(callback)

    assert page.status_code == 502
    assert "Sign-in could not be verified" in page.text
    assert f"The check that failed: {check}" in page.text
    assert "/login?next=%2Flistings" in page.text or "/login?next=/listings" in page.text
    assert stored_grants(app) == []
    assert spark_platform.stats.revocations == 1  # the new tokens were given back
    assert browser.client.get("/me").json["id"] is None


def test_a_rotated_key_set_is_followed_without_a_restart(
    app: Flask, browser_for: Any, spark_platform: SparkPlatform
) -> None:
    first: Browser = browser_for(app)
    assert first.sign_in().status_code == 303  # the JWKS is read and kept
    jwks_reads = len([r for r in spark_platform.requests if r.path == "/openid/jwks"])
    spark_platform.rotate_signing_key(keep_old=False)

    second: Browser = browser_for(app)
    assert second.sign_in().status_code == 303
    assert len([r for r in spark_platform.requests if r.path == "/openid/jwks"]) == jwks_reads + 1
    assert second.client.get("/me").json["id"] == ACCOUNTS[0]["Id"]


def test_userinfo_supplies_the_claims_an_id_token_lacks(
    app: Flask, browser: Browser, spark_platform: SparkPlatform
) -> None:
    spark_platform.openid_claims_in_id_token = False
    assert browser.sign_in().status_code == 303
    assert browser.client.get("/me").json["name"] == ACCOUNTS[0]["Name"]
    [userinfo] = spark_platform.requests_for("userinfo")
    assert userinfo.auth_scheme == "Bearer"


def test_refresh_and_sign_out_go_through_the_openid_endpoints(
    app: Flask, browser: Browser, spark_platform: SparkPlatform
) -> None:
    assert browser.sign_in().status_code == 303
    spark_platform.expire_all()
    assert browser.client.get("/api-account").status_code == 200
    assert spark_platform.stats.refreshes == 1
    assert [r.path for r in spark_platform.requests_for("grant")] == ["/openid/token"] * 2

    out = browser.client.post("/logout", headers={"Sec-Fetch-Site": "same-origin"})
    assert out.status_code in (302, 303)
    [revoke] = spark_platform.requests_for("revoke")
    assert revoke.path == "/openid/revoke"
    assert revoke.query == {}
    assert b"token_type_hint=refresh_token" in revoke.body
    assert spark_platform.stats.revocations == 1
    assert stored_grants(app) == []


@pytest.mark.slow
def test_a_burst_at_expiry_refreshes_once(
    app: Flask, browser: Browser, spark_platform: SparkPlatform
) -> None:
    assert browser.sign_in().status_code == 303
    cookie = browser.client.get_cookie("session")
    assert cookie is not None
    for _ in range(3):
        before = spark_platform.stats.refreshes
        spark_platform.expire_all()
        spark_platform.add_fault(Fault("grant", "delay", delay=0.1))
        assert same_session_burst(app, cookie.value, 16, "/api-account") == [200] * 16
        assert spark_platform.stats.refreshes - before == 1
    assert spark_platform.stats.rejected_refreshes == 0


def test_discovery_down_at_login_is_a_clear_page_and_files_nothing(
    make_app: AppFactory, browser_for: Any, spark_platform: SparkPlatform
) -> None:
    app = make_app(SPARK_AUTH_FLOW="openid", SPARK_TIMEOUT=2)
    spark_platform.add_fault(Fault("discovery", "status", status=503))
    page = app.test_client().get("/login")
    assert page.status_code == 502
    assert "could not be reached" in page.text
    assert spark_platform.stats.authorizations == 0


def test_an_issuer_nonce_or_audience_among_others_is_no_match(
    app: Flask, browser_for: Any, spark_platform: SparkPlatform
) -> None:
    issuer, client = spark_platform.platform_url, spark_platform.client_id
    cases = [
        ({"iss": [issuer, "https://elsewhere.example"]}, "issuer"),
        ({"aud": [client, "another-client"], "azp": client}, "audience"),
        ({"azp": "another-client"}, "audience"),
    ]
    for claims, check in cases:
        browser: Browser = browser_for(app)
        callback, _ = browser.authorize(browser.start_login())
        spark_platform.add_fault(Fault("grant", "id_token", claims=claims))
        page = browser.client.get(callback)
        assert page.status_code == 502
        assert f"The check that failed: {check}" in page.text
    assert stored_grants(app) == []
