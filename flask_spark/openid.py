"""OpenID Connect as the Spark platform offers it (``SPARK_AUTH_FLOW = "openid"``), with
no Flask in it.

- discovery at :data:`SPARK_DISCOVERY_URL` (``<platform>/.well-known/openid-configuration``),
  kept for an hour, and its JWKS, fetched again when an id_token names a key it lacks;
- ``/openid/authorize`` with ``scope``, ``state`` and a ``nonce``;
- the code exchanged, and grants refreshed, at the discovered token endpoint
  (form-encoded, with ``client_secret_basic`` or ``client_secret_post`` as advertised);
- the id_token verified with joserfc (Authlib's JOSE): its signature against the JWKS,
  ``iss``, ``aud`` (and ``azp``), ``exp``, ``iat``, ``nonce``, ``at_hash``;
- the account read from its claims, or from userinfo when it has none of them;
- revocation as RFC 7009 at the discovered ``revocation_endpoint``.
"""

from __future__ import annotations

import base64
import hashlib
import threading
import time
from typing import Any
from urllib.parse import quote, urlencode, urlsplit

from authlib.oauth2.rfc6749.parameters import prepare_grant_uri
from joserfc import jwt
from joserfc.errors import (
    BadSignatureError,
    ExpiredTokenError,
    InvalidClaimError,
    InvalidKeyIdError,
    JoseError,
    MissingClaimError,
)
from joserfc.jwk import KeySet
from joserfc.jwt import ClaimsOption

from .config import SparkConfig, scheme_problem
from .errors import IdTokenRejected, PlatformUnavailable
from .grant import ACCOUNT_ID_RE, GRANT_ANSWER_LIMIT, GrantClient
from .rate_budget import RateBudget
from .stores.base import Tokens
from .token_format import authorization, is_token
from .transport import Reply, Transport

#: Seconds the discovery document is kept before it is read again.
DISCOVERY_TTL = 3600.0
#: The largest discovery document or JWKS read.
METADATA_LIMIT = 256 * 1024
#: Signature algorithms an id_token may use (never ``none``, never a shared secret).
ALGORITHMS = ("RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512")
#: The hash of ``at_hash`` for each algorithm's size.
_AT_HASH = {"256": hashlib.sha256, "384": hashlib.sha384, "512": hashlib.sha512}
#: What each failed claim check is called on the sign-in page.
_CLAIM_REASONS = {
    "iss": "issuer",
    "aud": "audience",
    "nonce": "nonce",
    "sub": "subject",
    "exp": "expired",
    "iat": "issued_at",
    "nbf": "issued_at",
}
#: Standard claims that make an account without asking userinfo.
_PROFILE_CLAIMS = ("name", "given_name", "family_name", "email")


