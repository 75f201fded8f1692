"""Whose grant it is: ``spark_account`` and ``spark_user`` without an API call, several
browsers of one agent sharing a grant, ``client_for`` in jobs, and the operators'
``spark.grants`` and ``flask spark grants``."""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from typing import Any

import pytest
from flask import Flask, jsonify

from flask_spark import (
    NotSignedIn,
    Spark,
    spark_account,
    spark_api,
    spark_login_required,
    spark_user,
)
from flask_spark.testing import ACCOUNTS, SparkPlatform

from .conftest import AppFactory, Browser, grant_of
from .redis_server import free_port

pytestmark = pytest.mark.usefixtures("no_secret_in_logs")

JANE, SAM = ACCOUNTS[0], ACCOUNTS[1]


def add_views(app: Flask) -> None:
    @app.get("/who")
    def who() -> Any:
        if not spark_account:
            return jsonify(None)
        return jsonify(
            id=spark_account.id,
            scope=spark_account.scope,
            name=spark_account.name,
            email=spark_account.email,
            user_type=spark_account.user_type,
            office_id=spark_account.office_id,
            mls_id=spark_account.mls_id,
            raw_name=spark_account.raw["Name"],
        )

    @app.get("/account")
    @spark_login_required
    def account() -> Any:
        return jsonify(spark_api.get("/my/account"))

    @app.get("/user")
    def user() -> Any:
        return jsonify(dict(spark_user) if spark_user else None)


@pytest.fixture
def spark() -> Spark:
    return Spark()


@pytest.fixture
def app(make_app: AppFactory, spark: Spark) -> Flask:
    app = make_app(spark=spark)
    add_views(app)
    return app


def test_spark_account_comes_from_the_grant_without_an_api_call(
    app: Flask, browser_for: Any, spark_platform: SparkPlatform
) -> None:
    browser: Browser = browser_for(app)
    assert browser.client.get("/who").json is None
    assert browser.sign_in(user=SAM["Id"]).status_code == 303
    calls = spark_platform.stats.data_calls
    for _ in range(3):
        answer = browser.client.get("/who").json
    assert answer == {
        "id": SAM["Id"],
        "scope": "idx",
        "name": "Sam Seller",
        "email": SAM["Emails"][0]["Address"],
        "user_type": "Member",
        "office_id": SAM["OfficeId"],
        "mls_id": SAM["MlsId"],
        "raw_name": "Sam Seller",
    }
    assert spark_platform.stats.data_calls == calls  # no API call per request


def test_an_account_loader_registered_after_init_app_serves_spark_user(
    app: Flask, spark: Spark, browser_for: Any
) -> None:
    users = {JANE["Id"]: {"user": "jane", "admin": True}}

    @spark.account_loader
    def load(account: Any) -> Any:
        return users.get(account.id)

    browser: Browser = browser_for(app)
    assert browser.client.get("/user").json is None
    browser.sign_in()
    assert browser.client.get("/user").json == {"user": "jane", "admin": True}


def test_browsers_of_one_agent_share_a_grant_and_a_new_sign_in_revokes_the_old_tokens(
    app: Flask, browser_for: Any, spark_platform: SparkPlatform
) -> None:
    laptop: Browser = browser_for(app)
    phone: Browser = browser_for(app)
    laptop.sign_in()
    first = grant_of(app, laptop.client)
    phone.sign_in()
    second = grant_of(app, phone.client)
    assert first.key == second.key
    assert first.access_token != second.access_token
    assert spark_platform.stats.revocations == 1  # the replaced tokens, at the platform
    assert grant_of(app, laptop.client).access_token == second.access_token
    assert laptop.client.get("/account").status_code == 200
    spark_platform.expire_all()
    assert laptop.client.get("/account").status_code == 200
    assert phone.client.get("/account").status_code == 200
    assert spark_platform.stats.refreshes == 1  # one grant, one refresh


