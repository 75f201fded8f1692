"""The simulator's OpenID Connect side over real HTTPS: discovery, JWKS with key rotation,
authorization with a nonce, the form-encoded token endpoint with both kinds of client
authentication, RS256 id_tokens, userinfo, RFC 7009 revocation, and id_token faults."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlencode

import pytest
import urllib3
from joserfc import jwt
from joserfc.errors import BadSignatureError, InvalidKeyIdError
from joserfc.jwk import KeySet

from flask_spark.testing import ACCOUNTS, Fault, SparkPlatform
from flask_spark.testing.openid import at_hash

from .test_simulator_support import CALLBACK, Wire

FORM = {"Content-Type": "application/x-www-form-urlencoded"}


@pytest.fixture
def wire(spark_platform: SparkPlatform) -> Iterator[Wire]:
    wire = Wire(spark_platform)
    yield wire
    wire.close()


def discovery(wire: Wire) -> dict[str, Any]:
    reply = wire.request("GET", "/.well-known/openid-configuration")
    assert reply.status == 200
    found: dict[str, Any] = json.loads(reply.data)
    return found


def jwks(wire: Wire) -> KeySet:
    return KeySet.import_key_set(json.loads(wire.request("GET", "/openid/jwks").data))


def openid_code(wire: Wire, nonce: str | None = "n-1", user: str | None = None) -> str:
    params: dict[str, str | None] = {"scope": "openid profile email", "nonce": nonce}
    if user is None:
        return wire.code(path="/openid/authorize", **params)
    reply = wire.authorize(
        path="/openid/authorize", method="POST", decision="approve", user=user, **params
    )
    return wire.callback(reply)["code"][0]


def token(wire: Wire, basic: bool = True, **fields: str) -> urllib3.BaseHTTPResponse:
    platform = wire.platform
    headers = dict(FORM)
    if basic:
        headers.update(
            urllib3.make_headers(basic_auth=f"{platform.client_id}:{platform.client_secret}")
        )
    else:
        fields = {
            "client_id": platform.client_id,
            "client_secret": platform.client_secret,
            **fields,
        }
    return wire.request("POST", "/openid/token", body=urlencode(fields), headers=headers)


def exchange(wire: Wire, code: str, basic: bool = True) -> dict[str, Any]:
    reply = token(wire, basic, grant_type="authorization_code", code=code, redirect_uri=CALLBACK)
    assert reply.status == 200, reply.data
    answer: dict[str, Any] = json.loads(reply.data)
    return answer


def test_discovery_lists_the_endpoints_as_the_platforms_copy_does(
    wire: Wire, spark_platform: SparkPlatform
) -> None:
    found = discovery(wire)
    base = spark_platform.platform_url
    assert found["issuer"] == base
    assert found["authorization_endpoint"] == f"{base}/openid/authorize"
    assert found["token_endpoint"] == f"{base}/openid/token"
    assert found["userinfo_endpoint"] == f"{base}/openid/userinfo"
    assert found["revocation_endpoint"] == f"{base}/openid/revoke"
    assert set(found["token_endpoint_auth_methods_supported"]) == {
        "client_secret_post",
        "client_secret_basic",
    }
    assert "code_challenge_methods_supported" not in found  # no PKCE advertised
    assert "end_session_endpoint" not in found
    assert spark_platform.openid_configuration_url == f"{base}/.well-known/openid-configuration"


@pytest.mark.parametrize("basic", [True, False], ids=["client_secret_basic", "client_secret_post"])
def test_a_code_becomes_tokens_and_an_id_token_signed_by_the_jwks(
    wire: Wire, spark_platform: SparkPlatform, basic: bool
) -> None:
    answer = exchange(wire, openid_code(wire, user=ACCOUNTS[1]["Id"]), basic)

    assert answer["token_type"] == "Bearer"
    claims = jwt.decode(answer["id_token"], jwks(wire), algorithms=["RS256"]).claims
    assert claims["iss"] == spark_platform.platform_url
    assert claims["aud"] == spark_platform.client_id
    assert claims["sub"] == ACCOUNTS[1]["Id"]
    assert claims["nonce"] == "n-1"
    assert claims["at_hash"] == at_hash(answer["access_token"])
    assert claims["name"] == ACCOUNTS[1]["Name"]
    assert claims["exp"] > claims["iat"]
    assert spark_platform.stats.code_exchanges == 1
    # The access token works on the API, sent as Bearer or as OAuth.
    for scheme in ("Bearer", "OAuth"):
        reply = wire.request(
            "GET",
            "/v1/my/account",
            headers={
                "Authorization": f"{scheme} {answer['access_token']}",
                "X-SparkApi-User-Agent": "tests",
            },
        )
        assert reply.status == 200


def test_authorize_without_the_openid_scope_is_refused(wire: Wire) -> None:
    reply = wire.authorize(path="/openid/authorize", scope="profile")
    assert wire.callback(reply)["error"] == ["invalid_scope"]


def test_codes_and_refresh_tokens_stay_in_their_own_flow(wire: Wire) -> None:
    oauth2_code = wire.code()
    reply = token(wire, grant_type="authorization_code", code=oauth2_code, redirect_uri=CALLBACK)
    assert (reply.status, json.loads(reply.data)["error"]) == (400, "invalid_grant")

    answer = exchange(wire, openid_code(wire))
    refused = wire.refresh(answer["refresh_token"])
    assert refused.status == 400


def test_refresh_rotates_and_brings_a_new_id_token_without_a_nonce(
    wire: Wire, spark_platform: SparkPlatform
) -> None:
    first = exchange(wire, openid_code(wire))
    reply = token(wire, grant_type="refresh_token", refresh_token=first["refresh_token"])
    assert reply.status == 200
    second = json.loads(reply.data)
    assert second["refresh_token"] != first["refresh_token"]
    claims = jwt.decode(second["id_token"], jwks(wire), algorithms=["RS256"]).claims
    assert "nonce" not in claims
    assert claims["at_hash"] == at_hash(second["access_token"])
    again = token(wire, grant_type="refresh_token", refresh_token=first["refresh_token"])
    assert again.status == 400  # the old one died
    assert spark_platform.stats.refreshes == 1


def test_userinfo_answers_the_accounts_claims(wire: Wire) -> None:
    answer = exchange(wire, openid_code(wire))
    reply = wire.request(
        "GET", "/openid/userinfo", headers={"Authorization": f"Bearer {answer['access_token']}"}
    )
    assert reply.status == 200
    claims = json.loads(reply.data)
    assert claims["sub"] == ACCOUNTS[0]["Id"]
    assert claims["email"] == ACCOUNTS[0]["Emails"][0]["Address"]
    assert (
        wire.request("GET", "/openid/userinfo", headers={"Authorization": "Bearer x"}).status
        == 401
    )


def test_without_claims_in_the_id_token_only_userinfo_has_them(
    wire: Wire, spark_platform: SparkPlatform
) -> None:
    spark_platform.openid_claims_in_id_token = False
    answer = exchange(wire, openid_code(wire))
    claims = jwt.decode(answer["id_token"], jwks(wire), algorithms=["RS256"]).claims
    assert "name" not in claims
    assert "email" not in claims
    assert claims["sub"] == ACCOUNTS[0]["Id"]


def test_revocation_ends_the_grant_whichever_token_names_it(
    wire: Wire, spark_platform: SparkPlatform
) -> None:
    platform = spark_platform
    for name in ("refresh_token", "access_token"):
        answer = exchange(wire, openid_code(wire))
        fields = {
            "token": answer[name],
            "client_id": platform.client_id,
            "client_secret": platform.client_secret,
        }
        reply = wire.request("POST", "/openid/revoke", body=urlencode(fields), headers=FORM)
        assert reply.status == 200
        dead = token(wire, grant_type="refresh_token", refresh_token=answer["refresh_token"])
        assert dead.status == 400
    assert platform.stats.revocations == 2
    # RFC 7009: an unknown token is still a 200; a wrong secret is not.
    fields = {
        "token": "nothing",
        "client_id": platform.client_id,
        "client_secret": platform.client_secret,
    }
    assert (
        wire.request("POST", "/openid/revoke", body=urlencode(fields), headers=FORM).status == 200
    )
    fields["client_secret"] = "wrong"
    assert (
        wire.request("POST", "/openid/revoke", body=urlencode(fields), headers=FORM).status == 401
    )


def test_rotation_signs_with_a_new_key_that_the_jwks_lists(
    wire: Wire, spark_platform: SparkPlatform
) -> None:
    before = jwks(wire)
    old_kid = spark_platform.signing_kid
    new_kid = spark_platform.rotate_signing_key()
    answer = exchange(wire, openid_code(wire))

    assert (
        jwt.decode(answer["id_token"], jwks(wire), algorithms=["RS256"]).header["kid"] == new_kid
    )
    with pytest.raises(InvalidKeyIdError):
        jwt.decode(answer["id_token"], before, algorithms=["RS256"])
    assert {k.kid for k in jwks(wire).keys} == {old_kid, new_kid}
    spark_platform.rotate_signing_key(keep_old=False)
    assert len(jwks(wire).keys) == 1


def test_id_token_faults(wire: Wire, spark_platform: SparkPlatform) -> None:
    spark_platform.add_fault(
        Fault("grant", "id_token", claims={"iss": "https://elsewhere.example", "nonce": None})
    )
    claims = jwt.decode(
        exchange(wire, openid_code(wire))["id_token"], jwks(wire), algorithms=["RS256"]
    ).claims
    assert claims["iss"] == "https://elsewhere.example"
    assert "nonce" not in claims

    spark_platform.add_fault(Fault("grant", "id_token", signing="bad_signature"))
    with pytest.raises(BadSignatureError):
        jwt.decode(exchange(wire, openid_code(wire))["id_token"], jwks(wire), algorithms=["RS256"])

    spark_platform.add_fault(Fault("grant", "id_token", signing="unknown_kid"))
    with pytest.raises(InvalidKeyIdError):
        jwt.decode(exchange(wire, openid_code(wire))["id_token"], jwks(wire), algorithms=["RS256"])

    with pytest.raises(ValueError, match="token endpoint"):
        Fault("data", "id_token")