def _half_hash(value: str, algorithm: str) -> str:
    """``at_hash`` of ``value`` (OpenID Connect Core 3.1.3.6)."""
    digest = _AT_HASH.get(algorithm[-3:], hashlib.sha256)(value.encode("ascii")).digest()
    return base64.urlsafe_b64encode(digest[: len(digest) // 2]).rstrip(b"=").decode()


def account_from_claims(claims: dict[str, Any]) -> dict[str, Any]:
    """An account record shaped like ``/my/account`` (``Id``, ``Name``, ``Emails``,
    ``Phones``) from standard claims, the claims themselves kept under ``"OpenID"``."""
    name = claims.get("name")
    if not isinstance(name, str) or not name.strip():
        parts = [claims.get("given_name"), claims.get("family_name")]
        name = " ".join(p for p in parts if isinstance(p, str) and p.strip()) or None
    account: dict[str, Any] = {"Id": claims["sub"], "Name": name}
    email = claims.get("email")
    if isinstance(email, str) and email:
        account["Emails"] = [{"Type": "OpenID", "Address": email, "Primary": True}]
    phone = claims.get("phone_number")
    if isinstance(phone, str) and phone:
        account["Phones"] = [{"Type": "OpenID", "Number": phone, "Primary": True}]
    account["OpenID"] = {
        k: v for k, v in claims.items() if k not in {"nonce", "at_hash", "aud", "azp"}
    }
    return account


class OpenIDClient(GrantClient):
    """Talks to the platform's OpenID Connect endpoints for one app's key."""

    def __init__(
        self, config: SparkConfig, transport: Transport, budget: RateBudget | None = None
    ) -> None:
        super().__init__(config, transport, budget)
        self._lock = threading.Lock()
        self._metadata: dict[str, Any] | None = None
        self._metadata_at = 0.0
        self._keys: KeySet | None = None

    # -- discovery ---------------------------------------------------------------------

    def metadata(self) -> dict[str, Any]:
        """The discovery document (read again after :data:`DISCOVERY_TTL`).

        :raises PlatformUnavailable: it could not be read, or lacks an endpoint.
        """
        with self._lock:
            if self._metadata is not None and time.time() - self._metadata_at < DISCOVERY_TTL:
                return self._metadata
        found = self._get_json(self.config.openid_discovery_url, "discovery document")
        issuer = found.get("issuer")
        if not isinstance(issuer, str) or not issuer:
            raise PlatformUnavailable("The OpenID discovery document names no issuer")
        for name in ("authorization_endpoint", "token_endpoint", "jwks_uri"):
            self._check_endpoint(found.get(name), name)
        for name in ("userinfo_endpoint", "revocation_endpoint"):
            if found.get(name) is not None:
                self._check_endpoint(found.get(name), name)
        with self._lock:
            # The key set is read again with the document: keys the platform removed are
            # not trusted for longer than DISCOVERY_TTL, and a new jwks_uri is followed.
            self._metadata, self._metadata_at, self._keys = found, time.time(), None
        return found

    def _check_endpoint(self, value: Any, name: str) -> None:
        """An endpoint obeys the rule of every platform URL of the configuration."""
        try:
            parts = urlsplit(value) if isinstance(value, str) else None
            host = parts.hostname if parts is not None else None
        except ValueError:
            parts, host = None, None
        if (
            parts is None
            or not host
            or scheme_problem(parts.scheme, host, self.config.allow_http_loopback) is not None
        ):
            raise PlatformUnavailable(f"The OpenID discovery document's {name} is not https")

    def _get_json(self, url: str, what: str, authorization: str | None = None) -> dict[str, Any]:
        """The JSON object at ``url`` (``what`` names it in the error).

        :raises PlatformUnavailable: no 200 with a JSON object.
        """
        headers = {"Accept": "application/json"}
        if authorization is not None:
            headers["Authorization"] = authorization
        reply = self.transport.request("GET", url, headers=headers, max_bytes=METADATA_LIMIT)
        try:
            found = reply.json() if reply.status == 200 else None
        except ValueError:
            found = None
        if not isinstance(found, dict):
            raise PlatformUnavailable(f"The OpenID {what} was not readable (HTTP {reply.status})")
        return found

    def _key_set(self, *, again: bool = False) -> KeySet:
        jwks_uri = str(self.metadata()["jwks_uri"])
        with self._lock:
            if self._keys is not None and not again:
                return self._keys
        document = self._get_json(jwks_uri, "key set")
        try:
            keys = KeySet.import_key_set(document)  # type: ignore[arg-type]
        except (JoseError, ValueError, TypeError, KeyError):
            raise PlatformUnavailable("The OpenID key set was not usable") from None
        with self._lock:
            self._keys = keys
        return keys

    # -- the protocol ------------------------------------------------------------------

    def authorization_url(
        self, redirect_uri: str, state: str, portal: str | None, nonce: str | None = None
    ) -> str:
        """``/openid/authorize`` (as discovered) with the scope, ``state`` and ``nonce``.

        :raises PlatformUnavailable: the discovery document could not be read.
        """
        url: str = prepare_grant_uri(
            self.metadata()["authorization_endpoint"],
            self.config.client_id,
            "code",
            redirect_uri=redirect_uri,
            scope=self.config.openid_scope,
            state=state,
            nonce=nonce,
        )
        return url

    def sign_in(
        self, code: str, redirect_uri: str, nonce: str | None = None
    ) -> tuple[Tokens, dict[str, Any]]:
        """Exchange ``code``, verify the id_token against ``nonce`` and read the account
        from it (or from userinfo). Any failure after the exchange revokes the new tokens.

        :raises IdTokenRejected: the id_token failed a check (its ``reason`` says which).
        :raises GrantError: the platform refused the code.
        :raises PlatformUnavailable: the platform could not be reached or answered garbage.
        """
        if nonce is None:  # a sign-in started before the app switched to OpenID
            raise IdTokenRejected("nonce")
        answer = self._token_answer(self._exchange_payload(code, redirect_uri), None, True)
        tokens = answer.tokens
        try:
            claims = self.verify(answer.data.get("id_token"), nonce, tokens.access_token)
            if not any(claims.get(name) for name in _PROFILE_CLAIMS):
                claims = {**self._userinfo(tokens.access_token, claims["sub"]), **claims}
        except (IdTokenRejected, PlatformUnavailable):
            self.revoke(tokens.access_token, tokens.refresh_token)
            raise
        return tokens, account_from_claims(claims)

    def verify(self, id_token: Any, nonce: str, access_token: str) -> dict[str, Any]:
        """The claims of ``id_token``, checked; a key the JWKS lacks makes it read the
        JWKS again once (the platform rotated its keys).

        :raises IdTokenRejected: naming the check that failed.
        """
        if not isinstance(id_token, str) or not id_token or len(id_token) > GRANT_ANSWER_LIMIT:
            raise IdTokenRejected("missing")
        metadata = self.metadata()
        advertised = metadata.get("id_token_signing_alg_values_supported") or ["RS256"]
        algorithms = [a for a in ALGORITHMS if a in advertised] or ["RS256"]
        try:
            try:
                token = jwt.decode(id_token, self._key_set(), algorithms=algorithms)
            except InvalidKeyIdError:
                token = jwt.decode(id_token, self._key_set(again=True), algorithms=algorithms)
        except InvalidKeyIdError:
            raise IdTokenRejected("unknown_key") from None
        except BadSignatureError:
            raise IdTokenRejected("signature") from None
        except (JoseError, ValueError, TypeError, KeyError):
            raise IdTokenRejected("malformed") from None
        claims = dict(token.claims)
        # joserfc checks that each is there, of its type, and the times; the values are
        # compared below, exactly.
        essential: ClaimsOption = {"essential": True}
        registry = jwt.JWTClaimsRegistry(
            leeway=int(self.config.openid_leeway),
            iss=essential,
            sub=essential,
            aud=essential,
            exp=essential,
            iat=essential,
            nonce=essential,
        )
        try:
            registry.validate(claims)
        except ExpiredTokenError:
            raise IdTokenRejected("expired") from None
        except (InvalidClaimError, MissingClaimError) as exc:
            raise IdTokenRejected(_CLAIM_REASONS.get(str(exc.claim), "malformed")) from None
        except JoseError:
            raise IdTokenRejected("malformed") from None
        # Exactly, not "among" (as joserfc's value check would): a list holding the right
        # issuer or nonce is no match, and an id_token shared with other audiences is not
        # for this client alone.
        if claims["iss"] != metadata["issuer"]:
            raise IdTokenRejected("issuer")
        if claims["nonce"] != nonce:
            raise IdTokenRejected("nonce")
        audience = claims["aud"]
        if (audience if isinstance(audience, list) else [audience]) != [self.config.client_id]:
            raise IdTokenRejected("audience")
        if "azp" in claims and claims["azp"] != self.config.client_id:
            raise IdTokenRejected("audience")
        subject = claims["sub"]
        if not isinstance(subject, str) or not ACCOUNT_ID_RE.fullmatch(subject):
            raise IdTokenRejected("subject")
        expected = claims.get("at_hash")
        if expected is not None and expected != _half_hash(
            access_token, str(token.header.get("alg", "RS256"))
        ):
            raise IdTokenRejected("at_hash")
        return claims

    def _userinfo(self, access_token: str, subject: str) -> dict[str, Any]:
        """The userinfo claims of ``subject`` (OpenID Connect Core 5.3).

        :raises IdTokenRejected: they are another subject's.
        :raises PlatformUnavailable: there is no userinfo endpoint or it did not answer.
        """
        endpoint = self.metadata().get("userinfo_endpoint")
        if not isinstance(endpoint, str):
            raise PlatformUnavailable("The id_token has no claims and there is no userinfo")
        found = self._get_json(endpoint, "userinfo", authorization(access_token, "Bearer"))
        if found.get("sub") != subject:
            raise IdTokenRejected("subject")
        return found

    def _authenticated(
        self, fields: dict[str, str], endpoint: str = "token"
    ) -> tuple[dict[str, str], dict[str, str]]:
        """``fields`` and the headers of a form POST to ``endpoint`` (``"token"`` or
        ``"revocation"``) that authenticates the client as the platform advertises for
        it: ``client_secret_basic`` when listed (or nothing is), else
        ``client_secret_post``; never both.

        :raises PlatformUnavailable: the platform lists neither.
        """
        metadata = self.metadata()
        methods = (
            metadata.get(f"{endpoint}_endpoint_auth_methods_supported")
            or metadata.get("token_endpoint_auth_methods_supported")
            or ["client_secret_basic"]
        )
        headers = {
            "Accept": "application/json",
            "Content-Type": "application/x-www-form-urlencoded",
        }
        fields = {k: v for k, v in fields.items() if k not in {"client_id", "client_secret"}}
        if "client_secret_basic" in methods:
            headers["Authorization"] = _basic(self.config.client_id, self.config.client_secret)
        elif "client_secret_post" in methods:
            fields.update(client_id=self.config.client_id, client_secret=self.config.client_secret)
        else:
            raise PlatformUnavailable(
                f"The platform's {endpoint} endpoint takes no client authentication "
                "Flask-Spark speaks (client_secret_basic, client_secret_post)"
            )
        return fields, headers

    def _token_request(self, payload: dict[str, str]) -> Reply:
        """A form-encoded POST to the discovered token endpoint."""
        fields, headers = self._authenticated(payload)
        return self.transport.request(
            "POST",
            str(self.metadata()["token_endpoint"]),
            headers=headers,
            body=urlencode(fields).encode(),
            max_bytes=GRANT_ANSWER_LIMIT,
        )

    def revoke(self, access_token: str, refresh_token: str | None = None) -> bool:
        """RFC 7009 at the discovered ``revocation_endpoint``: the refresh token when
        known (which ends the grant), else the access token. Best effort."""
        if refresh_token:
            token, hint = refresh_token, "refresh_token"
        else:
            token, hint = access_token, "access_token"
        if not is_token(token):
            return False
        try:
            endpoint = self.metadata().get("revocation_endpoint")
            if not isinstance(endpoint, str):
                return False
            fields, headers = self._authenticated(
                {"token": token, "token_type_hint": hint}, "revocation"
            )
            reply = self.transport.request(
                "POST",
                endpoint,
                headers=headers,
                body=urlencode(fields).encode(),
                max_bytes=GRANT_ANSWER_LIMIT,
            )
        except PlatformUnavailable:
            return False
        return 200 <= reply.status < 300


def _basic(client_id: str, client_secret: str) -> str:
    """``client_secret_basic``: both form-urlencoded, then Base64 (RFC 6749 2.3.1)."""
    pair = f"{quote(client_id, safe='')}:{quote(client_secret, safe='')}"
    return "Basic " + base64.b64encode(pair.encode()).decode()


__all__ = ["OpenIDClient", "account_from_claims"]
