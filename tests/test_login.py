"""The sign-in blueprint against the simulator over real HTTPS: the whole flow, the wire
format, and every way a callback can be wrong."""

from __future__ import annotations

import json
import threading
import time
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from cachelib import FileSystemCache
from flask import Flask, Response, jsonify
from flask_session import Session

from flask_spark import Spark, login_failed, spark_api, spark_login_required, token_obtained
from flask_spark.testing import Fault, SparkPlatform

from .conftest import AppFactory, Browser

pytestmark = pytest.mark.usefixtures("no_secret_in_logs")


def add_views(app: Flask) -> None:
    @app.get("/")
    def home() -> Any:
        return "home"

    @app.get("/account")
    @spark_login_required
    def account() -> Any:
        return jsonify(spark_api.get("/my/account"))

    @app.get("/state")
    def state() -> Any:
        return {"signed_in": spark_api.authenticated}


@pytest.fixture
def app(make_app: AppFactory) -> Flask:
    app = make_app()
    add_views(app)
    return app


@pytest.fixture
def browser(app: Flask, browser_for: Any) -> Browser:
    return browser_for(app)


def test_login_redirects_to_the_authorization_endpoint(
    browser: Browser, spark_platform: SparkPlatform
) -> None:
    location = browser.start_login()
    parts = urlsplit(location)
    query = parse_qs(parts.query)
    assert f"{parts.scheme}://{parts.netloc}" == spark_platform.platform_url
    assert parts.path == "/oauth2"
    assert query["response_type"] == ["code"]
    assert query["client_id"] == [spark_platform.client_id]
    assert query["redirect_uri"] == ["http://localhost/callback"]
    # 256 random bits, URL-safe base64
    assert len(query["state"][0]) >= 43
    assert set(query) == {"response_type", "client_id", "redirect_uri", "state"}


def test_full_sign_in_exchanges_the_code_as_json(
    browser: Browser, spark_platform: SparkPlatform
) -> None:
    callback, params = browser.authorize(browser.start_login("/login?next=/account"))
    response = browser.client.get(callback)

    assert response.status_code == 303
    assert response.headers["Location"] == "/account"
    assert response.headers["Cache-Control"] == "no-store"
    assert response.headers["Referrer-Policy"] == "no-referrer"

    grants = spark_platform.requests_for("grant")
    assert len(grants) == 1
    sent = grants[0]
    assert sent.method == "POST"
    assert sent.headers["Content-Type"] == "application/json"
    assert sent.json == {
        "client_id": spark_platform.client_id,
        "client_secret": spark_platform.client_secret,
        "grant_type": "authorization_code",
        "code": params["code"],
        "redirect_uri": "http://localhost/callback",
    }
    assert spark_platform.stats.code_exchanges == 1

    account = browser.client.get("/account")
    assert account.status_code == 200
    assert account.json is not None
    assert account.json[0]["Name"]
    data_call = spark_platform.requests_for("data")[-1]
    assert data_call.auth_scheme == "OAuth"
    assert data_call.headers["X-SparkApi-User-Agent"] == "Flask-Spark tests"
    assert data_call.headers["Accept"] == "application/json"
    assert data_call.path == "/v1/my/account"


def test_next_is_kept_from_login_not_read_from_callback(
    browser: Browser, spark_platform: SparkPlatform
) -> None:
    callback, _ = browser.authorize(browser.start_login("/login?next=/account%3Fpage%3D2"))
    response = browser.client.get(callback + "&next=https://evil.example/")
    assert response.headers["Location"] == "/account?page=2"


@pytest.mark.parametrize(
    "vector",
    [
        "//evil.example",
        "/\\evil.example",
        "/\t/evil.example",
        "/%09/evil.example",
        " //evil.example",
        "https:evil.example",
        "https://evil.example/",
        "javascript:alert(1)",
        "/\n/x",
        "/\r\n/x",
        "\\\\evil.example",
        "evil.example",
        "/ /evil.example",
        "///evil.example",
        "/%5Cevil.example",
        "",
    ],
)
def test_unsafe_next_falls_back_to_the_landing_page(
    browser: Browser, spark_platform: SparkPlatform, vector: str
) -> None:
    login = browser.client.get("/login", query_string={"next": vector})
    assert login.status_code == 302
    callback, _ = browser.authorize(login.headers["Location"])
    response = browser.client.get(callback)
    assert response.status_code == 303
    location = response.headers["Location"]
    if vector == "/%09/evil.example" or vector == "/%5Cevil.example":
        # percent-encoded: a plain path on this site, never a host
        assert location == vector
    else:
        assert location == "/"


