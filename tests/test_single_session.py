"""Single-session keys: an app-wide token pair from config, seeded once into the store."""

from __future__ import annotations

from typing import Any

import pytest

from flask_spark import ReauthenticationRequired, spark_api
from flask_spark.testing import SparkPlatform

from .conftest import AppFactory, app_with_pair

pytestmark = pytest.mark.usefixtures("no_secret_in_logs")


@pytest.mark.parametrize("session_type", ["redis", "cachelib"])
def test_works_in_an_app_context_without_login(
    make_app: AppFactory, spark_platform: SparkPlatform, session_type: str
) -> None:
    pair = spark_platform.issue_tokens()
    app = app_with_pair(make_app, pair, session_type=session_type)
    with app.app_context():
        account = spark_api.get("/my/account")
        assert account[0]["Name"]
        assert spark_api.authenticated is False  # no browser user
        assert spark_api.available is True
    sent = spark_platform.requests_for("data")[-1]
    assert sent.headers["Authorization"] == f"OAuth {pair['access_token']}"


def test_refresh_rotates_and_the_stored_pair_wins_after_a_restart(
    make_app: AppFactory, spark_platform: SparkPlatform
) -> None:
    pair = spark_platform.issue_tokens()
    app = app_with_pair(make_app, pair)
    with app.app_context():
        spark_platform.expire_all()
        spark_api.get("/my/account")
    assert spark_platform.stats.refreshes == 1
    refresh = spark_platform.requests_for("grant")[-1]
    assert refresh.json is not None
    assert refresh.json["refresh_token"] == pair["refresh_token"]
    assert refresh.json["redirect_uri"] == "http://localhost/callback"

    restarted = app_with_pair(make_app, pair)  # same config, fresh process state
    with restarted.app_context():
        spark_api.get("/my/account")
    last = spark_platform.requests_for("data")[-1]
    assert last.status == 200
    assert last.headers["Authorization"] != f"OAuth {pair['access_token']}"
    assert spark_platform.stats.rejected_refreshes == 0


def test_a_new_pair_in_config_replaces_the_stored_one(
    make_app: AppFactory, spark_platform: SparkPlatform
) -> None:
    old = spark_platform.issue_tokens()
    with app_with_pair(make_app, old).app_context():
        spark_platform.expire_all()
        spark_api.get("/my/account")
    new = spark_platform.issue_tokens()
    with app_with_pair(make_app, new).app_context():
        spark_api.get("/my/account")
    assert spark_platform.requests_for("data")[-1].headers["Authorization"] == (
        f"OAuth {new['access_token']}"
    )


def test_a_refused_pair_stays_refused_until_replaced(
    make_app: AppFactory, spark_platform: SparkPlatform
) -> None:
    pair = spark_platform.issue_tokens()
    app = app_with_pair(make_app, pair)
    spark_platform.revoke_refresh_token(pair["refresh_token"])
    spark_platform.expire_all()
    with app.app_context(), pytest.raises(ReauthenticationRequired):
        spark_api.get("/my/account")
    with app.app_context(), pytest.raises(ReauthenticationRequired):
        spark_api.get("/my/account")
    assert spark_platform.stats.rejected_refreshes == 1  # not tried again


def test_a_signed_in_user_takes_precedence(
    make_app: AppFactory, spark_platform: SparkPlatform, browser_for: Any
) -> None:
    pair = spark_platform.issue_tokens()
    app = app_with_pair(make_app, pair)

    @app.get("/who")
    def who() -> Any:
        spark_api.get("/my/account")
        return {"user": spark_api.authenticated}

    browser = browser_for(app)
    assert browser.client.get("/who").json == {"user": False}
    assert spark_platform.requests_for("data")[-1].headers["Authorization"] == (
        f"OAuth {pair['access_token']}"
    )
    browser.sign_in()
    assert browser.client.get("/who").json == {"user": True}
    assert spark_platform.requests_for("data")[-1].headers["Authorization"] != (
        f"OAuth {pair['access_token']}"
    )


def test_a_refused_pair_does_not_break_anonymous_pages(
    make_app: AppFactory, spark_platform: SparkPlatform
) -> None:
    pair = spark_platform.issue_tokens()
    app = app_with_pair(make_app, pair)

    @app.get("/public")
    def public() -> Any:
        return {"signed_in": spark_api.authenticated, "api": spark_api.available}

    spark_platform.revoke_refresh_token(pair["refresh_token"])
    spark_platform.expire_all()
    with app.app_context(), pytest.raises(ReauthenticationRequired):
        spark_api.get("/my/account")
    response = app.test_client().get("/public")
    assert response.status_code == 200
    assert response.json == {"signed_in": False, "api": False}


def test_a_revoked_app_grant_is_a_typed_error(
    make_app: AppFactory, spark_platform: SparkPlatform
) -> None:
    pair = spark_platform.issue_tokens()
    app = app_with_pair(make_app, pair)
    spark_platform.revoke_grant(pair["access_token"])
    with app.app_context(), pytest.raises(ReauthenticationRequired, match="no longer accepts"):
        spark_api.get("/my/account")
