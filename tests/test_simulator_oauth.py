"""The simulator's OAuth 2 side over real HTTPS: the authorization endpoints, the consent
page, the JSON-only grant endpoint, single-use codes and refresh token rotation."""

from __future__ import annotations

import html
import re
import threading
from collections.abc import Iterator
from html.parser import HTMLParser
from urllib.parse import parse_qs, urlencode, urlsplit

import pytest
import urllib3

from flask_spark.testing import ACCOUNTS, SimulatorServer, SparkPlatform

from .test_simulator_support import CALLBACK, FakeClock, Wire, oauth_error


@pytest.fixture
def wire(spark_platform: SparkPlatform) -> Iterator[Wire]:
    wire = Wire(spark_platform)
    yield wire
    wire.close()


TOKEN = re.compile(r"[a-z0-9]{25}")


# -- authorization endpoint -------------------------------------------------------------


def test_auto_approve_redirects_with_code_and_state(
    wire: Wire, spark_platform: SparkPlatform
) -> None:
    reply = wire.authorize(state="abc/+ &=x")
    assert reply.status == 302
    assert reply.headers["Cache-Control"] == "no-store"
    location = urlsplit(reply.headers["Location"])
    assert f"{location.scheme}://{location.netloc}{location.path}" == CALLBACK
    params = parse_qs(location.query)
    assert set(params) == {"code", "state"}
    assert TOKEN.fullmatch(params["code"][0])
    assert params["state"] == ["abc/+ &=x"]
    assert spark_platform.stats.authorizations == 1
    recorded = spark_platform.requests_for("authorize")
    assert [(r.method, r.path, r.status) for r in recorded] == [("GET", "/oauth2", 302)]
    assert recorded[0].query["client_id"] == spark_platform.client_id


def test_state_is_omitted_when_none_came(wire: Wire) -> None:
    params = wire.callback(wire.authorize(state=None))
    assert set(params) == {"code"}


def test_redirect_uri_query_string_is_kept(wire: Wire, spark_platform: SparkPlatform) -> None:
    uri = "https://portal.example/cb?tenant=a%20b&x=1"
    spark_platform.register_client("with-query", "secret-q", (uri,))
    reply = wire.authorize(client_id="with-query", redirect_uri=uri)
    location = reply.headers["Location"]
    assert location.startswith("https://portal.example/cb?tenant=a%20b&x=1&code=")
    assert parse_qs(urlsplit(location).query)["state"] == ["s-123"]


def test_redirect_uri_mismatch_shows_a_page_and_never_redirects(
    wire: Wire, spark_platform: SparkPlatform
) -> None:
    for uri in ("https://evil.example/callback", CALLBACK + "/", "http://LOCALHOST/callback"):
        reply = wire.authorize(redirect_uri=uri)
        assert reply.status == 400
        assert "Location" not in reply.headers
        assert reply.headers["Content-Type"] == "text/html; charset=utf-8"
        assert b"redirect_uri_mismatch" in reply.data
        assert b"Parameter redirect_uri does not match registered URI" in reply.data
        # The simulator runs on the developer's machine: it shows what differs.
        page = reply.data.decode()
        assert f"<dt>Sent</dt><dd><code>{html.escape(uri)}</code></dd>" in page
        assert f"<dt>Registered</dt><dd><code>{CALLBACK}</code></dd>" in page
        assert "--redirect-uri" in page
    assert wire.authorize(redirect_uri=None).status == 400
    assert spark_platform.stats.authorizations == 0


def test_unknown_client_is_sent_back_only_to_a_known_redirect_uri(
    wire: Wire, spark_platform: SparkPlatform
) -> None:
    params = wire.callback(wire.authorize(client_id="nobody"))
    assert params["error"] == ["unauthorized_client"]
    assert params["error_description"][0]
    assert params["state"] == ["s-123"]
    assert "code" not in params
    # An unknown client with a URI nobody registered: no open redirect.
    reply = wire.authorize(client_id="nobody", redirect_uri="https://evil.example/")
    assert reply.status == 400
    assert "Location" not in reply.headers
    assert spark_platform.stats.authorizations == 0


