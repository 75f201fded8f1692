"""tests/test_portal.py: the quick start's portal against the simulator.

The spark_platform fixture comes with Flask-Spark (a pytest plugin): a simulated Spark
platform over real HTTPS, reset before each test.
"""

import pytest
from quickstart import create_app

from flask_spark.testing import Fault, sign_in


@pytest.fixture
def app(spark_platform, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # the quick start keeps its sessions in ./sessions
    return create_app(
        SPARK_CLIENT_ID=spark_platform.client_id,
        SPARK_CLIENT_SECRET=spark_platform.client_secret,
        SPARK_PLATFORM_URL=spark_platform.platform_url,
        SPARK_API_URL=spark_platform.api_url,
        SPARK_CA_CERTS=spark_platform.ca_file,  # trust the simulator's throwaway CA
        SPARK_GRANT_STORE="memory://",  # each test's grants in memory, not instance/
        SECRET_KEY="test",  # also the key the tokens are encrypted with at rest
    )


def test_sign_in_and_greet(app, spark_platform):
    client = app.test_client()
    assert client.get("/").status_code == 302  # not signed in yet
    assert sign_in(client, spark_platform).status_code == 303
    assert client.get("/").text == "Signed in as Jane Agent"
    assert spark_platform.stats.code_exchanges == 1


def test_an_expired_token_is_refreshed_once(app, spark_platform):
    client = app.test_client()
    sign_in(client, spark_platform)
    spark_platform.expire_all()  # the platform now answers 401, code 1020
    assert client.get("/").status_code == 200
    assert spark_platform.stats.refreshes == 1


def test_a_platform_outage_is_a_503(app, spark_platform):
    client = app.test_client()
    sign_in(client, spark_platform)
    spark_platform.add_fault(Fault("data", "status", status=500, count=None))
    page = client.get("/")
    assert page.status_code == 503
    assert page.headers["Retry-After"]


def test_a_cancelled_sign_in(app, spark_platform):
    spark_platform.force_deny = True  # the user clicks "Deny"
    client = app.test_client()
    assert sign_in(client, spark_platform).status_code == 403
    assert spark_platform.stats.grant_calls == 0


def test_no_token_reaches_the_browser(app, spark_platform):
    client = app.test_client()
    answer = sign_in(client, spark_platform)
    cookies = " ".join(answer.headers.getlist("Set-Cookie"))
    assert not any(value in cookies for value in spark_platform.issued_values())
