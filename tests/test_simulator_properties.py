"""Property tests over real HTTPS: whatever a client sends, the simulator answers in the
platform's formats, never with a 5xx, and never redirects to an unregistered URI."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import urlencode

import pytest
import urllib3
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from flask_spark.testing import SparkPlatform

from .test_simulator_support import CALLBACK, UA, Wire

pytestmark = pytest.mark.slow  # hypothesis: hundreds of examples a test

SETTINGS = settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)

text = st.text(max_size=40)
maybe = st.one_of(st.none(), text)


@SETTINGS
@given(
    response_type=st.one_of(st.none(), st.just("code"), text),
    client_id=st.one_of(st.none(), st.just("flask-spark-test"), text),
    redirect_uri=st.one_of(st.none(), st.just(CALLBACK), text),
    state=maybe,
    method=st.sampled_from(["GET", "POST"]),
    decision=st.one_of(st.none(), st.sampled_from(["approve", "deny"]), text),
    auto_approve=st.booleans(),
)
def test_authorize_never_fails_or_redirects_elsewhere(
    spark_platform: SparkPlatform,
    response_type: str | None,
    client_id: str | None,
    redirect_uri: str | None,
    state: str | None,
    method: str,
    decision: str | None,
    auto_approve: bool,
) -> None:
    spark_platform.auto_approve = auto_approve
    fields = {
        "response_type": response_type,
        "client_id": client_id,
        "redirect_uri": redirect_uri,
        "state": state,
        "decision": decision,
    }
    query = urlencode({k: v for k, v in fields.items() if v is not None})
    wire = Wire(spark_platform)
    try:
        if method == "GET":
            reply = wire.request("GET", f"/oauth2?{query}")
        else:
            reply = wire.request(
                "POST",
                "/auth/vow/portal",
                body=query,
                headers={"Content-Type": "application/x-www-form-urlencoded"},
            )
    finally:
        wire.close()
    assert reply.status in {200, 302, 400}
    if reply.status == 302:
        assert reply.headers["Location"].startswith(CALLBACK + "?")
    else:
        assert reply.headers["Content-Type"] == "text/html; charset=utf-8"


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner),
    max_leaves=8,
)


@SETTINGS
@given(
    body=st.one_of(
        json_values,
        st.fixed_dictionaries(
            {},
            optional={
                "grant_type": st.sampled_from(["authorization_code", "refresh_token"]) | text,
                "client_id": st.just("flask-spark-test") | json_values,
                "client_secret": st.just("flask-spark-secret") | json_values,
                "code": json_values,
                "refresh_token": json_values,
                "redirect_uri": st.just(CALLBACK) | json_values,
            },
        ),
    ),
    content_type=st.sampled_from(["application/json", "text/plain", "application/json; x=1"]),
)
def test_grant_always_answers_oauth_json(
    spark_platform: SparkPlatform, body: Any, content_type: str
) -> None:
    wire = Wire(spark_platform)
    try:
        reply = wire.grant(json.dumps(body).encode(), content_type)
    finally:
        wire.close()
    assert reply.status in {400, 401}
    assert reply.headers["Content-Type"] == "application/json"
    answer = reply.json()
    assert set(answer) == {"error", "error_description"}
    assert answer["error"] in {
        "invalid_request",
        "invalid_client",
        "invalid_grant",
        "unsupported_grant_type",
    }


@SETTINGS
@given(
    path=st.sampled_from(
        ["/v1/listings", "/v1/my/listings", "/v1/contacts", "/v1/my/account", "/v1/nope"]
    ),
    params=st.dictionaries(
        st.sampled_from(["_limit", "_page", "_pagination", "_filter", "_orderby", "_expand"]),
        text,
    ),
)
def test_data_calls_always_answer_an_envelope(
    spark_platform: SparkPlatform, path: str, params: dict[str, str]
) -> None:
    wire = Wire(spark_platform)
    try:
        token = spark_platform.issue_tokens()["access_token"]
        reply: urllib3.BaseHTTPResponse = wire.request(
            "GET", path, fields=params, headers={**UA, "Authorization": f"OAuth {token}"}
        )
    finally:
        wire.close()
    assert reply.status in {200, 400, 404}
    assert reply.headers["Content-Type"] == "application/json"
    d = reply.json()["D"]
    assert d["Success"] is (reply.status == 200)
    if reply.status != 200:
        assert isinstance(d["Code"], int)
        assert d["Message"]