@pytest.mark.parametrize("response_type", ["token", "", None, "CODE"])
def test_bad_response_type_redirects_with_invalid_request(
    wire: Wire, response_type: str | None
) -> None:
    params = wire.callback(wire.authorize(response_type=response_type))
    assert params["error"] == ["invalid_request"]
    assert "response_type" in params["error_description"][0]
    assert "code" not in params


def test_force_deny_redirects_with_access_denied(
    wire: Wire, spark_platform: SparkPlatform
) -> None:
    spark_platform.force_deny = True
    params = wire.callback(wire.authorize())
    assert params["error"] == ["access_denied"]
    assert params["error_description"][0]
    assert params["state"] == ["s-123"]
    assert "code" not in params
    assert spark_platform.stats.denials == 1
    assert spark_platform.stats.authorizations == 0


def test_vow_endpoint_records_portal_and_role(wire: Wire, spark_platform: SparkPlatform) -> None:
    tokens = wire.tokens(path="/auth/vow/myportal")
    grant = spark_platform.grant_for(tokens["access_token"])
    assert (grant.role, grant.portal) == ("vow", "myportal")
    idx = spark_platform.grant_for(wire.tokens()["access_token"])
    assert (idx.role, idx.portal) == ("idx", None)
    assert spark_platform.requests_for("authorize")[0].path == "/auth/vow/myportal"


class FormParser(HTMLParser):
    """Collects what a browser would submit from the page's form."""

    def __init__(self) -> None:
        super().__init__()
        self.title = ""
        self.action = ""
        self.method = ""
        self.hidden: dict[str, str] = {}
        self.options: list[str] = []
        self.buttons: list[tuple[str, str, str]] = []
        self._in: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        if tag == "form":
            self.action, self.method = a["action"], a["method"]
        elif tag == "input" and a.get("type") == "hidden":
            self.hidden[a["name"]] = a["value"]
        elif tag == "option":
            self.options.append(a["value"])
        elif tag == "button":
            self.buttons.append((a["type"], a["name"], a["value"]))
        self._in = tag

    def handle_data(self, data: str) -> None:
        if self._in == "title":
            self.title += data

    def handle_endtag(self, tag: str) -> None:
        self._in = None


def consent(wire: Wire, path: str = "/oauth2", **params: str | None) -> FormParser:
    wire.platform.auto_approve = False
    reply = wire.authorize(path, **params)
    assert reply.status == 200
    assert reply.headers["Content-Type"] == "text/html; charset=utf-8"
    assert reply.headers["Cache-Control"] == "no-store"
    form = FormParser()
    form.feed(reply.data.decode())
    return form


def submit(
    wire: Wire, form: FormParser, decision: str, user: str | None = None
) -> urllib3.BaseHTTPResponse:
    fields = {**form.hidden, "user": user or form.options[0], "decision": decision}
    return wire.request(
        form.method.upper(),
        form.action,
        body=urlencode(fields),
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )


def test_consent_page_is_a_real_form(wire: Wire, spark_platform: SparkPlatform) -> None:
    form = consent(wire, "/auth/vow/myportal")
    assert form.title == "Authorize application"
    assert form.method == "post"
    assert form.action == "/auth/vow/myportal"
    assert form.hidden == {
        "response_type": "code",
        "client_id": spark_platform.client_id,
        "redirect_uri": CALLBACK,
        "state": "s-123",
    }
    # A VOW portal is signed in to by that portal's consumers, an IDX key by agents.
    assert form.options == [a["Id"] for a in spark_platform.consumers("myportal")]
    assert consent(wire, "/oauth2").options == [a["Id"] for a in ACCOUNTS]
    assert ("submit", "decision", "approve") in form.buttons
    assert ("submit", "decision", "deny") in form.buttons
    page = wire.authorize("/auth/vow/myportal").data
    assert b"myportal" in page
    assert b"Approve" in page
    assert b"Deny" in page
    assert spark_platform.stats.authorizations == 0


def test_consent_page_escapes_the_client_id(wire: Wire, spark_platform: SparkPlatform) -> None:
    spark_platform.register_client("<b>x</b>", "escaping-secret", (CALLBACK,))
    wire.platform.auto_approve = False
    page = wire.authorize(client_id="<b>x</b>", state='"><script>').data
    assert b"<b>x</b>" not in page
    assert b"&lt;b&gt;x&lt;/b&gt;" in page
    assert b"<script>" not in page