@pytest.mark.parametrize(("ends_grant", "phone_after"), [(True, 302), (False, 200)])
def test_sign_out_ends_the_grant_for_every_browser_unless_told_otherwise(
    make_app: AppFactory,
    browser_for: Any,
    spark_platform: SparkPlatform,
    ends_grant: bool,
    phone_after: int,
) -> None:
    app = make_app(SPARK_LOGOUT_ENDS_GRANT=ends_grant)
    add_views(app)
    laptop: Browser = browser_for(app)
    phone: Browser = browser_for(app)
    laptop.sign_in()
    phone.sign_in()
    revoked = spark_platform.stats.revocations
    laptop.client.post("/logout", headers={"Origin": "http://localhost"})
    assert laptop.client.get("/account").status_code == 302
    assert phone.client.get("/account").status_code == phone_after
    assert spark_platform.stats.revocations == revoked + ends_grant


def test_client_for_acts_for_an_agent_outside_a_request(
    app: Flask, spark: Spark, browser_for: Any, spark_platform: SparkPlatform
) -> None:
    browser: Browser = browser_for(app)
    browser.sign_in(user=SAM["Id"])
    spark_platform.expire_all()
    with app.app_context():
        client = spark.client_for(SAM["Id"])
        assert client.get("/my/account")[0]["Name"] == "Sam Seller"
        assert spark_platform.stats.refreshes == 1
        with pytest.raises(NotSignedIn):
            spark.client_for(JANE["Id"]).get("/my/account")
    # The browser uses the tokens the job refreshed: no second refresh.
    assert browser.client.get("/account").status_code == 200
    assert spark_platform.stats.refreshes == 1


def test_client_for_needs_a_scope_on_a_vow_app_without_a_portal(
    make_app: AppFactory, spark_platform: SparkPlatform
) -> None:
    spark = Spark(portal_loader=lambda: "alpha")
    app = make_app(spark=spark, SPARK_ROLE="vow")
    with app.app_context(), pytest.raises(ValueError, match="vow/<portal>"):
        spark.client_for(JANE["Id"])
    with app.app_context():
        assert spark.client_for(JANE["Id"], scope="vow/alpha").available is False


def test_grants_are_listed_and_revoked(
    app: Flask, spark: Spark, browser_for: Any, spark_platform: SparkPlatform
) -> None:
    jane: Browser = browser_for(app)
    sam: Browser = browser_for(app)
    jane.sign_in()
    sam.sign_in(user=SAM["Id"])
    with app.app_context():
        listed = spark.grants.list()
        assert sorted(info.account_id for info in listed) == sorted([JANE["Id"], SAM["Id"]])
        assert {info.name for info in listed} == {"Jane Agent", "Sam Seller"}
        assert not any(v in repr(listed) for v in spark_platform.issued_values())
        assert spark.grants.revoke(SAM["Id"]) == 1
        assert spark.grants.revoke(SAM["Id"]) == 0
        assert [info.account_id for info in spark.grants.list()] == [JANE["Id"]]
    assert sam.client.get("/account").status_code == 302
    assert jane.client.get("/account").status_code == 200
    assert spark_platform.stats.revocations == 1


def test_flask_spark_grants_commands(
    app: Flask, browser_for: Any, spark_platform: SparkPlatform
) -> None:
    browser: Browser = browser_for(app)
    browser.sign_in()
    runner = app.test_cli_runner()
    listed = runner.invoke(args=["spark", "grants", "list"])
    assert listed.exit_code == 0
    assert JANE["Id"] in listed.output
    assert "Jane Agent" in listed.output
    assert not any(v in listed.output for v in spark_platform.issued_values())
    revoked = runner.invoke(args=["spark", "grants", "revoke", JANE["Id"]])
    assert revoked.exit_code == 0
    assert f"Revoked 1 grant of account {JANE['Id']}." in revoked.output
    assert browser.client.get("/account").status_code == 302
    again = runner.invoke(args=["spark", "grants", "revoke", JANE["Id"]])
    assert again.exit_code == 1
    assert "No grant of account" in again.output
    assert runner.invoke(args=["spark", "grants", "list"]).output.strip() == "No grants."


