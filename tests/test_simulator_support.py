"""Helpers for the simulator's own tests: a client that speaks to it over real HTTPS,
as a portal would, and exposes exactly what came back on the wire. (No tests here.)"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import urllib3

from flask_spark.testing import SparkPlatform

CALLBACK = "http://localhost/callback"
UA = {"X-SparkApi-User-Agent": "Simulator tests"}


class FakeClock:
    """A clock the platform reads instead of ``time.time``."""

    def __init__(self, now: float = 1_700_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class Wire:
    """urllib3 against the simulator, trusting its CA; no retries, no redirects."""

    def __init__(self, platform: SparkPlatform, **pool: Any) -> None:
        self.platform = platform
        pool.setdefault("retries", False)
        pool.setdefault("timeout", 10.0)
        self.http = urllib3.PoolManager(ca_certs=platform.ca_file, **pool)

    def close(self) -> None:
        self.http.clear()

    def request(self, method: str, path: str, **kwargs: Any) -> urllib3.BaseHTTPResponse:
        kwargs.setdefault("redirect", False)
        return self.http.request(method, self.platform.url + path, **kwargs)

    # -- authorization ---------------------------------------------------------------

    def authorize(
        self, path: str = "/oauth2", method: str = "GET", **params: str | None
    ) -> urllib3.BaseHTTPResponse:
        query = {
            "response_type": "code",
            "client_id": self.platform.client_id,
            "redirect_uri": CALLBACK,
            "state": "s-123",
        }
        query.update(params)  # type: ignore[arg-type]
        fields = {k: v for k, v in query.items() if v is not None}
        if method == "POST":
            return self.request(
                "POST",
                path,
                body=urlencode(fields),
                headers={"Content-Type": "application/x-www-form-urlencoded"},
            )
        return self.request("GET", f"{path}?{urlencode(fields)}")

    @staticmethod
    def callback(response: urllib3.BaseHTTPResponse) -> dict[str, list[str]]:
        """The query parameters a 302 sends back to the redirect URI."""
        assert response.status == 302, (response.status, response.data[:300])
        return parse_qs(urlsplit(response.headers["Location"]).query)

    def code(self, **params: str | None) -> str:
        return self.callback(self.authorize(**params))["code"][0]

    # -- grant -----------------------------------------------------------------------

    def grant(self, body: Any, content_type: str = "application/json") -> urllib3.BaseHTTPResponse:
        raw = body if isinstance(body, bytes) else json.dumps(body).encode()
        return self.request(
            "POST", "/v1/oauth2/grant", body=raw, headers={"Content-Type": content_type}
        )

    def exchange(self, code: str, /, **overrides: Any) -> urllib3.BaseHTTPResponse:
        body = {
            "client_id": self.platform.client_id,
            "client_secret": self.platform.client_secret,
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": CALLBACK,
        }
        body.update(overrides)
        return self.grant({k: v for k, v in body.items() if v is not None})

    def refresh(self, refresh_token: str, /, **overrides: Any) -> urllib3.BaseHTTPResponse:
        body = {
            "client_id": self.platform.client_id,
            "client_secret": self.platform.client_secret,
            "grant_type": "refresh_token",
            "refresh_token": refresh_token,
            "redirect_uri": CALLBACK,
        }
        body.update(overrides)
        return self.grant({k: v for k, v in body.items() if v is not None})

    def tokens(self, **params: str | None) -> dict[str, Any]:
        """The whole flow: authorize, exchange; returns the token answer."""
        reply = self.exchange(self.code(**params))
        assert reply.status == 200, reply.data
        tokens: dict[str, Any] = reply.json()
        return tokens

    # -- data ------------------------------------------------------------------------

    def api(
        self,
        method: str,
        path: str,
        token: str | None,
        scheme: str = "OAuth",
        body: Any = None,
        headers: dict[str, str] | None = None,
        **kwargs: Any,
    ) -> urllib3.BaseHTTPResponse:
        sent = {**UA, "Accept": "application/json"}
        if token is not None:
            sent["Authorization"] = f"{scheme} {token}"
        if body is not None:
            sent["Content-Type"] = "application/json"
            kwargs["body"] = json.dumps(body)
        sent.update(headers or {})
        return self.request(method, path, headers=sent, **kwargs)


def envelope(response: urllib3.BaseHTTPResponse) -> dict[str, Any]:
    """The ``D`` of a JSON answer, after checking its content type."""
    assert response.headers["Content-Type"] == "application/json", response.headers
    body = response.json()
    assert set(body) == {"D"}, body
    d: dict[str, Any] = body["D"]
    return d


def spark_error(response: urllib3.BaseHTTPResponse, status: int, code: int) -> str:
    """Check a Spark failure envelope; returns its message."""
    assert response.status == status, (response.status, response.data[:300])
    d = envelope(response)
    assert d["Success"] is False
    assert d["Code"] == code
    assert isinstance(d["Message"], str)
    assert d["Message"]
    return d["Message"]


def oauth_error(response: urllib3.BaseHTTPResponse, status: int, error: str) -> str:
    """Check an OAuth error answer of the grant endpoint; returns its description."""
    assert response.status == status, (response.status, response.data[:300])
    assert response.headers["Content-Type"] == "application/json"
    body = response.json()
    assert set(body) == {"error", "error_description"}, body
    assert body["error"] == error
    description: str = body["error_description"]
    return description
