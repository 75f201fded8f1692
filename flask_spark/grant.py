"""The OAuth 2 protocol as the Spark platform speaks it, with no Flask in it.

- the authorization URL per role (``<platform>/oauth2`` or ``<platform>/auth/vow/<portal>``);
- the code exchange and the refresh, both a **JSON** POST to ``<api>/v1/oauth2/grant``;
- the account a fresh grant belongs to, ``GET <api>/v1/my/account``;
- revocation, ``DELETE <api>/v1/oauth2/token/<access_token>``.
"""

from __future__ import annotations

import json
import math
import re
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

from authlib.oauth2.rfc6749.parameters import prepare_grant_uri

from .config import SparkConfig
from .errors import PlatformUnavailable, SparkError
from .rate_budget import RateBudget
from .stores.base import Tokens
from .text import printable
from .token_format import authorization, is_token
from .transport import Reply, Transport

#: The platform's documented access-token lifetime, assumed when ``expires_in`` is unusable.
PLATFORM_TOKEN_LIFETIME = 86400
#: The shortest lifetime an access token is taken to have, whatever ``expires_in`` says:
#: with the refresh leeway, a grant is refreshed ahead of time at most every 30 seconds
#: (a token the platform really expired sooner is still refreshed on its code 1020).
MIN_TOKEN_LIFETIME = 60.0
#: Seconds taken off ``expires_in`` for the time the answer spent in flight.
EXPIRY_MARGIN = 5.0
#: The largest answer read from the grant and revocation endpoints (tokens are small).
GRANT_ANSWER_LIMIT = 64 * 1024
#: The largest ``/my/account`` answer read at sign-in.
ACCOUNT_ANSWER_LIMIT = 1024 * 1024
#: What an account ``Id`` (or an OpenID ``sub``) may look like.
ACCOUNT_ID_RE = re.compile(r"[A-Za-z0-9_.-]{1,128}")


class GrantError(SparkError):
    """The grant endpoint (``/v1/oauth2/grant``) refused a code or a refresh token.

    Internal: the views answer it with the sign-in failed page, and a refresh with
    :class:`~flask_spark.errors.ReauthenticationRequired` or
    :class:`~flask_spark.errors.PlatformUnavailable`; it never reaches an app.

    :param status: HTTP status of the answer.
    :param error: the OAuth ``error`` value, such as ``invalid_grant``.
    :param description: the platform's ``error_description``.
    """

    def __init__(self, status: int, error: str, description: str) -> None:
        self.status = status
        self.error = error
        self.description = description
        super().__init__(f"Grant refused ({error}, HTTP {status}): {description}")

    @property
    def ends_grant(self) -> bool:
        """Whether this answer means the tokens are dead for good."""
        return self.error in {"invalid_grant", "invalid_client"}


def authorization_url(
    config: SparkConfig, redirect_uri: str, state: str, portal: str | None
) -> str:
    """The URL that starts a sign-in for the configured role.

    :param portal: the lowercased VOW portal name (VOW role only).
    """
    if config.role == "vow":
        if not portal:
            raise ValueError("a VOW sign-in needs a portal name")
        endpoint = f"{config.platform_url}/auth/vow/{quote(portal, safe='')}"
    else:
        endpoint = f"{config.platform_url}/oauth2"
    url: str = prepare_grant_uri(
        endpoint, config.client_id, "code", redirect_uri=redirect_uri, state=state
    )
    return url


@dataclass(frozen=True)
class TokenAnswer:
    """The token endpoint's answer: the tokens read from it, and the whole JSON object."""

    tokens: Tokens
    data: dict[str, Any] = field(repr=False)


