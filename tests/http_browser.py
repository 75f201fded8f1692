"""A browser-like HTTP client for tests on real servers: one session cookie, updated from
each answer in the order the answers arrive, as a browser does."""

from __future__ import annotations

import threading
from http.cookies import SimpleCookie
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import urllib3


class CookieBrowser:
    """Holds the ``session`` cookie of one browser and walks sign-ins through the simulator
    (which approves on its own unless ``user`` names an account to approve as)."""

    def __init__(self, http: urllib3.PoolManager, name: str = "session") -> None:
        self.http = http
        self.name = name
        self.cookie: str | None = None
        self._lock = threading.Lock()

    def _apply(self, response: urllib3.BaseHTTPResponse) -> None:
        for header in response.headers.getlist("Set-Cookie"):
            jar = SimpleCookie(header)
            if self.name not in jar:
                continue
            morsel = jar[self.name]
            with self._lock:
                gone = morsel["max-age"] == "0" or "1970" in morsel["expires"]
                self.cookie = None if gone or not morsel.value else morsel.value

    def request(
        self, method: str, url: str, headers: dict[str, str] | None = None, **kwargs: Any
    ) -> urllib3.BaseHTTPResponse:
        sent = dict(headers or {})
        if self.cookie:
            sent["Cookie"] = f"{self.name}={self.cookie}"
        response = self.http.request(method, url, headers=sent, redirect=False, **kwargs)
        self._apply(response)
        return response

    def get(self, url: str, **kwargs: Any) -> urllib3.BaseHTTPResponse:
        return self.request("GET", url, **kwargs)

    def start_login(self, base: str) -> str:
        """``GET /login``; the authorization URL."""
        login = self.get(base + "/login")
        assert login.status == 302, login.status
        return str(login.headers["Location"])

    def authorize(self, location: str, user: str | None = None) -> str:
        """At the platform: approve; the callback URL it sends the browser to."""
        if user is None:
            answer = self.http.request("GET", location, redirect=False)
        else:
            parts = urlsplit(location)
            fields = {k: v[0] for k, v in parse_qs(parts.query).items()}
            fields.update(decision="approve", user=user)
            answer = self.http.request_encode_body(
                "POST",
                f"{parts.scheme}://{parts.netloc}{parts.path}",
                fields=fields,
                encode_multipart=False,
                redirect=False,
            )
        assert answer.status == 302, answer.data[:300]
        return str(answer.headers["Location"])

    def sign_in(self, base: str, user: str | None = None) -> None:
        """The whole sign-in; asserts the callback's redirect."""
        callback = self.get(self.authorize(self.start_login(base), user))
        assert callback.status == 303, callback.data[:300]

    def whoami(self, base: str) -> str | None:
        """The account the server sees signed in, from ``spark_account``."""
        reply = self.get(base + "/whoami")
        assert reply.status == 200, reply.status
        account: str | None = reply.json()["account"]
        return account


class HeldRequest:
    """A request kept open in the server until :meth:`release` (the portal's ``/held``)."""

    def __init__(self, browser: CookieBrowser, base: str, folder: Path) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        self.folder = folder
        self.status: int | None = None
        self._thread = threading.Thread(target=self._run, args=(browser, base), daemon=True)
        self._arrived = threading.Event()

    def _run(self, browser: CookieBrowser, base: str) -> None:
        self.status = browser.get(f"{base}/held?dir={self.folder}").status

    def start(self) -> None:
        """Send it, and return once the server has opened its session."""
        self._thread.start()
        arrived = self.folder / "arrived"
        for _ in range(2000):
            if arrived.exists():
                return
            self._thread.join(0.005)
        raise AssertionError("the held request never reached the server")

    def release(self) -> None:
        """Let it finish, and wait for its answer (the browser has applied its cookie)."""
        (self.folder / "release").touch()
        self._thread.join(15)
        assert self.status == 200