def test_approve_on_the_consent_page_signs_in_the_chosen_user(
    wire: Wire, spark_platform: SparkPlatform
) -> None:
    form = consent(wire, "/auth/vow/myportal")
    chosen = form.options[1]
    params = wire.callback(submit(wire, form, "approve", chosen))
    assert params["state"] == ["s-123"]
    reply = wire.exchange(params["code"][0])
    assert reply.status == 200
    access = reply.json()["access_token"]
    assert spark_platform.user_for(access)["Id"] == chosen
    assert spark_platform.grant_for(access).portal == "myportal"
    assert spark_platform.stats.authorizations == 1


def test_deny_on_the_consent_page(wire: Wire, spark_platform: SparkPlatform) -> None:
    params = wire.callback(submit(wire, consent(wire), "deny"))
    assert params["error"] == ["access_denied"]
    assert params["error_description"][0]
    assert params["state"] == ["s-123"]
    assert spark_platform.stats.denials == 1
    assert spark_platform.stats.authorizations == 0


def test_tampered_consent_post_is_checked_again(wire: Wire, spark_platform: SparkPlatform) -> None:
    form = consent(wire)
    form.hidden["redirect_uri"] = "https://evil.example/"
    reply = submit(wire, form, "approve")
    assert reply.status == 400
    assert "Location" not in reply.headers
    form = consent(wire)
    assert submit(wire, form, "approve", user="not-a-user").status == 400
    assert submit(wire, form, "maybe").status == 400
    assert spark_platform.stats.authorizations == 0


# -- grant endpoint: authorization_code -------------------------------------------------


def test_code_exchange_answer_on_the_wire(wire: Wire, spark_platform: SparkPlatform) -> None:
    reply = wire.exchange(wire.code())
    assert reply.status == 200
    assert reply.headers["Content-Type"] == "application/json"
    assert reply.headers["Cache-Control"] == "no-store"
    body = reply.json()
    assert set(body) == {"access_token", "refresh_token", "expires_in"}  # no token_type
    assert TOKEN.fullmatch(body["access_token"])
    assert TOKEN.fullmatch(body["refresh_token"])
    assert body["expires_in"] == 86400
    assert spark_platform.stats.code_exchanges == 1
    assert spark_platform.stats.grant_calls == 1
    sent = spark_platform.requests_for("grant")[0]
    assert sent.json is not None
    assert sent.json["grant_type"] == "authorization_code"
    assert sent.status == 200


def test_token_lifetime_is_the_expires_in(wire: Wire, spark_platform: SparkPlatform) -> None:
    spark_platform.token_lifetime = 120
    assert wire.tokens()["expires_in"] == 120


@pytest.mark.parametrize(
    ("body", "content_type"),
    [
        (b"grant_type=authorization_code&code=x", "application/x-www-form-urlencoded"),
        (b'{"grant_type": "authorization_code"}', "text/plain"),
        (b"{not json", "application/json"),
        (b'["grant_type"]', "application/json"),
        (b"", "application/json"),
    ],
)
def test_grant_endpoint_takes_json_only(
    wire: Wire, spark_platform: SparkPlatform, body: bytes, content_type: str
) -> None:
    description = oauth_error(wire.grant(body, content_type), 400, "invalid_request")
    assert "JSON" in description
    assert spark_platform.stats.grant_calls == 1


def test_codes_are_single_use(wire: Wire, spark_platform: SparkPlatform) -> None:
    code = wire.code()
    first = wire.exchange(code)
    assert first.status == 200
    description = oauth_error(wire.exchange(code), 400, "invalid_grant")
    assert description == "The access grant you supplied is invalid"
    assert spark_platform.stats.code_exchanges == 1
    assert spark_platform.stats.rejected_code_exchanges == 1
    # The first grant is left alone.
    assert wire.api("GET", "/v1/my/account", first.json()["access_token"]).status == 200


