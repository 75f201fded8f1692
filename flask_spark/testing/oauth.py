"""The simulator's OAuth 2 state: clients, authorization codes and grants with rotation.

:class:`GrantStore` is not locked itself: :class:`~flask_spark.testing.SparkPlatform`
holds its lock around every call.
"""

from __future__ import annotations

import copy
import dataclasses
import hmac
import secrets
import string
from collections.abc import Callable
from typing import Any

from . import data

__all__ = ["INVALID_GRANT", "Client", "Grant", "GrantInfo", "GrantStore"]

_ALPHABET = string.ascii_lowercase + string.digits
_TOKEN_LENGTH = 25
INVALID_GRANT = "The access grant you supplied is invalid"
MISMATCH = "Parameter redirect_uri does not match registered URI"


@dataclasses.dataclass(frozen=True)
class Client:
    """A registered API key."""

    client_id: str
    client_secret: str
    redirect_uris: tuple[str, ...]


@dataclasses.dataclass
class Code:
    """An authorization code."""

    client_id: str
    redirect_uri: str
    user_id: str
    role: str
    portal: str | None
    issued_at: float
    used: bool = False
    #: ``"oauth2"`` or ``"openid"``: which authorization endpoint issued it.
    flow: str = "oauth2"
    nonce: str | None = None


@dataclasses.dataclass
class Grant:
    """One authorization: its current tokens and the contacts created under it."""

    client_id: str
    user_id: str
    role: str
    portal: str | None
    access_token: str
    refresh_token: str
    expires_at: float
    expired: bool = False
    contacts: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    #: ``"oauth2"`` or ``"openid"``: the flow it was granted by (its token endpoint).
    flow: str = "oauth2"


@dataclasses.dataclass(frozen=True)
class GrantInfo:
    """What the platform knows about a live grant (see :meth:`SparkPlatform.grant_for`).

    :ivar role: ``"vow"`` when authorized on ``/auth/vow/<portal>``, otherwise ``"idx"``
        (IDX and private keys share ``/oauth2``).
    :ivar portal: the VOW portal name from the authorization URL, else ``None``.
    :ivar expires_at: when the current access token expires, per the platform's clock.
    :ivar expired: whether the current access token is expired now.
    """

    client_id: str
    user_id: str
    role: str
    portal: str | None
    access_token: str
    refresh_token: str
    expires_at: float
    expired: bool


def _error(status: int, error: str, description: str) -> tuple[int, dict[str, Any]]:
    return status, {"error": error, "error_description": description}


