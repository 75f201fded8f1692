"""The simulator's OpenID Connect side: its signing keys (which rotate), the discovery
document, and the id_tokens it issues (RS256, signed with joserfc, Authlib's JOSE).

:class:`OpenIDProvider` is not locked itself: :class:`~flask_spark.testing.SparkPlatform`
holds its lock around every call.
"""

from __future__ import annotations

import base64
import hashlib
import secrets
from collections.abc import Callable, Mapping
from typing import Any

from joserfc import jwt
from joserfc.jwk import KeySet, RSAKey

__all__ = ["ID_TOKEN_SIGNING", "OpenIDProvider", "at_hash"]

#: How a faulty id_token may be signed (see :class:`~flask_spark.testing.Fault`).
ID_TOKEN_SIGNING = frozenset({"valid", "bad_signature", "unknown_kid"})
#: Seconds an id_token is valid.
ID_TOKEN_LIFETIME = 600
#: The scopes the platform's discovery document lists.
SCOPES = ("openid", "profile", "email", "address", "phone", "RESO", "FBS")


def at_hash(access_token: str) -> str:
    """The ``at_hash`` of ``access_token`` for RS256: the left half of its SHA-256,
    base64url without padding (OpenID Connect Core 3.1.3.6)."""
    digest = hashlib.sha256(access_token.encode("ascii")).digest()
    return base64.urlsafe_b64encode(digest[: len(digest) // 2]).rstrip(b"=").decode()


def _new_key() -> RSAKey:
    kid = secrets.token_hex(8)
    return RSAKey.generate_key(
        2048, parameters={"kid": kid, "use": "sig", "alg": "RS256"}, auto_kid=False
    )


def profile_claims(account: Mapping[str, Any]) -> dict[str, Any]:
    """The standard claims of a Spark account (``profile``, ``email``, ``phone``)."""
    claims: dict[str, Any] = {"name": account.get("Name")}
    first, last = account.get("FirstName"), account.get("LastName")
    if first:
        claims["given_name"] = first
    if last:
        claims["family_name"] = last
    emails = [e for e in account.get("Emails") or [] if isinstance(e, dict)]
    primary = next((e for e in emails if e.get("Primary")), emails[0] if emails else None)
    if primary and primary.get("Address"):
        claims["email"] = primary["Address"]
        claims["email_verified"] = True
    phones = [p for p in account.get("Phones") or [] if isinstance(p, dict)]
    phone = next((p for p in phones if p.get("Primary")), phones[0] if phones else None)
    if phone and phone.get("Number"):
        claims["phone_number"] = phone["Number"]
    return {k: v for k, v in claims.items() if v is not None}


class OpenIDProvider:
    """Signing keys, discovery and id_tokens of one simulated platform.

    :param clock: the platform's clock.
    """

    def __init__(self, clock: Callable[[], float]) -> None:
        self.clock = clock
        self._keys: list[RSAKey] = [_new_key()]

    @property
    def signing_kid(self) -> str:
        """The ``kid`` of the key new id_tokens are signed with."""
        return str(self._keys[-1].kid)

    def rotate(self, *, keep_old: bool = True) -> str:
        """Sign with a new key from now on; the JWKS lists it, and the old keys too
        unless ``keep_old`` is false. Returns the new ``kid``."""
        key = _new_key()
        self._keys = [*self._keys, key] if keep_old else [key]
        return str(key.kid)

    def jwks(self) -> dict[str, Any]:
        """The public keys, as ``jwks_uri`` serves them."""
        return dict(KeySet(list(self._keys)).as_dict(private=False))

    @staticmethod
    def discovery(platform_url: str, auth_methods: tuple[str, ...]) -> dict[str, Any]:
        """The discovery document (``/.well-known/openid-configuration``), as the
        platform's published copy lists it: no PKCE, no end-session endpoint."""
        return {
            "issuer": platform_url,
            "authorization_endpoint": f"{platform_url}/openid/authorize",
            "token_endpoint": f"{platform_url}/openid/token",
            "userinfo_endpoint": f"{platform_url}/openid/userinfo",
            "revocation_endpoint": f"{platform_url}/openid/revoke",
            "jwks_uri": f"{platform_url}/openid/jwks",
            "response_types_supported": ["code"],
            "grant_types_supported": ["authorization_code", "refresh_token"],
            "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": ["RS256"],
            "scopes_supported": list(SCOPES),
            "token_endpoint_auth_methods_supported": list(auth_methods),
            "claims_supported": [
                "sub",
                "iss",
                "aud",
                "exp",
                "iat",
                "nonce",
                "at_hash",
                "name",
                "given_name",
                "family_name",
                "email",
                "email_verified",
                "phone_number",
            ],
        }

    def id_token(
        self,
        *,
        issuer: str,
        client_id: str,
        subject: str,
        access_token: str,
        nonce: str | None,
        profile: Mapping[str, Any] | None,
        changes: Mapping[str, Any] | None = None,
        signing: str = "valid",
    ) -> str:
        """A signed id_token. ``profile`` claims go in when given; ``changes`` overrides
        claims (``None`` values remove them), and ``signing`` signs it wrongly on purpose
        (:data:`ID_TOKEN_SIGNING`)."""
        now = int(self.clock())
        claims: dict[str, Any] = {
            "iss": issuer,
            "sub": subject,
            "aud": client_id,
            "iat": now,
            "auth_time": now,
            "exp": now + ID_TOKEN_LIFETIME,
            "at_hash": at_hash(access_token),
        }
        if nonce is not None:
            claims["nonce"] = nonce
        claims.update(profile or {})
        for name, value in (changes or {}).items():
            if value is None:
                claims.pop(name, None)
            else:
                claims[name] = value
        key, kid = self._keys[-1], self.signing_kid
        if signing == "bad_signature":
            key = _new_key()  # the right kid, the wrong key
        elif signing == "unknown_kid":
            key = _new_key()
            kid = str(key.kid)
        return jwt.encode({"alg": "RS256", "kid": kid, "typ": "JWT"}, claims, key)