@pytest.mark.parametrize(
    "overrides",
    [
        {"code": "abcdefghijklmnopqrstuvwxy"},
        {"redirect_uri": "http://localhost/other"},
        {"client_id": "other-client", "client_secret": "other-secret"},
    ],
)
def test_code_must_match_client_and_redirect_uri(
    wire: Wire, spark_platform: SparkPlatform, overrides: dict[str, str]
) -> None:
    spark_platform.register_client("other-client", "other-secret", (CALLBACK,))
    code = wire.code()
    oauth_error(wire.exchange(code, **overrides), 400, "invalid_grant")
    assert spark_platform.stats.rejected_code_exchanges == 1
    # A refused attempt does not spend the code.
    assert wire.exchange(code).status == 200


@pytest.mark.parametrize(
    "overrides",
    [{"client_secret": "wrong"}, {"client_id": "nobody"}, {"client_secret": None}],
)
def test_bad_client_credentials_are_invalid_client(
    wire: Wire, spark_platform: SparkPlatform, overrides: dict[str, str | None]
) -> None:
    oauth_error(wire.exchange(wire.code(), **overrides), 401, "invalid_client")
    assert spark_platform.stats.rejected_code_exchanges == 1
    assert spark_platform.stats.code_exchanges == 0


@pytest.mark.parametrize(
    "overrides",
    [{"code": None}, {"redirect_uri": None}, {"code": 12345}, {"grant_type": None}],
)
def test_missing_parameters_are_invalid_request(wire: Wire, overrides: dict[str, object]) -> None:
    oauth_error(wire.exchange(wire.code(), **overrides), 400, "invalid_request")


def test_unknown_grant_type(wire: Wire, spark_platform: SparkPlatform) -> None:
    oauth_error(wire.exchange("x", grant_type="password"), 400, "unsupported_grant_type")
    assert spark_platform.stats.grant_calls == 1


@pytest.fixture
def clocked() -> Iterator[tuple[Wire, FakeClock]]:
    clock = FakeClock()
    platform = SparkPlatform(code_lifetime=60, token_lifetime=3600, clock=clock)
    with SimulatorServer(platform):
        wire = Wire(platform)
        yield wire, clock
        wire.close()


def test_codes_expire_after_code_lifetime(clocked: tuple[Wire, FakeClock]) -> None:
    wire, clock = clocked
    fresh, stale = wire.code(), wire.code()
    clock.advance(59)
    assert wire.exchange(fresh).status == 200
    clock.advance(1)
    oauth_error(wire.exchange(stale), 400, "invalid_grant")
    assert wire.platform.stats.rejected_code_exchanges == 1


def test_access_tokens_expire_by_the_clock(clocked: tuple[Wire, FakeClock]) -> None:
    wire, clock = clocked
    tokens = wire.tokens()
    assert tokens["expires_in"] == 3600
    clock.advance(3599)
    assert wire.api("GET", "/v1/my/account", tokens["access_token"]).status == 200
    clock.advance(1)
    assert wire.api("GET", "/v1/my/account", tokens["access_token"]).status == 401
    fresh = wire.refresh(tokens["refresh_token"]).json()
    assert wire.api("GET", "/v1/my/account", fresh["access_token"]).status == 200


# -- grant endpoint: refresh_token ------------------------------------------------------


def test_refresh_rotates_both_tokens(wire: Wire, spark_platform: SparkPlatform) -> None:
    old = wire.tokens()
    reply = wire.refresh(old["refresh_token"])
    assert reply.status == 200
    assert reply.headers["Content-Type"] == "application/json"
    new = reply.json()
    assert set(new) == {"access_token", "refresh_token", "expires_in"}
    assert new["access_token"] != old["access_token"]
    assert new["refresh_token"] != old["refresh_token"]
    assert TOKEN.fullmatch(new["refresh_token"])
    assert spark_platform.stats.refreshes == 1
    # The new access token works, the old one is dead.
    assert wire.api("GET", "/v1/my/account", new["access_token"]).status == 200
    assert wire.api("GET", "/v1/my/account", old["access_token"]).status == 401
    # Reusing the rotated refresh token is refused and counted.
    description = oauth_error(wire.refresh(old["refresh_token"]), 400, "invalid_grant")
    assert description == "The access grant you supplied is invalid"
    assert spark_platform.stats.rejected_refreshes == 1
    # The newest one keeps rotating.
    assert wire.refresh(new["refresh_token"]).status == 200
    assert spark_platform.stats.refreshes == 2