def test_a_flask_sqlalchemy_session_keeps_grants_in_its_database(
    spark_platform: SparkPlatform, browser_for: Any, tmp_path: Any
) -> None:
    import sqlalchemy as sa
    from flask_session import Session
    from flask_sqlalchemy import SQLAlchemy

    app = Flask("portal", instance_path=str(tmp_path / "instance"))
    app.config.update(
        SECRET_KEY="k",
        SQLALCHEMY_DATABASE_URI=f"sqlite:///{tmp_path / 'app.sqlite3'}",
        SESSION_TYPE="sqlalchemy",
        SPARK_CLIENT_ID=spark_platform.client_id,
        SPARK_CLIENT_SECRET=spark_platform.client_secret,
        SPARK_PLATFORM_URL=spark_platform.platform_url,
        SPARK_API_URL=spark_platform.api_url,
        SPARK_CA_CERTS=spark_platform.ca_file,
    )
    db = SQLAlchemy(app)
    app.config["SESSION_SQLALCHEMY"] = db
    Session(app)
    with app.app_context():
        db.create_all()
    Spark(app)
    add_views(app)
    browser: Browser = browser_for(app)
    assert browser.sign_in().status_code == 303
    assert browser.client.get("/account").status_code == 200
    with app.app_context():
        tables = set(sa.inspect(db.engine).get_table_names())
    assert {"sessions", "spark_grants", "spark_bindings"} <= tables
    assert not (tmp_path / "instance" / "spark-grants.sqlite3").exists()
    app.extensions["spark"].transport.close()


@pytest.fixture
def memcached(tmp_path: Any) -> Iterator[int]:
    """A private memcached on a free loopback port."""
    binary = shutil.which("memcached")
    if binary is None:
        raise RuntimeError("memcached is not installed; see .ci/run")
    port = free_port()
    process = subprocess.Popen(
        [binary, "-l", "127.0.0.1", "-p", str(port), "-U", "0", "-u", "nobody"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        for _ in range(500):
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.1).close()
                break
            except OSError:
                process.poll()
                assert process.returncode is None, "memcached exited"
                time.sleep(0.01)
        yield port
    finally:
        process.terminate()
        process.wait(10)


@pytest.mark.slow
def test_memcached_sessions_are_accepted_with_the_default_grant_store(
    spark_platform: SparkPlatform, browser_for: Any, tmp_path: Any, memcached: int
) -> None:
    from flask_session import Session
    from pymemcache.client.base import Client

    client = Client(("127.0.0.1", memcached))
    app = Flask("portal", instance_path=str(tmp_path / "instance"))
    app.config.update(
        SECRET_KEY="k",
        SESSION_TYPE="memcached",
        SESSION_MEMCACHED=client,
        SPARK_CLIENT_ID=spark_platform.client_id,
        SPARK_CLIENT_SECRET=spark_platform.client_secret,
        SPARK_PLATFORM_URL=spark_platform.platform_url,
        SPARK_API_URL=spark_platform.api_url,
        SPARK_CA_CERTS=spark_platform.ca_file,
    )
    Session(app)
    Spark(app)
    add_views(app)
    browser: Browser = browser_for(app)
    assert browser.sign_in().status_code == 303
    assert browser.client.get("/account").status_code == 200
    assert (tmp_path / "instance" / "spark-grants.sqlite3").exists()
    browser.client.post("/logout", headers={"Origin": "http://localhost"})
    assert browser.client.get("/account").status_code == 302
    app.extensions["spark"].transport.close()
    app.extensions["spark"].tokens.store.close()
    client.close()
