"""Hooks that work whenever they are registered, and ``spark_login_required`` on
``async def`` views."""

from __future__ import annotations

from typing import Any

import pytest
from flask import jsonify

from flask_spark import (
    NotSignedIn,
    RateLimited,
    Spark,
    SparkError,
    spark_api,
    spark_login_required,
    spark_user,
)
from flask_spark.testing import Fault, SparkPlatform

from .conftest import AppFactory, Browser

pytestmark = pytest.mark.usefixtures("no_secret_in_logs")


def test_an_async_view_behind_login_required(make_app: AppFactory, browser_for: Any) -> None:
    app = make_app()

    @app.get("/async-account")
    @spark_login_required
    async def async_account() -> Any:
        return jsonify(name=spark_api.get("/my/account")[0]["Name"])

    browser: Browser = browser_for(app)
    anonymous = browser.client.get("/async-account")
    assert anonymous.status_code == 302
    assert "/login?next=" in anonymous.headers["Location"]

    assert browser.sign_in().status_code == 303
    signed_in = browser.client.get("/async-account")
    assert signed_in.status_code == 200
    assert signed_in.json["name"]


def test_loaders_registered_after_init_app_take_effect(
    make_app: AppFactory, browser_for: Any, spark_platform: SparkPlatform
) -> None:
    spark = Spark()
    app = make_app(spark=spark, SPARK_ROLE="vow", SPARK_PORTAL="first")

    @app.get("/<portal>/who")
    def who(portal: str) -> Any:
        return jsonify(user=str(spark_user))

    @spark.portal_loader
    def from_path() -> str | None:
        from flask import request

        return (request.view_args or {}).get("portal")

    @spark.account_loader
    def load(account: Any) -> str:
        return f"user:{account.id}"

    browser: Browser = browser_for(app)
    login = browser.start_login("/login")  # no portal in the path: SPARK_PORTAL
    assert "/auth/vow/first" in login
    callback, _ = browser.authorize(login)
    assert browser.client.get(callback).status_code == 303
    first = browser.client.get("/first/who").json
    assert first["user"] == f"user:{spark_platform.consumers('first')[0]['Id']}"
    # Another portal, chosen by the loader registered after init_app: not signed in there.
    assert browser.client.get("/second/who").json["user"] == "None"


def test_an_apps_spark_error_handler_registered_after_spark_wins(
    make_app: AppFactory, browser_for: Any, spark_platform: SparkPlatform
) -> None:
    app = make_app()

    @app.get("/account")
    def account() -> Any:
        return jsonify(spark_api.get("/my/account"))

    @app.errorhandler(SparkError)
    def mine(error: SparkError) -> Any:
        return f"mine: {type(error).__name__}", 418

    browser: Browser = browser_for(app)
    assert browser.client.get("/account").text == "mine: NotSignedIn"
    assert browser.sign_in().status_code == 303
    spark_platform.add_fault(Fault("data", "rate_limit", retry_after=60))
    page = browser.client.get("/account")
    assert (page.status_code, page.text) == (418, "mine: RateLimited")


def test_without_an_apps_handler_the_defaults_answer_and_others_stay_500(
    make_app: AppFactory, browser_for: Any, spark_platform: SparkPlatform
) -> None:
    app = make_app()

    @app.get("/missing")
    def missing() -> Any:
        return jsonify(spark_api.get("/listings/20000000000000000000000000"))

    @app.get("/busy")
    def busy() -> Any:
        raise RateLimited(429, 1550, "Over rate limit", retry_after=7)

    @app.get("/anonymous")
    def anonymous() -> Any:
        raise NotSignedIn()

    browser: Browser = browser_for(app)
    assert browser.client.get("/anonymous").status_code == 302
    assert browser.client.get("/busy").headers["Retry-After"] == "7"
    assert browser.sign_in().status_code == 303
    assert browser.client.get("/missing").status_code == 500  # a SparkAPIError: the app's


def test_an_apps_exception_handler_still_gets_the_errors_spark_leaves_alone(
    make_app: AppFactory, browser_for: Any
) -> None:
    app = make_app()

    @app.get("/missing")
    def missing() -> Any:
        return jsonify(spark_api.get("/listings/20000000000000000000000000"))

    @app.errorhandler(Exception)
    def any_error(error: Exception) -> Any:
        return f"caught {type(error).__name__}", 500

    browser: Browser = browser_for(app)
    assert browser.client.get("/missing").status_code == 302  # NotSignedIn: Spark's page
    assert browser.sign_in().status_code == 303
    assert browser.client.get("/missing").text == "caught SparkAPIError"