def test_state_of_another_session_is_refused_without_a_grant_call(
    app: Flask, browser_for: Any, spark_platform: SparkPlatform
) -> None:
    alice, mallory = browser_for(app), browser_for(app)
    mallory.client.get("/")  # has a session of her own
    mallory.client.get("/login")
    callback, _ = alice.authorize(alice.start_login())
    response = mallory.client.get(callback)
    assert response.status_code == 400
    assert b"not recognised" in response.data
    assert spark_platform.stats.grant_calls == 0
    # Alice's own sign-in still works: her state was not consumed.
    assert alice.client.get(callback).status_code == 303


def test_a_replayed_callback_goes_on_to_the_app_without_a_second_grant_call(
    app: Flask, browser: Browser, spark_platform: SparkPlatform
) -> None:
    """The back button to the callback after a sign-in (or a reload of it): the browser is
    signed in, so it goes on to the app, not to an error page."""
    callback, _ = browser.authorize(browser.start_login("/login?next=/account"))
    assert browser.client.get(callback).headers["Location"] == "/account"
    again = browser.client.get(callback)
    assert again.status_code == 303
    assert again.headers["Location"] == app.config.get("SPARK_LOGIN_REDIRECT", "/")
    assert again.headers["Cache-Control"] == "no-store"
    assert spark_platform.stats.grant_calls == 1
    assert browser.client.get("/account").status_code == 200


def test_a_replayed_callback_after_signing_out_is_refused(
    browser: Browser, spark_platform: SparkPlatform
) -> None:
    callback, _ = browser.authorize(browser.start_login())
    assert browser.client.get(callback).status_code == 303
    assert (
        browser.client.post("/logout", headers={"Sec-Fetch-Site": "same-origin"}).status_code
        == 303
    )
    again = browser.client.get(callback)
    assert again.status_code == 400  # an error page that offers a fresh sign-in
    assert b'href="/login">Sign in with Flexmls' in again.data
    assert spark_platform.stats.grant_calls == 1


@pytest.mark.parametrize(
    "query",
    [
        "code=abc",  # missing state
        "state=&code=abc",
        "state=forged-state-forged-state-forged&code=abc",
        "state=%00%00&code=abc",
    ],
)
def test_missing_or_forged_state_is_refused(
    browser: Browser, spark_platform: SparkPlatform, query: str
) -> None:
    browser.start_login()  # a pending sign-in exists, but not with this state
    response = browser.client.get(f"/callback?{query}")
    assert response.status_code == 400
    assert spark_platform.stats.grant_calls == 0


def test_expired_state_is_refused(
    browser: Browser, spark_platform: SparkPlatform, monkeypatch: pytest.MonkeyPatch
) -> None:
    import flask_spark.views

    callback, _ = browser.authorize(browser.start_login())
    real = flask_spark.views.time.time
    monkeypatch.setattr(flask_spark.views.time, "time", lambda: real() + 601)
    response = browser.client.get(callback)
    assert response.status_code == 400
    assert b"too long" in response.data
    assert spark_platform.stats.grant_calls == 0


def test_missing_cookie_is_told_apart_from_unknown_state(
    app: Flask, browser: Browser, spark_platform: SparkPlatform
) -> None:
    callback, _ = browser.authorize(browser.start_login())
    cookieless = app.test_client()
    response = cookieless.get(callback)
    assert response.status_code == 400
    assert b"did not send back this site" in response.data
    assert spark_platform.stats.grant_calls == 0


def test_two_tabs_and_a_double_click_all_work(
    browser: Browser, spark_platform: SparkPlatform
) -> None:
    first = browser.start_login("/login?next=/one")
    second = browser.start_login("/login?next=/two")
    callback_two, _ = browser.authorize(second)
    callback_one, _ = browser.authorize(first)
    assert browser.client.get(callback_two).headers["Location"] == "/two"
    assert browser.client.get(callback_one).headers["Location"] == "/one"


def test_pending_sign_ins_live_in_the_grant_store_not_the_session(
    browser: Browser, redis_client: Any
) -> None:
    for _ in range(20):
        browser.start_login()
    cookie = browser.client.get_cookie("session")
    assert cookie is not None
    blob = redis_client.get(f"session:{cookie.value}")
    assert blob is not None
    assert len(blob) < 200  # the session did not grow
    assert len(redis_client.keys("spark:p:*")) == 20