class GrantClient:
    """Talks to the grant and revocation endpoints for one app's key (the OAuth 2 flow;
    :class:`~flask_spark.openid.OpenIDClient` is its OpenID Connect kin)."""

    def __init__(
        self, config: SparkConfig, transport: Transport, budget: RateBudget | None = None
    ) -> None:
        self.config = config
        self.transport = transport
        self.budget = budget
        self._headers = {
            "Content-Type": "application/json",
            "Accept": "application/json",
            "X-SparkApi-User-Agent": config.user_agent,
        }

    def authorization_url(
        self, redirect_uri: str, state: str, portal: str | None, nonce: str | None = None
    ) -> str:
        """The URL that starts a sign-in (``nonce`` is for OpenID Connect only)."""
        return authorization_url(self.config, redirect_uri, state, portal)

    def sign_in(
        self, code: str, redirect_uri: str, nonce: str | None = None
    ) -> tuple[Tokens, dict[str, Any]]:
        """Exchange ``code`` and read whose grant it is (``/my/account``); new tokens
        whose account cannot be read are revoked.

        :raises RateLimited: the rate budget has no room; the code was not sent.
        :raises GrantError: the platform refused the code.
        :raises PlatformUnavailable: the platform could not be reached or answered garbage.
        """
        tokens = self.exchange_code(code, redirect_uri)
        try:
            return tokens, self.account(tokens.access_token)
        except PlatformUnavailable:
            self.revoke(tokens.access_token, tokens.refresh_token)
            raise

    def exchange_code(self, code: str, redirect_uri: str) -> Tokens:
        """Trade an authorization code for tokens. Never retried: a code is single-use.

        First it counts, in the shared rate budget, the ``/my/account`` call that follows
        every exchange (:meth:`account`), so that a sign-in never starts without room for
        it.

        :raises RateLimited: the rate budget has no room; the code was not sent.
        :raises GrantError: the platform refused the code.
        :raises PlatformUnavailable: timeout, 5xx, or an answer that is not a token.
        """
        if self.budget is not None:
            self.budget.spend()
        return self._token_answer(self._exchange_payload(code, redirect_uri), None, True).tokens

    def _exchange_payload(self, code: str, redirect_uri: str) -> dict[str, str]:
        return {
            "client_id": self.config.client_id,
            "client_secret": self.config.client_secret,
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": redirect_uri,
        }

    def refresh(self, refresh_token: str, redirect_uri: str) -> Tokens:
        """Trade a refresh token for a new pair; the old refresh token is dead afterwards.

        :raises GrantError: the platform refused the refresh token.
        :raises PlatformUnavailable: timeout, 5xx, or an answer that is not a token.
        """
        payload = {
            "client_id": self.config.client_id,
            "client_secret": self.config.client_secret,
            "grant_type": "refresh_token",
            "refresh_token": refresh_token,
            "redirect_uri": redirect_uri,
        }
        return self._token_answer(payload, refresh_token, False).tokens

    def account(self, access_token: str) -> dict[str, Any]:
        """The ``/my/account`` record of the grant behind ``access_token``: whose it is.
        (Counted in the rate budget by :meth:`exchange_code`.)

        :raises PlatformUnavailable: the API did not answer with an account that has an
            ``Id``.
        """
        headers = {
            "Accept": "application/json",
            "X-SparkApi-User-Agent": self.config.user_agent,
            "Authorization": authorization(access_token, self.config.token_scheme),
        }
        reply = self.transport.request(
            "GET",
            f"{self.config.api_url}/v1/my/account",
            headers=headers,
            max_bytes=ACCOUNT_ANSWER_LIMIT,
        )
        try:
            data = reply.json()
        except ValueError:
            data = None
        envelope = data.get("D") if isinstance(data, dict) else None
        results = envelope.get("Results") if isinstance(envelope, dict) else None
        if reply.status != 200 or not isinstance(results, list) or not results:
            raise PlatformUnavailable(
                f"The account of the new grant was not readable (HTTP {reply.status})"
            )
        account: dict[str, Any] = results[0] if isinstance(results[0], dict) else {}
        account_id = account.get("Id")
        if not isinstance(account_id, str) or not ACCOUNT_ID_RE.fullmatch(account_id):
            raise PlatformUnavailable("The account of the new grant has no usable Id")
        return account

    def revoke(self, access_token: str, refresh_token: str | None = None) -> bool:
        """Revoke the whole grant at the platform (``DELETE`` of its access token; the
        refresh token is not needed). Best effort: returns whether it worked."""
        if not is_token(access_token):
            return False
        url = f"{self.config.api_url}/v1/oauth2/token/{quote(access_token, safe='')}"
        headers = dict(self._headers)
        headers["Authorization"] = authorization(access_token, self.config.token_scheme)
        try:
            reply = self.transport.request(
                "DELETE", url, headers=headers, max_bytes=GRANT_ANSWER_LIMIT
            )
        except PlatformUnavailable:
            return False
        return 200 <= reply.status < 300

    def _token_request(self, payload: dict[str, str]) -> Reply:
        """The request to the token endpoint: JSON to ``<api>/v1/oauth2/grant``."""
        return self.transport.request(
            "POST",
            self.config.grant_url,
            headers=self._headers,
            body=json.dumps(payload).encode(),
            max_bytes=GRANT_ANSWER_LIMIT,
        )

    def _token_answer(
        self,
        payload: dict[str, str],
        previous_refresh_token: str | None,
        revoke_unusable: bool,
    ) -> TokenAnswer:
        """Send ``payload`` to the token endpoint and read the tokens it answers.

        :param previous_refresh_token: a refresh's, kept when the answer has none.
        :param revoke_unusable: when the answer holds a usable access token but is
            otherwise unusable, revoke it (a code exchange: nothing would hold that grant).
        """
        reply = self._token_request(payload)
        try:
            data = reply.json()
        except ValueError:
            data = None
        if reply.status > 299:
            if isinstance(data, dict) and isinstance(data.get("error"), str):
                if reply.status >= 500 and data["error"] not in {
                    "invalid_grant",
                    "invalid_client",
                }:
                    raise PlatformUnavailable(
                        f"The grant endpoint answered HTTP {reply.status}",
                        retry_after=reply.retry_after(),
                    )
                raise GrantError(
                    reply.status,
                    printable(data["error"], 64),
                    printable(data.get("error_description")),
                )
            raise PlatformUnavailable(
                f"The grant endpoint answered HTTP {reply.status}", retry_after=reply.retry_after()
            )
        if not isinstance(data, dict):
            raise PlatformUnavailable("The grant endpoint's answer was not JSON")
        access = data.get("access_token")
        if access is None or access == "":
            raise PlatformUnavailable("The grant endpoint's answer had no access_token")
        if not is_token(access):
            raise PlatformUnavailable("The grant endpoint answered a malformed access_token")
        refresh = data.get("refresh_token")
        if refresh is None or refresh == "":
            if previous_refresh_token is None:
                if revoke_unusable:
                    self.revoke(access)
                raise PlatformUnavailable("The grant endpoint's answer had no refresh_token")
            refresh = previous_refresh_token
        elif not is_token(refresh):
            if revoke_unusable:
                self.revoke(access)
            raise PlatformUnavailable("The grant endpoint answered a malformed refresh_token")
        now = time.time()
        lifetime = _lifetime(data.get("expires_in"))
        tokens = Tokens(
            access_token=access,
            refresh_token=refresh,
            expires_at=now + lifetime - min(EXPIRY_MARGIN, lifetime / 10),
            obtained_at=now,
        )
        return TokenAnswer(tokens, data)


def _lifetime(value: Any) -> float:
    """``expires_in`` as seconds, at least :data:`MIN_TOKEN_LIFETIME`; the platform's 24 h
    when missing or garbled."""
    if isinstance(value, str):
        try:
            value = float(value)
        except ValueError:
            return PLATFORM_TOKEN_LIFETIME
    if isinstance(value, bool) or not isinstance(value, int | float):
        return PLATFORM_TOKEN_LIFETIME
    if not math.isfinite(value) or value <= 0:
        return PLATFORM_TOKEN_LIFETIME
    return float(min(max(value, MIN_TOKEN_LIFETIME), 10 * PLATFORM_TOKEN_LIFETIME))
