"""Injected faults over real HTTPS: each kind on each route, FIFO order, counts, latency,
and that reset forgets them."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator

import pytest
import urllib3

from flask_spark.testing import Fault, SparkPlatform

from .test_simulator_support import UA, Wire, envelope, spark_error


@pytest.fixture
def wire(spark_platform: SparkPlatform) -> Iterator[Wire]:
    wire = Wire(spark_platform)
    yield wire
    wire.close()


@pytest.fixture
def token(wire: Wire) -> str:
    access: str = wire.tokens()["access_token"]
    return access


def account(wire: Wire, token: str) -> urllib3.BaseHTTPResponse:
    return wire.api("GET", "/v1/my/account", token)


# -- kinds on the data route ---------------------------------------------------------------


def test_status_fault_answers_a_spark_envelope(
    wire: Wire, token: str, spark_platform: SparkPlatform
) -> None:
    spark_platform.add_fault(Fault("data", "status", status=503))
    spark_error(account(wire, token), 503, 1023)
    assert account(wire, token).status == 200  # count=1: consumed
    assert [r.status for r in spark_platform.requests_for("data")] == [503, 200]
    assert spark_platform.stats.data_calls == 2


def test_status_fault_with_a_chosen_code(
    wire: Wire, token: str, spark_platform: SparkPlatform
) -> None:
    spark_platform.fail_next("data", 403, code=1500)
    spark_error(account(wire, token), 403, 1500)


@pytest.mark.parametrize("status", [429, 503])
def test_rate_limit_fault(
    wire: Wire, token: str, spark_platform: SparkPlatform, status: int
) -> None:
    spark_platform.add_fault(Fault("data", "rate_limit", status=status, retry_after=7))
    reply = account(wire, token)
    spark_error(reply, status, 1550)
    assert reply.headers["Retry-After"] == "7"


def test_rate_limit_defaults_to_429(wire: Wire, token: str, spark_platform: SparkPlatform) -> None:
    spark_platform.rate_limit_next("data", retry_after=2)
    reply = account(wire, token)
    spark_error(reply, 429, 1550)
    assert reply.headers["Retry-After"] == "2"


def test_malformed_fault(wire: Wire, token: str, spark_platform: SparkPlatform) -> None:
    spark_platform.add_fault(Fault("data", "malformed"))
    reply = account(wire, token)
    assert reply.status == 200
    assert reply.headers["Content-Type"] == "application/json"
    with pytest.raises(ValueError, match=r"."):
        json.loads(reply.data)


def test_html_fault(wire: Wire, token: str, spark_platform: SparkPlatform) -> None:
    spark_platform.add_fault(Fault("data", "html"))
    reply = account(wire, token)
    assert reply.status == 200
    assert reply.headers["Content-Type"].startswith("text/html")
    assert reply.data.lstrip().lower().startswith(b"<!doctype html>")


def test_custom_body(wire: Wire, token: str, spark_platform: SparkPlatform) -> None:
    spark_platform.add_fault(Fault("data", "status", status=502, body="<h1>Bad gateway</h1>"))
    reply = account(wire, token)
    assert (reply.status, reply.data) == (502, b"<h1>Bad gateway</h1>")


@pytest.mark.slow
def test_delay_fault_makes_a_client_time_out(token: str, spark_platform: SparkPlatform) -> None:
    spark_platform.add_fault(Fault("data", "delay", delay=0.6))
    impatient = Wire(spark_platform, timeout=0.2)
    with pytest.raises(urllib3.exceptions.ReadTimeoutError):
        impatient.api("GET", "/v1/my/account", token)
    impatient.close()
    assert spark_platform.in_flight == 1
    assert spark_platform.wait_idle(5)
    # The delayed request was then handled normally, and the fault is spent.
    patient = Wire(spark_platform)
    started = time.monotonic()
    assert patient.api("GET", "/v1/my/account", token).status == 200
    assert time.monotonic() - started < 0.5
    patient.close()
    assert [r.status for r in spark_platform.requests_for("data")] == [200, 200]


def test_drop_fault_closes_the_connection(
    wire: Wire, token: str, spark_platform: SparkPlatform
) -> None:
    spark_platform.add_fault(Fault("data", "drop"))
    with pytest.raises(urllib3.exceptions.ProtocolError):
        account(wire, token)
    assert account(wire, token).status == 200
    assert [r.status for r in spark_platform.requests_for("data")] == [0, 200]


def test_drop_and_trickle_apply_to_a_query_sent_with_the_method_override(
    wire: Wire, token: str, spark_platform: SparkPlatform
) -> None:
    def overridden() -> urllib3.BaseHTTPResponse:
        headers = {
            **UA,
            "Authorization": f"OAuth {token}",
            "X-HTTP-Method-Override": "GET",
            "Content-Type": "application/x-www-form-urlencoded",
        }
        return wire.request("POST", "/v1/listings", body="_limit=2", headers=headers)

    normal = overridden()
    assert normal.status == 200
    spark_platform.add_fault(Fault("data", "drop"))
    with pytest.raises(urllib3.exceptions.ProtocolError):
        overridden()
    spark_platform.add_fault(Fault("data", "trickle", chunk=64))
    trickled = overridden()
    assert trickled.headers["Connection"] == "close"  # as every trickled answer
    assert trickled.json() == normal.json()
    assert [r.status for r in spark_platform.requests_for("data")] == [200, 0, 200]


@pytest.mark.slow
def test_latency_is_added_to_every_request(
    wire: Wire, token: str, spark_platform: SparkPlatform
) -> None:
    spark_platform.latency = 0.3
    started = time.monotonic()
    assert account(wire, token).status == 200
    assert wire.code()
    assert time.monotonic() - started >= 0.6
    spark_platform.reset()
    assert spark_platform.latency == 0.0


# -- the grant route -----------------------------------------------------------------------


def test_grant_status_fault_is_an_oauth_server_error(
    wire: Wire, spark_platform: SparkPlatform
) -> None:
    code = wire.code()
    spark_platform.add_fault(Fault("grant", "status", status=500))
    reply = wire.exchange(code)
    assert reply.status == 500
    assert reply.json()["error"] == "server_error"
    assert spark_platform.stats.grant_calls == 1
    assert spark_platform.stats.code_exchanges == spark_platform.stats.rejected_code_exchanges == 0
    # The code was never seen by the grant logic: it still works.
    assert wire.exchange(code).status == 200


def test_grant_missing_fields_fault(wire: Wire, spark_platform: SparkPlatform) -> None:
    spark_platform.add_fault(Fault("grant", "missing_fields"))
    reply = wire.exchange(wire.code())
    assert reply.status == 200
    assert reply.headers["Content-Type"] == "application/json"
    assert "access_token" not in reply.json()


@pytest.mark.parametrize("kind", ["malformed", "html", "rate_limit"])
def test_grant_garbage_faults(wire: Wire, spark_platform: SparkPlatform, kind: str) -> None:
    tokens = wire.tokens()
    spark_platform.add_fault(Fault("grant", kind))
    reply = wire.refresh(tokens["refresh_token"])
    if kind == "rate_limit":
        spark_error(reply, 429, 1550)
    else:
        assert reply.status == 200
        with pytest.raises(ValueError, match=r"."):
            reply.json()
    assert spark_platform.stats.refreshes == 0
    assert wire.refresh(tokens["refresh_token"]).status == 200  # not rotated by the fault


# -- the authorize and revoke routes -------------------------------------------------------


def test_authorize_status_fault_is_an_html_page(wire: Wire, spark_platform: SparkPlatform) -> None:
    spark_platform.add_fault(Fault("authorize", "status", status=500))
    reply = wire.authorize()
    assert reply.status == 500
    assert reply.headers["Content-Type"].startswith("text/html")
    assert "Location" not in reply.headers
    assert spark_platform.stats.authorizations == 0


def test_revoke_fault(wire: Wire, token: str, spark_platform: SparkPlatform) -> None:
    spark_platform.add_fault(Fault("revoke", "status", status=503))
    path = f"/v1/oauth2/token/{token}"
    spark_error(wire.api("DELETE", path, token), 503, 1023)
    assert spark_platform.stats.revocations == 0
    assert account(wire, token).status == 200  # not revoked, and a data call is unaffected
    assert wire.api("DELETE", path, token).status == 200


# -- order, counts, routes -----------------------------------------------------------------


def test_faults_apply_in_fifo_order_per_route(
    wire: Wire, token: str, spark_platform: SparkPlatform
) -> None:
    spark_platform.add_fault(Fault("data", "rate_limit", status=429, retry_after=0))
    spark_platform.add_fault(Fault("grant", "status", status=500))
    spark_platform.add_fault(Fault("data", "status", status=503, count=2))
    assert [account(wire, token).status for _ in range(4)] == [429, 503, 503, 200]
    assert wire.exchange(wire.code()).status == 500


def test_count_none_lasts_until_reset(
    wire: Wire, token: str, spark_platform: SparkPlatform
) -> None:
    spark_platform.add_fault(Fault("data", "status", status=500, count=None))
    assert {account(wire, token).status for _ in range(5)} == {500}
    spark_platform.reset()
    token = wire.tokens()["access_token"]
    assert account(wire, token).status == 200
    assert spark_platform.stats.data_calls == 1


def test_any_route(wire: Wire, token: str, spark_platform: SparkPlatform) -> None:
    spark_platform.add_fault(Fault("any", "status", status=502, count=3))
    assert wire.authorize().status == 502
    assert wire.exchange("x").status == 502
    assert envelope(account(wire, token))["Code"] == 502
    assert account(wire, token).status == 200


def test_a_fault_instance_is_reusable(
    wire: Wire, token: str, spark_platform: SparkPlatform
) -> None:
    fault = Fault("data", "status", status=500, count=2)
    spark_platform.add_fault(fault)
    spark_platform.add_fault(fault)
    assert [account(wire, token).status for _ in range(5)] == [500, 500, 500, 500, 200]
    assert fault.count == 2


def test_clear_faults(wire: Wire, token: str, spark_platform: SparkPlatform) -> None:
    spark_platform.add_fault(Fault("data", "status", count=None))
    spark_platform.clear_faults()
    assert account(wire, token).status == 200


@pytest.mark.parametrize(
    "kwargs",
    [
        {"route": "nowhere", "kind": "status"},
        {"route": "data", "kind": "explode"},
        {"route": "data", "kind": "missing_fields"},
        {"route": "data", "kind": "status", "count": 0},
        {"route": "data", "kind": "status", "status": 42},
        {"route": "data", "kind": "delay", "delay": -1},
    ],
)
def test_invalid_faults_are_refused(kwargs: dict[str, object]) -> None:
    with pytest.raises(ValueError, match=r"."):
        Fault(**kwargs)  # type: ignore[arg-type]


def test_a_request_in_flight_across_a_reset_leaves_no_trace_after_it(
    wire: Wire, token: str, spark_platform: SparkPlatform
) -> None:
    """A request a test gave up on, still being answered when the next test resets the
    platform, is neither recorded nor counted there, nor takes that test's faults."""
    spark_platform.latency = 0.3  # read as the request starts; reset() sets it back
    answers: list[int] = []
    stray = threading.Thread(target=lambda: answers.append(account(wire, token).status))
    stray.start()
    deadline = time.monotonic() + 10
    while spark_platform.in_flight == 0 and time.monotonic() < deadline:
        time.sleep(0.001)
    assert spark_platform.in_flight == 1

    spark_platform.reset()  # the next test begins
    spark_platform.add_fault(Fault("data", "status", status=503))
    stray.join()

    assert len(answers) == 1
    assert answers[0] != 503  # the fault waits for the new test's request
    assert spark_platform.wait_idle()
    assert spark_platform.requests == []
    assert spark_platform.stats.data_calls == 0
    assert wire.request("GET", "/v1/my/account", headers=UA).status == 503
    assert [r.status for r in spark_platform.requests] == [503]