def test_cancelled_sign_in_reads_as_cancelled(
    browser: Browser, spark_platform: SparkPlatform
) -> None:
    spark_platform.force_deny = True
    callback, params = browser.authorize(browser.start_login())
    assert params["error"] == "access_denied"
    response = browser.client.get(callback)
    assert response.status_code == 403
    assert b"You cancelled signing in" in response.data
    assert spark_platform.stats.grant_calls == 0


def test_platform_error_description_is_escaped_and_capped(browser: Browser) -> None:
    state = parse_qs(urlsplit(browser.start_login("/login?next=/account")).query)["state"][0]
    description = "<script>alert(1)</script>" + "x" * 1000
    response = browser.client.get(
        "/callback",
        query_string={
            "error": "server_error",
            "error_description": description,
            "state": state,
        },
    )
    assert response.status_code == 400
    assert b"<script>" not in response.data
    assert b"Flexmls said: &lt;script&gt;alert(1)&lt;/script&gt;" in response.data
    assert b"x" * 300 not in response.data
    assert b'href="/login?next=/account"' in response.data  # a retry keeps next


def test_a_forged_error_link_shows_no_text_of_its_own(
    browser: Browser, spark_platform: SparkPlatform
) -> None:
    response = browser.client.get(
        "/callback",
        query_string={"error": "server_error", "error_description": "Call 555-0100 now"},
    )
    assert response.status_code == 400
    assert b"555-0100" not in response.data
    assert b"Flexmls said" not in response.data


def test_redirect_uri_mismatch_from_the_platform(
    make_app: AppFactory, browser_for: Any, spark_platform: SparkPlatform
) -> None:
    app = make_app(
        SPARK_REDIRECT_URI="https://portal.example/not-registered", SESSION_COOKIE_SECURE=True
    )
    browser = browser_for(app)
    reply = browser.request("GET", browser.start_login())
    assert reply.status == 400
    assert b"redirect_uri_mismatch" in reply.data
    assert spark_platform.stats.authorizations == 0


@pytest.mark.parametrize(
    ("fault", "status", "text"),
    [
        (Fault("grant", "status", status=500), 502, b"could not be reached"),
        (Fault("grant", "malformed"), 502, b"could not be reached"),
        (Fault("grant", "html"), 502, b"could not be reached"),
        (Fault("grant", "missing_fields"), 502, b"could not be reached"),
        (Fault("grant", "rate_limit", retry_after=3), 502, b"could not be reached"),
    ],
)
def test_failed_code_exchange_stores_nothing(
    browser: Browser,
    spark_platform: SparkPlatform,
    redis_client: Any,
    fault: Fault,
    status: int,
    text: bytes,
) -> None:
    callback, _ = browser.authorize(browser.start_login())
    spark_platform.add_fault(fault)
    response = browser.client.get(callback)
    assert response.status_code == status
    assert text in response.data
    assert spark_platform.stats.grant_calls == 1
    # No grant, binding or pending sign-in (the rate window counted the attempt).
    assert not any(b"spark:" in key and b"spark:r:" not in key for key in redis_client.keys("*"))
    assert browser.client.get("/account").status_code == 302  # still anonymous


def test_refused_code_gets_the_try_again_page(
    browser: Browser, spark_platform: SparkPlatform
) -> None:
    callback, params = browser.authorize(browser.start_login())
    # Spend the code elsewhere first: the platform then refuses it.
    body = {
        "client_id": spark_platform.client_id,
        "client_secret": spark_platform.client_secret,
        "grant_type": "authorization_code",
        "code": params["code"],
        "redirect_uri": "http://localhost/callback",
    }
    spent = browser.request(
        "POST",
        spark_platform.api_url + "/v1/oauth2/grant",
        body=json.dumps(body).encode(),
        headers={"Content-Type": "application/json"},
    )
    assert spent.status == 200
    response = browser.client.get(callback)
    assert response.status_code == 400
    assert b"did not accept the sign-in" in response.data
    assert b"Sign in with Flexmls" in response.data


def test_timeout_during_exchange_is_not_retried(
    make_app: AppFactory, browser_for: Any, spark_platform: SparkPlatform
) -> None:
    app = make_app(SPARK_TIMEOUT=0.3)
    browser = browser_for(app)
    callback, _ = browser.authorize(browser.start_login())
    spark_platform.add_fault(Fault("grant", "delay", delay=1.0))
    response = browser.client.get(callback)
    assert response.status_code == 502
    assert spark_platform.stats.grant_calls == 1