def test_refresh_keeps_the_same_user_and_grant(wire: Wire, spark_platform: SparkPlatform) -> None:
    old = wire.tokens(path="/auth/vow/portal1")
    user = spark_platform.user_for(old["access_token"])
    new = wire.refresh(old["refresh_token"]).json()
    assert spark_platform.user_for(new["access_token"]) == user
    assert spark_platform.grant_for(new["access_token"]).portal == "portal1"


@pytest.mark.parametrize(
    ("overrides", "status", "error"),
    [
        ({"client_secret": "wrong"}, 401, "invalid_client"),
        ({"refresh_token": "abcdefghijklmnopqrstuvwxy"}, 400, "invalid_grant"),
        ({"redirect_uri": "https://evil.example/cb"}, 400, "invalid_grant"),
        ({"refresh_token": None}, 400, "invalid_request"),
    ],
)
def test_refused_refreshes(
    wire: Wire,
    spark_platform: SparkPlatform,
    overrides: dict[str, str | None],
    status: int,
    error: str,
) -> None:
    tokens = wire.tokens()
    oauth_error(wire.refresh(tokens["refresh_token"], **overrides), status, error)
    assert spark_platform.stats.rejected_refreshes == 1
    assert spark_platform.stats.refreshes == 0
    # A refused attempt leaves the grant as it was.
    assert wire.api("GET", "/v1/my/account", tokens["access_token"]).status == 200
    assert wire.refresh(tokens["refresh_token"]).status == 200


def test_refresh_token_of_another_client_is_refused(
    wire: Wire, spark_platform: SparkPlatform
) -> None:
    spark_platform.register_client("other-client", "other-secret", (CALLBACK,))
    tokens = wire.tokens()
    reply = wire.refresh(
        tokens["refresh_token"], client_id="other-client", client_secret="other-secret"
    )
    oauth_error(reply, 400, "invalid_grant")


def test_redirect_uri_is_optional_on_refresh(wire: Wire) -> None:
    assert wire.refresh(wire.tokens()["refresh_token"], redirect_uri=None).status == 200


def test_revoke_refresh_token_control(wire: Wire, spark_platform: SparkPlatform) -> None:
    tokens = wire.tokens()
    spark_platform.revoke_refresh_token(tokens["refresh_token"])
    oauth_error(wire.refresh(tokens["refresh_token"]), 400, "invalid_grant")
    assert spark_platform.stats.rejected_refreshes == 1
    # The access token lives on until it expires.
    assert wire.api("GET", "/v1/my/account", tokens["access_token"]).status == 200
    with pytest.raises(KeyError):
        spark_platform.revoke_refresh_token(tokens["refresh_token"])


def test_concurrent_refreshes_with_one_token_let_exactly_one_through(
    spark_platform: SparkPlatform,
) -> None:
    setup = Wire(spark_platform)
    tokens = setup.tokens()
    setup.close()
    wires = [Wire(spark_platform) for _ in range(16)]
    barrier = threading.Barrier(len(wires))
    statuses: list[int] = []
    lock = threading.Lock()

    def race(wire: Wire) -> None:
        barrier.wait()
        status = wire.refresh(tokens["refresh_token"]).status
        with lock:
            statuses.append(status)

    threads = [threading.Thread(target=race, args=(w,)) for w in wires]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for wire in wires:
        wire.close()
    assert sorted(statuses) == [200] + [400] * 15
    stats = spark_platform.stats
    assert (stats.refreshes, stats.rejected_refreshes, stats.grant_calls) == (1, 15, 17)


def test_issued_values_cover_codes_tokens_and_secrets(
    wire: Wire, spark_platform: SparkPlatform
) -> None:
    code = wire.code()
    tokens = wire.exchange(code).json()
    rotated = wire.refresh(tokens["refresh_token"]).json()
    direct = spark_platform.issue_tokens()
    issued = spark_platform.issued_values()
    assert {
        code,
        tokens["access_token"],
        tokens["refresh_token"],
        rotated["access_token"],
        rotated["refresh_token"],
        direct["access_token"],
        direct["refresh_token"],
        spark_platform.client_secret,
    } <= issued
    issued.clear()  # a copy
    assert code in spark_platform.issued_values()
    spark_platform.reset()
    assert spark_platform.issued_values() == {spark_platform.client_secret}
