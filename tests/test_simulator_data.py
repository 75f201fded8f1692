"""The simulator's data API over real HTTPS: the envelope, authentication and its error
codes, paging, listings, contacts, revocation and the control API that reaches tokens."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest

from flask_spark.testing import ACCOUNTS, LISTINGS, SimulatorServer, SparkPlatform

from .test_simulator_support import UA, FakeClock, Wire, envelope, spark_error


@pytest.fixture
def wire(spark_platform: SparkPlatform) -> Iterator[Wire]:
    wire = Wire(spark_platform)
    yield wire
    wire.close()


@pytest.fixture
def token(wire: Wire) -> str:
    access: str = wire.tokens()["access_token"]
    return access


def results(response: Any, status: int = 200) -> list[dict[str, Any]]:
    assert response.status == status, (response.status, response.data[:300])
    d = envelope(response)
    assert d["Success"] is True
    found: list[dict[str, Any]] = d["Results"]
    return found


EXPIRED = "OAuth realm='Flexmls API', error='expired_token'"


# -- envelope and account ----------------------------------------------------------------


def test_my_account_has_the_documented_fields(
    wire: Wire, token: str, spark_platform: SparkPlatform
) -> None:
    [account] = results(wire.api("GET", "/v1/my/account", token))
    assert re.fullmatch(r"\d{26}", account["Id"])
    for field in ("Name", "UserType", "Office", "OfficeId", "Mls", "MlsId"):
        assert isinstance(account[field], str)
        assert account[field]
    assert account["Emails"][0].keys() >= {"Type", "Name", "Address", "Primary"}
    assert account["Phones"][0].keys() >= {"Type", "Name", "Number", "Primary"}
    assert account["Websites"][0].keys() >= {"Type", "Name", "Uri", "Primary"}
    assert account["Addresses"][0].keys() >= {"Type", "Name", "Address", "Primary"}
    assert account["Images"][0].keys() >= {"Type", "Name", "Uri", "Primary"}
    assert account == spark_platform.user_for(token) == ACCOUNTS[0]
    assert spark_platform.stats.data_calls == 1


def test_system(wire: Wire, token: str) -> None:
    [system] = results(wire.api("GET", "/v1/system", token))
    assert system.keys() >= {"Id", "Name", "Mls", "MlsId", "Office", "OfficeId"}


def test_issue_tokens_for_a_single_session_key(wire: Wire, spark_platform: SparkPlatform) -> None:
    pair = spark_platform.issue_tokens(user=ACCOUNTS[1]["Id"])
    assert set(pair) == {"access_token", "refresh_token", "expires_in"}
    assert spark_platform.stats.authorizations == spark_platform.stats.code_exchanges == 0
    [account] = results(wire.api("GET", "/v1/my/account", pair["access_token"]))
    assert account["Id"] == ACCOUNTS[1]["Id"]
    assert wire.refresh(pair["refresh_token"]).status == 200
    with pytest.raises(KeyError):
        spark_platform.issue_tokens(user="00000000000000000000000000")


# -- authentication ----------------------------------------------------------------------


@pytest.mark.parametrize("scheme", ["OAuth", "Bearer"])
def test_both_schemes_are_accepted_and_recorded(
    wire: Wire, token: str, spark_platform: SparkPlatform, scheme: str
) -> None:
    assert wire.api("GET", "/v1/my/account", token, scheme=scheme).status == 200
    sent = spark_platform.requests_for("data")[-1]
    assert sent.auth_scheme == scheme
    assert sent.headers["x-sparkapi-user-agent"] == "Simulator tests"
    assert sent.headers["X-SparkApi-User-Agent"] == "Simulator tests"
    assert sent.status == 200


def test_recorded_headers_ignore_case(
    wire: Wire, token: str, spark_platform: SparkPlatform
) -> None:
    wire.api("GET", "/v1/my/account", token, headers={"X-Trace": "one"})
    headers = spark_platform.requests_for("data")[-1].headers
    assert headers["x-trace"] == headers["X-TRACE"] == "one"
    assert headers.get("x-sparkapi-user-agent") == "Simulator tests"
    assert headers.get("X-Missing") is None
    assert headers.get("X-Missing", "default") == "default"
    assert "authorization" in headers
    assert "X-Missing" not in headers
    # Iterating gives (name, value) pairs, names as the WSGI environ spells them.
    assert ("X-Sparkapi-User-Agent", "Simulator tests") in list(headers)
    assert ("Authorization", f"OAuth {token}") in list(headers)
    assert headers.pop("X-TRACE") == "one"
    assert "x-trace" not in headers
    assert headers.pop("x-trace", None) is None
    with pytest.raises(KeyError):
        headers.pop("X-Trace")


@pytest.mark.parametrize("value", [None, "", "   "])
def test_user_agent_header_is_required(
    wire: Wire, token: str, spark_platform: SparkPlatform, value: str | None
) -> None:
    headers = {"Authorization": f"OAuth {token}"}
    if value is not None:
        headers["X-SparkApi-User-Agent"] = value
    reply = wire.request("GET", "/v1/my/account", headers=headers)
    spark_error(reply, 400, 1016)
    assert spark_platform.requests_for("data")[-1].status == 400


@pytest.mark.parametrize(
    "authorization",
    [None, "OAuth", "OAuth nonsense", "Basic Zm9vOmJhcg==", "OAuth abcdefghijklmnopqrstuvwxy"],
)
def test_missing_or_unknown_token_is_1000(
    wire: Wire, spark_platform: SparkPlatform, authorization: str | None
) -> None:
    headers = dict(UA)
    if authorization is not None:
        headers["Authorization"] = authorization
    message = spark_error(wire.request("GET", "/v1/my/account", headers=headers), 401, 1000)
    assert message == "Invalid API key and/or request signed improperly"
    sent = spark_platform.requests_for("data")[-1]
    assert sent.auth_scheme == (authorization.split()[0] if authorization else None)


def test_expired_token_answer_is_exactly_the_documented_one(
    wire: Wire, token: str, spark_platform: SparkPlatform
) -> None:
    spark_platform.expire_all()
    reply = wire.api("GET", "/v1/my/account", token)
    assert reply.status == 401
    assert reply.headers["WWW-Authenticate"] == EXPIRED
    assert reply.json() == {
        "D": {"Success": False, "Message": "Session token has expired", "Code": 1020}
    }
    assert spark_platform.grant_for(token).expired


def test_expire_all_only_touches_tokens_issued_so_far(
    wire: Wire, token: str, spark_platform: SparkPlatform
) -> None:
    spark_platform.expire_all()
    later = wire.tokens()["access_token"]
    assert wire.api("GET", "/v1/my/account", token).status == 401
    assert wire.api("GET", "/v1/my/account", later).status == 200


def test_expire_one_token(wire: Wire, token: str, spark_platform: SparkPlatform) -> None:
    other = wire.tokens()["access_token"]
    spark_platform.expire(token)
    spark_error(wire.api("GET", "/v1/my/account", token), 401, 1020)
    assert wire.api("GET", "/v1/my/account", other).status == 200
    with pytest.raises(KeyError):
        spark_platform.expire("abcdefghijklmnopqrstuvwxy")


def test_token_replaced_by_a_refresh_reads_as_expired_by_default(
    wire: Wire, spark_platform: SparkPlatform
) -> None:
    old = wire.tokens()
    wire.refresh(old["refresh_token"])
    reply = wire.api("GET", "/v1/my/account", old["access_token"])
    spark_error(reply, 401, 1020)
    assert reply.headers["WWW-Authenticate"] == EXPIRED
    spark_platform.superseded_token_code = 1000
    spark_error(wire.api("GET", "/v1/my/account", old["access_token"]), 401, 1000)


def test_revoke_endpoint_kills_the_whole_grant(wire: Wire, spark_platform: SparkPlatform) -> None:
    tokens = wire.tokens()
    access = tokens["access_token"]
    reply = wire.api("DELETE", f"/v1/oauth2/token/{access}", access)
    assert reply.status == 200
    assert reply.json() == {"D": {"Success": True}}
    assert spark_platform.stats.revocations == 1
    assert spark_platform.requests_for("revoke")[0].status == 200
    spark_error(wire.api("GET", "/v1/my/account", access), 401, 1000)
    assert wire.refresh(tokens["refresh_token"]).status == 400
    # Twice: nothing left to revoke.
    spark_error(wire.api("DELETE", f"/v1/oauth2/token/{access}", access), 401, 1000)
    assert spark_platform.stats.revocations == 1


def test_revoking_an_expired_token_works(wire: Wire, spark_platform: SparkPlatform) -> None:
    tokens = wire.tokens()
    spark_platform.expire_all()
    access = tokens["access_token"]
    assert wire.api("DELETE", f"/v1/oauth2/token/{access}", access).status == 200
    assert wire.refresh(tokens["refresh_token"]).status == 400


def test_revoke_needs_the_user_agent(wire: Wire, token: str) -> None:
    reply = wire.request("DELETE", f"/v1/oauth2/token/{token}")
    spark_error(reply, 400, 1016)


def test_revoke_grant_control(wire: Wire, spark_platform: SparkPlatform) -> None:
    tokens = wire.tokens()
    spark_platform.revoke_grant(tokens["access_token"])
    spark_error(wire.api("GET", "/v1/my/account", tokens["access_token"]), 401, 1000)
    assert wire.refresh(tokens["refresh_token"]).status == 400
    with pytest.raises(KeyError):
        spark_platform.user_for(tokens["access_token"])


def test_revoked_grant_old_tokens_are_invalid_not_expired(
    wire: Wire, spark_platform: SparkPlatform
) -> None:
    old = wire.tokens()
    new = wire.refresh(old["refresh_token"]).json()
    spark_platform.revoke_grant(new["access_token"])
    spark_error(wire.api("GET", "/v1/my/account", old["access_token"]), 401, 1000)


# -- listings and paging ------------------------------------------------------------------


def test_listings_first_page_defaults_to_ten(wire: Wire, token: str) -> None:
    found = results(wire.api("GET", "/v1/listings", token))
    assert [item["Id"] for item in found] == [item["Id"] for item in LISTINGS[:10]]
    first = found[0]
    assert re.fullmatch(r"\d{26}", first["Id"])
    assert first["ResourceUri"] == f"/v1/listings/{first['Id']}"
    assert first["StandardFields"].keys() >= {
        "ListingKey",
        "ListingId",
        "ListPrice",
        "City",
        "StateOrProvince",
        "PostalCode",
        "BedsTotal",
        "BathsTotal",
        "ModificationTimestamp",
    }
    assert first["StandardFields"]["ListingKey"] == first["Id"]
    assert "Pagination" not in envelope(wire.api("GET", "/v1/listings", token))


def test_paging_walks_all_57_listings(wire: Wire, token: str) -> None:
    ids: list[str] = []
    for number in (1, 2, 3):
        reply = wire.api(
            "GET", "/v1/listings", token, fields={"_limit": 25, "_page": number, "_pagination": 1}
        )
        d = envelope(reply)
        assert d["Pagination"] == {
            "TotalRows": 57,
            "PageSize": 25,
            "TotalPages": 3,
            "CurrentPage": number,
        }
        ids += [item["Id"] for item in d["Results"]]
    assert len(ids) == len(set(ids)) == 57
    beyond = envelope(wire.api("GET", "/v1/listings", token, fields={"_page": 7}))
    assert beyond["Results"] == []


def test_pagination_count_returns_only_the_count(wire: Wire, token: str) -> None:
    d = envelope(wire.api("GET", "/v1/listings", token, fields={"_pagination": "count"}))
    assert d["Results"] == []
    assert d["Pagination"]["TotalRows"] == 57


@pytest.mark.parametrize(
    "params",
    [
        {"_limit": "26"},
        {"_limit": "0"},
        {"_limit": "ten"},
        {"_page": "0"},
        {"_page": "-1"},
        {"_pagination": "yes"},
        {"_limit": "\u00b2"},  # a digit to str.isdigit(), not to int()
        {"_page": "\u0663"},
    ],
)
def test_bad_paging_parameters_are_1050(wire: Wire, token: str, params: dict[str, str]) -> None:
    spark_error(wire.api("GET", "/v1/listings", token, fields=params), 400, 1050)


def test_my_listings_are_the_users_own(
    wire: Wire, token: str, spark_platform: SparkPlatform
) -> None:
    d = envelope(wire.api("GET", "/v1/my/listings", token, fields={"_pagination": 1}))
    me = spark_platform.user_for(token)["Id"]
    assert 0 < d["Pagination"]["TotalRows"] < 57
    assert all(item["StandardFields"]["ListAgentId"] == me for item in d["Results"])


def test_vow_portals_are_signed_in_to_by_their_own_consumers(
    wire: Wire, spark_platform: SparkPlatform
) -> None:
    code = wire.callback(wire.authorize("/auth/vow/myportal"))["code"][0]
    access = wire.exchange(code).json()["access_token"]
    chris, alex = spark_platform.consumers("MyPortal")  # portal names in any case
    [me] = results(wire.api("GET", "/v1/my/account", access))
    assert me == chris == spark_platform.user_for(access)
    assert me["UserType"] == "VowConsumer"
    assert me["Name"] == "Chris Buyer"
    # Consumers of another portal are other accounts, and none is an agent.
    others = {c["Id"] for c in spark_platform.consumers("otherportal")}
    agents = {a["Id"] for a in ACCOUNTS}
    assert len({chris["Id"], alex["Id"]} | others | agents) == 7
    [contact] = results(wire.api("GET", "/v1/my/contact", access))
    assert contact["DisplayName"] == "Chris Buyer"
    assert contact["PrimaryEmail"] == chris["Emails"][0]["Address"]
    [portal] = results(wire.api("GET", "/v1/portal", access))
    assert portal["Name"] == "myportal"
    assert portal["OwnerId"] in agents
    assert results(wire.api("GET", "/v1/my/listings", access)) == []
    # An agent's token has no portal nor contact record of its own.
    agent = wire.tokens()["access_token"]
    spark_error(wire.api("GET", "/v1/portal", agent), 403, 1015)
    spark_error(wire.api("GET", "/v1/my/contact", agent), 403, 1015)
    # issue_tokens takes a portal's consumer, and only one.
    pair = spark_platform.issue_tokens(alex["Id"], role="vow", portal="myportal")
    assert spark_platform.user_for(pair["access_token"])["Id"] == alex["Id"]
    with pytest.raises(KeyError):
        spark_platform.issue_tokens(ACCOUNTS[0]["Id"], role="vow", portal="myportal")


def test_one_listing_and_a_missing_one(wire: Wire, token: str) -> None:
    wanted = LISTINGS[3]["Id"]
    [found] = results(wire.api("GET", f"/v1/listings/{wanted}", token))
    assert found == LISTINGS[3]
    spark_error(wire.api("GET", "/v1/listings/00000000000000000000000000", token), 404, 404)


def test_filter_and_orderby(wire: Wire, token: str) -> None:
    query = {"_filter": "City Eq 'Fargo' And ListPrice Ge 200000", "_orderby": "-ListPrice"}
    found = results(wire.api("GET", "/v1/listings", token, fields={**query, "_limit": 25}))
    prices = [item["StandardFields"]["ListPrice"] for item in found]
    assert found
    assert prices == sorted(prices, reverse=True)
    assert all(item["StandardFields"]["City"] == "Fargo" for item in found)
    assert min(prices) >= 200000
    bad = {"_filter": "City = Fargo"}
    spark_error(wire.api("GET", "/v1/listings", token, fields=bad), 400, 1040)


# -- contacts -------------------------------------------------------------------------------


def test_create_contact_and_see_it_in_the_list(
    wire: Wire, token: str, spark_platform: SparkPlatform
) -> None:
    before = results(wire.api("GET", "/v1/contacts", token))
    reply = wire.api("POST", "/v1/contacts", token, body={"D": {"DisplayName": "Pat Doe"}})
    [created] = results(reply, 201)
    assert set(created) == {"ResourceUri"}
    assert re.fullmatch(r"/v1/contacts/\d{26}", created["ResourceUri"])
    after = results(wire.api("GET", "/v1/contacts", token))
    assert len(after) == len(before) + 1
    new = after[-1]
    assert new["ResourceUri"] == created["ResourceUri"]
    assert new["DisplayName"] == "Pat Doe"
    assert new.keys() >= {"Id", "DisplayName", "Tags"}
    sent = spark_platform.requests_for("data")[1]
    assert sent.json == {"D": {"DisplayName": "Pat Doe"}}
    assert sent.status == 201
    # Per grant: another sign-in does not see it.
    other = wire.tokens()["access_token"]
    names = [c["DisplayName"] for c in results(wire.api("GET", "/v1/contacts", other))]
    assert "Pat Doe" not in names


def test_contacts_survive_a_refresh(wire: Wire) -> None:
    tokens = wire.tokens()
    wire.api("POST", "/v1/contacts", tokens["access_token"], body={"D": {"GivenName": "Lee"}})
    fresh = wire.refresh(tokens["refresh_token"]).json()["access_token"]
    names = [c["DisplayName"] for c in results(wire.api("GET", "/v1/contacts", fresh))]
    assert "Lee" in names


@pytest.mark.parametrize(
    ("body", "content_type"),
    [
        (b'{"DisplayName": "Pat"}', "application/json"),  # not wrapped in D
        (b'{"D": "Pat"}', "application/json"),
        (b"{broken", "application/json"),
        (b'{"D": {"DisplayName": "Pat"}}', "text/plain"),
        (b"DisplayName=Pat", "application/x-www-form-urlencoded"),
    ],
)
def test_bad_write_bodies_are_1035(wire: Wire, token: str, body: bytes, content_type: str) -> None:
    reply = wire.request(
        "POST",
        "/v1/contacts",
        body=body,
        headers={**UA, "Authorization": f"OAuth {token}", "Content-Type": content_type},
    )
    spark_error(reply, 400, 1035)


def test_contact_without_a_name_fails_validation(wire: Wire, token: str) -> None:
    spark_error(wire.api("POST", "/v1/contacts", token, body={"D": {"Tags": []}}), 400, 1060)


def test_get_put_delete_one_contact(wire: Wire, token: str) -> None:
    [created] = results(
        wire.api("POST", "/v1/contacts", token, body={"D": {"DisplayName": "Pat"}}), 201
    )
    uri = created["ResourceUri"]
    reply = wire.api("PUT", uri, token, body={"D": {"PrimaryEmail": "pat@mail.example"}})
    assert reply.status == 200
    assert reply.json() == {"D": {"Success": True}}
    [record] = results(wire.api("GET", uri, token))
    assert (record["DisplayName"], record["PrimaryEmail"]) == ("Pat", "pat@mail.example")
    assert wire.api("DELETE", uri, token).json() == {"D": {"Success": True}}
    spark_error(wire.api("GET", uri, token), 404, 404)
    spark_error(wire.api("DELETE", uri, token), 404, 404)


# -- unknown paths and methods --------------------------------------------------------------


@pytest.mark.parametrize("path", ["/v1/nothing", "/v2/listings", "/favicon.ico", "/v1/my"])
def test_unknown_paths_are_404_envelopes(wire: Wire, token: str, path: str) -> None:
    spark_error(wire.api("GET", path, token), 404, 404)


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("POST", "/v1/listings"),
        ("DELETE", "/v1/my/account"),
        ("GET", "/v1/oauth2/grant"),
        ("PUT", "/v1/contacts"),
        ("GET", "/v1/oauth2/token/abc"),
    ],
)
def test_wrong_methods_are_405_envelopes(wire: Wire, token: str, method: str, path: str) -> None:
    reply = wire.api(method, path, token)
    spark_error(reply, 405, 405)
    assert reply.headers["Allow"]


# -- the optional real rate limiter ---------------------------------------------------------


def test_rate_limiter_counts_per_key_in_a_window() -> None:
    clock = FakeClock()
    platform = SparkPlatform(rate_limit=3, rate_window=300, clock=clock)
    with SimulatorServer(platform):
        wire = Wire(platform)
        token = wire.tokens()["access_token"]
        statuses = [wire.api("GET", "/v1/system", token).status for _ in range(4)]
        assert statuses == [200, 200, 200, 429]
        reply = wire.api("GET", "/v1/system", token)
        spark_error(reply, 429, 1550)
        assert reply.headers["Retry-After"] == "300"
        clock.advance(100)
        assert wire.api("GET", "/v1/system", token).headers["Retry-After"] == "200"
        platform.rate_limit_status = 503
        spark_error(wire.api("GET", "/v1/system", token), 503, 1550)
        clock.advance(200)
        assert wire.api("GET", "/v1/system", token).status == 200
        wire.close()


def test_rate_limiter_is_off_by_default(wire: Wire, token: str) -> None:
    assert {wire.api("GET", "/v1/system", token).status for _ in range(50)} == {200}