def test_session_id_rotates_and_the_old_record_is_gone(
    app: Flask, browser: Browser, redis_client: Any
) -> None:
    browser.client.get("/login")
    before = browser.client.get_cookie("session")
    assert before is not None
    assert redis_client.exists(f"session:{before.value}")
    callback, _ = browser.authorize(browser.start_login())
    browser.client.get(callback)
    after = browser.client.get_cookie("session")
    assert after is not None
    assert after.value != before.value
    assert not redis_client.exists(f"session:{before.value}")
    assert redis_client.exists(f"session:{after.value}")
    assert redis_client.keys("spark:b:*")  # the new session's binding


def test_cookie_and_session_blob_hold_no_token(
    browser: Browser, spark_platform: SparkPlatform, redis_client: Any
) -> None:
    response = browser.sign_in()
    cookie = browser.client.get_cookie("session")
    assert cookie is not None
    blob = redis_client.get(f"session:{cookie.value}")
    issued = spark_platform.issued_values()
    set_cookies = " ".join(response.headers.getlist("Set-Cookie"))
    for value in issued:
        assert value not in cookie.value
        assert value not in set_cookies
        assert value.encode() not in blob
    assert len(cookie.value) < 64


def test_logs_never_contain_issued_values(
    browser: Browser, spark_platform: SparkPlatform, log_text: Any, app: Flask
) -> None:
    browser.sign_in()
    browser.client.get("/account")
    browser.client.get("/callback?state=nope&code=nope")
    browser.client.post("/logout", headers={"Origin": "http://localhost"})
    text = log_text()
    assert text  # the flow did log something (urllib3, our own info lines)
    for value in spark_platform.issued_values():
        assert value not in text
    for line in [r for r in spark_platform.requests if r.route == "grant"]:
        assert line.json is not None


def test_login_required_redirects_pages_and_answers_json_with_401(browser: Browser) -> None:
    page = browser.client.get("/account?tab=2")
    assert page.status_code == 302
    assert page.headers["Location"] == "/login?next=/account?tab%3D2"
    api = browser.client.get("/account", headers={"Accept": "application/json"})
    assert api.status_code == 401
    assert api.json == {"error": "not_signed_in", "message": "Sign in with Flexmls first."}


def test_logout_revokes_deletes_and_clears(
    browser: Browser, spark_platform: SparkPlatform, redis_client: Any
) -> None:
    browser.sign_in()
    old_cookie = browser.client.get_cookie("session")
    assert old_cookie is not None
    assert browser.client.get("/account").status_code == 200
    response = browser.client.post("/logout", headers={"Origin": "http://localhost"})
    assert response.status_code == 303
    assert spark_platform.stats.revocations == 1
    assert not redis_client.exists(f"session:spark:session:{old_cookie.value}")
    assert not redis_client.exists(f"session:{old_cookie.value}")
    # Replaying the old cookie gives an anonymous user.
    browser.client.set_cookie("session", old_cookie.value)
    assert browser.client.get("/account").status_code == 302


def test_logout_survives_a_failing_revocation(
    browser: Browser, spark_platform: SparkPlatform
) -> None:
    browser.sign_in()
    spark_platform.add_fault(Fault("revoke", "status", status=503))
    response = browser.client.post("/logout", headers={"Sec-Fetch-Site": "same-origin"})
    assert response.status_code == 303
    assert browser.client.get("/account").status_code == 302


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Origin": "https://evil.example"},
        {"Origin": "null"},
        {"Sec-Fetch-Site": "cross-site", "Origin": "http://localhost"},
        {"Referer": "http://evil.example/page"},
    ],
)
def test_logout_refuses_cross_site_requests(
    browser: Browser, spark_platform: SparkPlatform, headers: dict[str, str]
) -> None:
    browser.sign_in()
    response = browser.client.post("/logout", headers=headers)
    assert response.status_code == 403
    assert spark_platform.stats.revocations == 0
    assert browser.client.get("/account").status_code == 200


def test_logout_is_post_only(browser: Browser) -> None:
    assert browser.client.get("/logout").status_code == 405


