"""Personal access tokens: ``SPARK_ACCESS_TOKEN`` alone is an app-wide token, sent as
``Bearer``, never refreshed, and replaced by hand when the platform refuses it."""

from __future__ import annotations

from typing import Any

import pytest

from flask_spark import ReauthenticationRequired, spark_api
from flask_spark.testing import SparkPlatform

from .conftest import AppFactory

pytestmark = pytest.mark.usefixtures("no_secret_in_logs")


def test_a_personal_token_calls_with_bearer_and_needs_no_redirect_uri(
    make_app: AppFactory, spark_platform: SparkPlatform
) -> None:
    token = spark_platform.issue_tokens()["access_token"]
    app = make_app(SPARK_ACCESS_TOKEN=token)  # no SPARK_REFRESH_TOKEN, no redirect URI
    with app.app_context():
        assert spark_api.get("/my/account")[0]["Id"] == spark_platform.accounts[0]["Id"]
        assert spark_api.available is True
        assert spark_api.authenticated is False  # no browser user
    [call] = spark_platform.requests_for("data")
    assert call.headers["Authorization"] == f"Bearer {token}"
    with app.app_context():
        assert list(app.extensions["spark"].extension.grants.list()) == []  # never stored


@pytest.mark.parametrize("refusal", ["expired", "revoked"])
def test_a_refused_personal_token_is_never_refreshed(
    make_app: AppFactory, spark_platform: SparkPlatform, refusal: str
) -> None:
    token = spark_platform.issue_tokens()["access_token"]
    app = make_app(SPARK_ACCESS_TOKEN=token)
    if refusal == "expired":
        spark_platform.expire(token)  # answered 401 with code 1020
    else:
        spark_platform.revoke_grant(token)  # answered 401 with code 1000
    with app.app_context(), pytest.raises(ReauthenticationRequired) as info:
        spark_api.get("/my/account")
    assert "replace SPARK_ACCESS_TOKEN" in str(info.value)
    assert token not in str(info.value)
    assert spark_platform.stats.grant_calls == 0
    assert len(spark_platform.requests_for("data")) == 1  # no retry either


def test_the_token_scheme_setting_reaches_every_call_of_a_sign_in(
    make_app: AppFactory, browser_for: Any, spark_platform: SparkPlatform
) -> None:
    app = make_app(SPARK_TOKEN_SCHEME="Bearer")
    browser = browser_for(app)
    assert browser.sign_in().status_code == 303  # its /my/account read
    with app.app_context():
        token = next(iter(app.extensions["spark"].extension.grants.list()))
    assert token
    assert {r.auth_scheme for r in spark_platform.requests_for("data")} == {"Bearer"}
