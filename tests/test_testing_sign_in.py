"""``flask_spark.testing.sign_in``, the helper users' own tests sign in with: approved by
the platform itself or on its consent page as a chosen account, denied, and the errors
it gives when the app or the platform does not answer as a sign-in goes."""

from __future__ import annotations

from typing import Any

import pytest
from flask import Flask

from flask_spark import spark_account
from flask_spark.testing import ACCOUNTS, SparkPlatform, sign_in

from .conftest import AppFactory


@pytest.fixture
def app(make_app: AppFactory) -> Flask:
    app = make_app()

    @app.get("/who")
    def who() -> Any:
        return spark_account.id if spark_account else "nobody"

    return app


def test_sign_in_goes_to_next_and_leaves_the_client_signed_in(
    app: Flask, spark_platform: SparkPlatform
) -> None:
    client = app.test_client()
    answer = sign_in(client, spark_platform, next="/who")
    assert answer.status_code == 303
    assert answer.headers["Location"] == "/who"
    assert client.get("/who").text == ACCOUNTS[0]["Id"]
    assert spark_platform.stats.code_exchanges == 1


def test_sign_in_as_another_account_on_the_consent_page(
    app: Flask, spark_platform: SparkPlatform
) -> None:
    spark_platform.auto_approve = False
    client = app.test_client()
    assert sign_in(client, spark_platform, user=ACCOUNTS[1]["Id"]).status_code == 303
    assert client.get("/who").text == ACCOUNTS[1]["Id"]


def test_a_denied_sign_in_answers_the_cancelled_page(
    app: Flask, spark_platform: SparkPlatform
) -> None:
    client = app.test_client()
    answer = sign_in(client, spark_platform, approve=False)
    assert answer.status_code == 403
    assert "Sign-in cancelled" in answer.text
    assert client.get("/who").text == "nobody"
    assert spark_platform.stats.grant_calls == 0


def test_an_app_that_does_not_redirect_to_the_platform(
    app: Flask, spark_platform: SparkPlatform
) -> None:
    with pytest.raises(AssertionError, match="GET /nowhere answered 404, not a redirect"):
        sign_in(app.test_client(), spark_platform, login="/nowhere")


def test_a_platform_that_refuses_the_redirect_uri(
    make_app: AppFactory, spark_platform: SparkPlatform
) -> None:
    app = make_app(SPARK_REDIRECT_URI="http://localhost/unregistered")
    client = app.test_client()
    with pytest.raises(AssertionError, match=r"the platform answered 400 \(.+\), not a redirect"):
        sign_in(client, spark_platform)
    assert spark_platform.stats.authorizations == 0