def test_signals_fire_and_a_receiver_may_replace_the_error_page(
    app: Flask, browser: Browser, spark_platform: SparkPlatform
) -> None:
    obtained: list[dict[str, Any]] = []

    def on_obtained(sender: Flask, **extra: Any) -> None:
        obtained.append(extra)

    def on_failed(sender: Flask, **extra: Any) -> Response:
        return Response(f"custom {extra['reason']}", status=418)

    stranger = app.test_client()  # a session of its own, not signed in
    with token_obtained.connected_to(on_obtained, app), login_failed.connected_to(on_failed, app):
        browser.sign_in()
        assert stranger.get("/login").status_code == 302
        failed = stranger.get("/callback?state=x&code=y")
    account_id = spark_platform.accounts[0]["Id"]
    assert obtained == [
        {"instance": "spark", "scope": "idx", "portal": None, "account_id": account_id}
    ]
    assert failed.status_code == 418
    assert failed.data == b"custom unknown_state"
    assert failed.headers["Cache-Control"] == "no-store"


def test_url_prefix_and_app_factory(make_app: AppFactory, spark_platform: SparkPlatform) -> None:
    spark_platform.register_client(
        "prefixed", "prefixed-secret", ("http://localhost/auth/callback",)
    )
    spark = Spark(url_prefix="/auth")
    app = make_app(spark=spark, SPARK_CLIENT_ID="prefixed", SPARK_CLIENT_SECRET="prefixed-secret")
    client = app.test_client()
    response = client.get("/auth/login")
    assert response.status_code == 302
    assert "redirect_uri=http%3A%2F%2Flocalhost%2Fauth%2Fcallback" in response.headers["Location"]
    assert "spark" in app.extensions
    assert not hasattr(spark, "app")


def test_json_session_serialization_round_trips(browser: Browser, redis_client: Any) -> None:
    browser.start_login("/login?next=/x")
    cookie = browser.client.get_cookie("session")
    assert cookie is not None
    raw = redis_client.get(f"session:{cookie.value}")
    import msgspec

    data = msgspec.msgpack.decode(raw)
    assert json.loads(json.dumps(data)) == data


def test_non_utf8_query_on_a_protected_page_still_redirects(browser: Browser) -> None:
    response = browser.client.get("/account", environ_overrides={"QUERY_STRING": "q=\xff\xfe"})
    assert response.status_code == 302
    assert response.headers["Location"] == "/login?next=/account"


def test_non_utf8_query_on_login_falls_back_to_the_landing_page(browser: Browser) -> None:
    response = browser.client.get("/login", environ_overrides={"QUERY_STRING": "next=\xff/x"})
    assert response.status_code == 302
    callback, _ = browser.authorize(response.headers["Location"])
    assert browser.client.get(callback).headers["Location"] == "/"


def test_an_app_mounted_under_a_prefix_keeps_it(
    make_app: AppFactory, spark_platform: SparkPlatform
) -> None:
    """Mounted with DispatcherMiddleware at /agents: the return path and the landing page
    stay under the mount point."""
    spark_platform.register_client(
        "mounted", "mounted-secret", ("http://localhost/agents/callback",)
    )
    app = make_app(SPARK_CLIENT_ID="mounted", SPARK_CLIENT_SECRET="mounted-secret")
    add_views(app)
    client = app.test_client()
    page = client.get("/account", environ_overrides={"SCRIPT_NAME": "/agents"})
    assert page.headers["Location"] == "/agents/login?next=/agents/account"
    login = client.get("/login", environ_overrides={"SCRIPT_NAME": "/agents"})
    assert "redirect_uri=http%3A%2F%2Flocalhost%2Fagents%2Fcallback" in login.headers["Location"]
    out = client.post(
        "/logout",
        headers={"Origin": "http://localhost"},
        environ_overrides={"SCRIPT_NAME": "/agents"},
    )
    assert out.headers["Location"] == "/agents/"


def test_retry_links_keep_next(browser: Browser, spark_platform: SparkPlatform) -> None:
    callback, _ = browser.authorize(browser.start_login("/login?next=/account"))
    spark_platform.add_fault(Fault("grant", "status", status=500))
    failed = browser.client.get(callback)
    assert failed.status_code == 502
    assert b'href="/login?next=/account"' in failed.data


def test_expired_sign_in_offers_a_retry_with_next(
    browser: Browser, monkeypatch: pytest.MonkeyPatch
) -> None:
    import flask_spark.views

    callback, _ = browser.authorize(browser.start_login("/login?next=/account"))
    real = flask_spark.views.time.time
    monkeypatch.setattr(flask_spark.views.time, "time", lambda: real() + 601)
    response = browser.client.get(callback)
    assert response.status_code == 400
    assert b'href="/login?next=/account"' in response.data