class GrantStore:
    """Clients, codes and grants. Every value it issues is added to ``issued``."""

    def __init__(self, clients: list[Client], issued: set[str], clock: Callable[[], float]):
        self.clients = {client.client_id: client for client in clients}
        self.issued = issued
        self.clock = clock
        self.codes: dict[str, Code] = {}
        self.by_access: dict[str, Grant] = {}
        self.by_refresh: dict[str, Grant] = {}
        # Access tokens replaced by a refresh, to the grant that replaced them.
        self.superseded: dict[str, Grant] = {}
        self.contact_number = 0

    def new_secret(self) -> str:
        """25 lower-case alphanumerics, never issued before."""
        while True:
            value = "".join(secrets.choice(_ALPHABET) for _ in range(_TOKEN_LENGTH))
            if value not in self.issued:
                self.issued.add(value)
                return value

    def authenticate_client(self, client_id: str, client_secret: str) -> Client | None:
        """The client ``client_id`` if ``client_secret`` is its secret, else ``None``."""
        client = self.clients.get(client_id)
        if client is None or not hmac.compare_digest(
            client_secret.encode(), client.client_secret.encode()
        ):
            return None
        return client

    def issue_code(
        self,
        client_id: str,
        redirect_uri: str,
        user_id: str,
        role: str,
        portal: str | None,
        *,
        flow: str = "oauth2",
        nonce: str | None = None,
    ) -> str:
        """A new authorization code."""
        code = self.new_secret()
        self.codes[code] = Code(
            client_id, redirect_uri, user_id, role, portal, self.clock(), flow=flow, nonce=nonce
        )
        return code

    def new_grant(
        self,
        client_id: str,
        user_id: str,
        role: str,
        portal: str | None,
        lifetime: int,
        flow: str = "oauth2",
    ) -> dict[str, Any]:
        """A new grant; returns the token answer."""
        grant = Grant(
            client_id=client_id,
            user_id=user_id,
            role=role,
            portal=portal,
            access_token=self.new_secret(),
            refresh_token=self.new_secret(),
            expires_at=self.clock() + lifetime,
            flow=flow,
        )
        self.contact_number += 2
        grant.contacts = data.seed_contacts(user_id, self.contact_number - 1)
        self.by_access[grant.access_token] = grant
        self.by_refresh[grant.refresh_token] = grant
        return self._answer(grant, lifetime)

    @staticmethod
    def _answer(grant: Grant, lifetime: int) -> dict[str, Any]:
        return {
            "access_token": grant.access_token,
            "refresh_token": grant.refresh_token,
            "expires_in": lifetime,
        }

    def drop(self, grant: Grant) -> None:
        """Forget both current tokens of a grant (and the access tokens it replaced)."""
        for token in [t for t, g in self.superseded.items() if g is grant]:
            del self.superseded[token]
        if self.by_access.get(grant.access_token) is grant:
            del self.by_access[grant.access_token]
        if self.by_refresh.get(grant.refresh_token) is grant:
            del self.by_refresh[grant.refresh_token]

    def live(self, access_token: str) -> Grant:
        """The grant of a current access token, expired or not; ``KeyError`` otherwise."""
        grant = self.by_access.get(access_token)
        if grant is None:
            raise KeyError("not a live access token")
        return grant

    def is_expired(self, grant: Grant) -> bool:
        """Whether the grant's current access token is expired."""
        return grant.expired or self.clock() >= grant.expires_at

    def info(self, grant: Grant) -> GrantInfo:
        """A snapshot of a grant."""
        return GrantInfo(
            client_id=grant.client_id,
            user_id=grant.user_id,
            role=grant.role,
            portal=grant.portal,
            access_token=grant.access_token,
            refresh_token=grant.refresh_token,
            expires_at=grant.expires_at,
            expired=self.is_expired(grant),
        )

    def authenticate(self, access_token: str | None, superseded_code: int) -> Grant | int:
        """The grant of a live, unexpired access token, or the Spark code to refuse with:
        ``superseded_code`` for one replaced by a refresh, 1000 for one never issued or
        revoked, 1020 for an expired one."""
        grant = self.by_access.get(access_token or "")
        if grant is None:
            return superseded_code if (access_token or "") in self.superseded else 1000
        if self.is_expired(grant):
            return 1020
        return grant

    def grant_request(
        self,
        body: dict[str, Any],
        token_lifetime: int,
        code_lifetime: float,
        flow: str = "oauth2",
    ) -> tuple[int, dict[str, Any], str | None]:
        """Answer a decoded ``POST /v1/oauth2/grant`` (or, with ``flow="openid"``, a
        ``POST /openid/token``): the status, the JSON answer and the counter to add one to
        (``None`` for a request of no known grant type). A code or refresh token of the
        other flow is an ``invalid_grant``."""
        grant_type = body.get("grant_type")
        if not isinstance(grant_type, str) or not grant_type:
            return (*_error(400, "invalid_request", "Parameter grant_type is required"), None)
        if grant_type not in {"authorization_code", "refresh_token"}:
            description = f"Unsupported grant_type: {grant_type[:40]}"
            return (*_error(400, "unsupported_grant_type", description), None)
        exchange = grant_type == "authorization_code"
        status, answer = self._checked(exchange, body, token_lifetime, code_lifetime, flow)
        if status == 200:
            counter = "code_exchanges" if exchange else "refreshes"
        else:
            counter = "rejected_code_exchanges" if exchange else "rejected_refreshes"
        return status, answer, counter

    def _checked(
        self,
        exchange: bool,
        body: dict[str, Any],
        token_lifetime: int,
        code_lifetime: float,
        flow: str,
    ) -> tuple[int, dict[str, Any]]:
        for name in ("client_id", "client_secret", "redirect_uri", "code", "refresh_token"):
            if name in body and not isinstance(body[name], str):
                return _error(400, "invalid_request", f"Parameter {name} must be a string")
        client = self.authenticate_client(
            body.get("client_id") or "", str(body.get("client_secret") or "")
        )
        if client is None:
            return _error(401, "invalid_client", "Client authentication failed")
        redirect_uri = body.get("redirect_uri")
        if exchange:
            if not body.get("code"):
                return _error(400, "invalid_request", "Parameter code is required")
            if not redirect_uri:
                return _error(400, "invalid_request", "Parameter redirect_uri is required")
            code = self.codes.get(body["code"])
            if (
                code is None
                or code.used
                or code.client_id != client.client_id
                or code.redirect_uri != redirect_uri
                or code.flow != flow
                or self.clock() >= code.issued_at + code_lifetime
            ):
                return _error(400, "invalid_grant", INVALID_GRANT)
            code.used = True
            return 200, self.new_grant(
                client.client_id, code.user_id, code.role, code.portal, token_lifetime, flow
            )
        if not body.get("refresh_token"):
            return _error(400, "invalid_request", "Parameter refresh_token is required")
        grant = self.by_refresh.get(body["refresh_token"])
        if grant is None or grant.client_id != client.client_id or grant.flow != flow:
            return _error(400, "invalid_grant", INVALID_GRANT)
        if redirect_uri and redirect_uri not in client.redirect_uris:
            return _error(400, "invalid_grant", MISMATCH)
        # Rotation: the old refresh token and the old access token die here.
        del self.by_refresh[grant.refresh_token]
        self.by_access.pop(grant.access_token, None)
        self.superseded[grant.access_token] = grant
        grant.access_token = self.new_secret()
        grant.refresh_token = self.new_secret()
        grant.expires_at = self.clock() + token_lifetime
        grant.expired = False
        self.by_access[grant.access_token] = grant
        self.by_refresh[grant.refresh_token] = grant
        return 200, self._answer(grant, token_lifetime)

    # -- contacts of a grant ------------------------------------------------------------

    def new_contact(self, grant: Grant, fields: dict[str, Any]) -> dict[str, Any]:
        """Create a contact under a grant; returns a copy."""
        self.contact_number += 1
        record = data.contact_record(self.contact_number, fields)
        grant.contacts.append(record)
        return copy.deepcopy(record)

    def update_contact(self, grant: Grant, contact_id: str, fields: dict[str, Any]) -> bool:
        """Change a contact's fields; whether it exists."""
        for record in grant.contacts:
            if record["Id"] == contact_id:
                record.update(fields)
                return True
        return False

    def delete_contact(self, grant: Grant, contact_id: str) -> bool:
        """Delete a contact; whether it existed."""
        for record in grant.contacts:
            if record["Id"] == contact_id:
                grant.contacts.remove(record)
                return True
        return False