def test_an_apps_not_signed_in_handler_sees_login_required(make_app: AppFactory) -> None:
    from flask_spark import NotSignedIn

    app = make_app()
    add_views(app)

    @app.errorhandler(NotSignedIn)
    def custom(error: NotSignedIn) -> Any:
        return "please sign in (custom)", 401

    response = app.test_client().get("/account")
    assert response.status_code == 401
    assert response.data == b"please sign in (custom)"


def test_a_revoked_grant_signs_the_user_out(
    browser: Browser, spark_platform: SparkPlatform, app: Flask
) -> None:
    browser.sign_in()
    assert browser.client.get("/account").status_code == 200
    token = spark_platform.requests_for("data")[-1].headers["Authorization"].split()[1]
    spark_platform.revoke_grant(token)  # e.g. revoked from the Flexmls side
    assert browser.client.get("/account").headers["Location"] == "/login?next=/account"
    assert browser.client.get("/state").json == {"signed_in": False}


@pytest.mark.parametrize("session_type", ["redis", "cachelib"])
@pytest.mark.slow
def test_overlapping_callbacks_spend_the_code_once(
    make_app: AppFactory, browser_for: Any, spark_platform: SparkPlatform, session_type: str
) -> None:
    """A reload while the first callback is still exchanging the code: the session holding
    the state is saved only when that request ends, so the second one still finds it."""
    app = make_app(session_type=session_type)
    add_views(app)
    browser = browser_for(app)
    callback, _ = browser.authorize(browser.start_login())
    cookie = browser.client.get_cookie("session")
    assert cookie is not None
    reload = app.test_client()
    reload.set_cookie("session", cookie.value)
    spark_platform.add_fault(Fault("grant", "delay", delay=1.0))
    first: list[int] = []
    thread = threading.Thread(
        target=lambda: first.append(browser.client.get(callback).status_code)
    )
    thread.start()
    deadline = time.monotonic() + 10
    while spark_platform.in_flight == 0 and time.monotonic() < deadline:
        time.sleep(0.005)  # until the first exchange is at the platform
    assert spark_platform.in_flight == 1
    second = reload.get(callback)
    thread.join()
    assert first == [303]
    assert second.status_code == 400
    assert spark_platform.stats.grant_calls == 1
    assert browser.client.get("/account").status_code == 200


def test_a_store_failure_after_the_exchange_gives_the_grant_back(
    app: Flask, browser: Browser, spark_platform: SparkPlatform, monkeypatch: pytest.MonkeyPatch
) -> None:
    from flask_spark import StoreUnavailable

    callback, _ = browser.authorize(browser.start_login("/login?next=/account"))
    store = app.extensions["spark"].tokens.store

    def down(*args: Any, **kwargs: Any) -> None:
        raise StoreUnavailable("down")

    monkeypatch.setattr(store, "put", down)
    response = browser.client.get(callback)
    assert response.status_code == 503
    assert b"storage is unavailable" in response.data
    assert b'href="/login?next=/account"' in response.data
    assert spark_platform.stats.revocations == 1  # the spent code's grant is given back


def test_logout_behind_a_tls_proxy_without_proxyfix(
    browser: Browser, spark_platform: SparkPlatform
) -> None:
    browser.sign_in()
    response = browser.client.post("/logout", headers={"Origin": "https://localhost"})
    assert response.status_code == 303
    assert spark_platform.stats.revocations == 1


def test_an_apps_base_class_handler_is_not_overridden(tmp_path: Any) -> None:
    from flask_spark import SparkError

    app = Flask("portal", instance_path=str(tmp_path / "instance"))
    app.config.update(
        SECRET_KEY="k",
        SESSION_TYPE="cachelib",
        SESSION_CACHELIB=FileSystemCache(str(tmp_path)),
        SPARK_CLIENT_ID="id",
        SPARK_CLIENT_SECRET="secret",
    )

    @app.errorhandler(SparkError)
    def mine(error: SparkError) -> Any:
        return f"mine: {type(error).__name__}", 418

    Session(app)
    Spark(app)
    add_views(app)
    response = app.test_client().get("/account")
    assert (response.status_code, response.data) == (418, b"mine: NotSignedIn")
