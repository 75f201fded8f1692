"""The documentation's samples, run for real, and the docs build itself.

Every Python sample in ``docs/`` is a file under ``docs/examples/`` that the pages include
with ``literalinclude``; each test here loads one of those files as it is and drives it
against the simulator (and Redis where the sample uses it), so a sample that stops
working fails the suite. The last tests check the reference pages against the code
(every ``SPARK_`` key and its default, every error page reason) and build the site with
``sphinx-build -W``.
"""

from __future__ import annotations

import ast
import contextlib
import importlib.util
import os
import re
import shutil
import sqlite3
import stat
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import redis
import urllib3
from cachelib import FileSystemCache
from dotenv import dotenv_values
from flask import Flask, jsonify
from flask_session import Session

from flask_spark import (
    NotSignedIn,
    RateLimited,
    Spark,
    SparkError,
    spark_account,
    spark_api,
    spark_login_required,
)
from flask_spark.config import load_config
from flask_spark.pages import REASONS
from flask_spark.testing import LISTINGS, Fault, SparkPlatform
from flask_spark.testing.data import my_listings, replication_listings

from .conftest import AppFactory, Browser
from .redis_server import RedisServer

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
EXAMPLES = DOCS / "examples"

# -- helpers ---------------------------------------------------------------------------


@pytest.fixture
def example() -> Iterator[Callable[..., ModuleType]]:
    """Import ``docs/examples/<name>.py`` afresh, as a module of its own; with ``folder``,
    a copy of it in that folder (so its Flask instance folder is ``folder/instance``, not
    one inside ``docs/``)."""
    loaded: list[str] = []

    def load(name: str, folder: Path | None = None) -> ModuleType:
        module_name = f"docs_example_{name}"
        source = EXAMPLES / f"{name}.py"
        if folder is not None:
            source = Path(shutil.copy(source, folder / source.name))
        spec = importlib.util.spec_from_file_location(module_name, source)
        assert spec is not None
        assert spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[module_name] = module  # Flask finds the module's folder through it
        loaded.append(module_name)
        spec.loader.exec_module(module)
        return module

    yield load
    for name in loaded:
        sys.modules.pop(name, None)


@pytest.fixture
def built() -> Iterator[list[Flask]]:
    """Apps a test builds itself: their pools and Redis clients are closed afterwards."""
    apps: list[Flask] = []
    yield apps
    for app in apps:
        for state in app.extensions.get("spark.instances", {}).values():
            state.transport.close()
            state.tokens.store.close()
        client = app.config.get("SESSION_REDIS")
        if client is not None:
            client.close()


def simulator_config(platform: SparkPlatform, **extra: Any) -> dict[str, Any]:
    return {
        "SPARK_CLIENT_ID": platform.client_id,
        "SPARK_CLIENT_SECRET": platform.client_secret,
        "SPARK_PLATFORM_URL": platform.platform_url,
        "SPARK_API_URL": platform.api_url,
        "SPARK_CA_CERTS": platform.ca_file,
        "SECRET_KEY": "docs-test-secret-key",
        **extra,
    }


def follow_authorization(platform: SparkPlatform, location: str) -> str:
    """Visit the authorization URL as a browser would; returns where it sends us back."""
    http = urllib3.PoolManager(ca_certs=platform.ca_file, retries=False)
    try:
        reply = http.request("GET", location, redirect=False)
    finally:
        http.clear()
    assert reply.status == 302, reply.data[:300]
    return str(reply.headers["Location"])


def shell_commands(name: str) -> list[str]:
    lines = (EXAMPLES / name).read_text().splitlines()
    return [line for line in lines if line.strip() and not line.startswith("#")]


# -- quick start -------------------------------------------------------------------------


def test_quickstart_app_signs_in_and_greets(
    example: Callable[..., ModuleType],
    spark_platform: SparkPlatform,
    browser_for: Any,
    built: list[Flask],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.chdir(tmp_path)
    app = example("quickstart", tmp_path).create_app(**simulator_config(spark_platform))
    built.append(app)
    browser: Browser = browser_for(app)

    page = browser.client.get("/")
    assert page.status_code == 302
    assert page.headers["Location"] == "/login?next=/"
    response = browser.sign_in("/")
    assert response.status_code == 303
    assert response.headers["Location"] == "/"
    assert browser.client.get("/").text == "Signed in as Jane Agent"
    assert any((tmp_path / "sessions").iterdir())  # Flask-Session's cachelib files

    # As the page says: the grant is in SQLite in the instance folder, readable by this
    # user only, one row for the account that signed in.
    grants = tmp_path / "instance" / "spark-grants.sqlite3"
    assert stat.S_IMODE(grants.stat().st_mode) == 0o600
    with sqlite3.connect(grants) as db:
        rows = db.execute("SELECT account_id, scope FROM spark_grants").fetchall()
    assert rows == [(spark_platform.accounts[0]["Id"], "idx")]


@pytest.mark.slow
def test_quickstart_as_the_page_runs_it(
    example: Callable[..., ModuleType],
    built: list[Flask],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """quickstart.sh and quickstart.env as written: the simulator's CLI on plain HTTP
    (on a free port instead of 5001), the app configured from the .env file, the consent
    page approved, and ``flask --app quickstart`` finding the factory."""
    assert shell_commands("quickstart.sh") == [
        "python -m flask_spark.testing",
        "flask --app quickstart run",
    ]
    simulator = subprocess.Popen(
        [sys.executable, "-m", "flask_spark.testing", "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert simulator.stdout is not None
        banner = simulator.stdout.readline()
        found = re.search(r"listening on (http://127\.0\.0\.1:\d+);", banner)
        assert found, banner
        url = found.group(1)

        env = {
            key: str(value).replace("http://127.0.0.1:5001", url)
            for key, value in dotenv_values(EXAMPLES / "quickstart.env").items()
        }
        assert env["FLASK_SPARK_PLATFORM_URL"] == url
        for key, value in env.items():
            monkeypatch.setenv(key, value)
        monkeypatch.chdir(tmp_path)
        app = example("quickstart", tmp_path).create_app()
        built.append(app)
        assert app.config["SPARK_ALLOW_HTTP_LOOPBACK"] is True

        client = app.test_client()
        base = "http://127.0.0.1:5000"  # where `flask run` serves it
        login = client.get("/login?next=/", base_url=base)
        authorize = login.headers["Location"]
        assert authorize.startswith(f"{url}/oauth2?")
        http = urllib3.PoolManager(retries=False)
        try:
            consent = http.request("GET", authorize)
            assert consent.status == 200
            assert b"Approve" in consent.data
            fields = dict(parse_qs(urlsplit(authorize).query))
            form = {k: v[0] for k, v in fields.items()}
            form["decision"] = "approve"
            approved = http.request_encode_body(
                "POST", f"{url}/oauth2", fields=form, encode_multipart=False, redirect=False
            )
        finally:
            http.clear()
        assert approved.status == 302
        callback = approved.headers["Location"]
        assert callback.startswith(f"{base}/callback?")
        assert client.get(callback).status_code == 303
        assert client.get("/", base_url=base).text == "Signed in as Jane Agent"

        routes = subprocess.run(
            [sys.executable, "-m", "flask", "--app", "quickstart", "routes"],
            capture_output=True,
            text=True,
            cwd=tmp_path,
            timeout=60,
            check=False,
        )
        assert routes.returncode == 0, routes.stderr
        for rule in ("/login", "/callback", "/logout"):
            assert rule in routes.stdout
    finally:
        simulator.terminate()
        simulator.wait(timeout=10)
        if simulator.stdout is not None:
            simulator.stdout.close()


def readme_commands() -> list[str]:
    """The commands of the README's first ``sh`` block, which the quick start includes."""
    text = (ROOT / "README.md").read_text()
    block = text.split("```sh", 1)[1].split("```", 1)[0]
    return [line.strip() for line in block.splitlines() if line.strip()[:1] not in ("", "#")]


def test_quickstart_page_matches_the_readme_and_the_example_portal() -> None:
    """The page says the README's first command starts the example portal on the
    simulator and the second runs the tests, and describes example_app: check both."""
    page = (DOCS / "quickstart.rst").read_text()
    assert ":start-after: ```sh" in page
    demo, tests = readme_commands()
    assert demo.endswith(".venv/bin/python -m example_app")
    assert "-e '.[demo]'" in demo
    assert tests.endswith("-m pytest")

    import example_app

    assert example_app.VOW_MOUNT == "/portal"
    assert example_app.DEFAULT_PORT == 5000
    assert example_app.DEMO_PORTALS == ("redriver", "prairie")
    docstring = example_app.__doc__ or ""
    gunicorn = "gunicorn --bind 127.0.0.1:5000 --workers 3 'example_app:create_app()'"
    assert gunicorn in docstring
    assert gunicorn in " ".join(page.split())
    assert "``PORT`` + 1" in docstring  # the simulator's port, "the port after the portal's"
    assert ".. figure:: _static/dashboard.png" in page
    assert (DOCS / "_static" / "dashboard.png").stat().st_size > 10_000


# -- configuration -----------------------------------------------------------------------


@pytest.fixture
def production_env(
    monkeypatch: pytest.MonkeyPatch, spark_platform: SparkPlatform, redis_server: RedisServer
) -> None:
    monkeypatch.setenv("SPARK_CLIENT_ID", spark_platform.client_id)
    monkeypatch.setenv("SPARK_CLIENT_SECRET", spark_platform.client_secret)
    monkeypatch.setenv("REDIS_URL", redis_server.url)
    monkeypatch.setenv("SECRET_KEY", "docs-test-secret-key")
    monkeypatch.setenv("SPARK_TOKEN_KEYS", '["docs-test-token-key-0123456789abcdefgh"]')


@pytest.mark.usefixtures("production_env")
def test_settings_sign_in_and_token_lifetime(
    spark_platform: SparkPlatform,
    redis_client: redis.Redis,
    built: list[Flask],
) -> None:
    """settings.py as written (only the platform URLs point at the simulator): secure Lax
    cookie, the grant in the same Redis, and the browser's binding to it lives
    PERMANENT_SESSION_LIFETIME, like the session."""
    spark_platform.register_client(
        spark_platform.client_id,
        spark_platform.client_secret,
        ("https://portal.example.com/callback",),
    )
    app = Flask("settings_example")
    app.config.from_pyfile(str(EXAMPLES / "settings.py"))
    app.config.update(
        SPARK_PLATFORM_URL=spark_platform.platform_url,
        SPARK_API_URL=spark_platform.api_url,
        SPARK_CA_CERTS=spark_platform.ca_file,
    )
    Session(app)
    Spark(app)
    built.append(app)

    client = app.test_client()
    base = "https://portal.example.com"
    login = client.get("/login", base_url=base)
    callback = follow_authorization(spark_platform, login.headers["Location"])
    assert callback.startswith(f"{base}/callback?")
    answer = client.get(callback)
    assert answer.status_code == 303
    cookie_header = answer.headers["Set-Cookie"]
    for flag in ("Secure", "HttpOnly", "SameSite=Lax"):
        assert flag in cookie_header

    cookie = client.get_cookie("session", domain="portal.example.com")
    assert cookie is not None
    week = 7 * 24 * 3600
    assert len(redis_client.keys("spark:g:*")) == 1
    [binding] = redis_client.keys("spark:b:*")
    token_ttl = redis_client.ttl(binding)
    session_ttl = redis_client.ttl(f"session:{cookie.value}")
    assert week - 10 <= token_ttl <= week
    assert week - 10 <= session_ttl <= week


@pytest.mark.usefixtures("production_env")
def test_wsgi_proxy_fix_lets_https_sign_out_pass(
    example: Callable[..., ModuleType], built: list[Flask]
) -> None:
    wsgi = example("wsgi")
    app = wsgi.app
    built.append(app)
    client = app.test_client()
    proxied = {
        "X-Forwarded-Proto": "https",
        "X-Forwarded-Host": "portal.example.com",
        "X-Forwarded-For": "203.0.113.9",
    }
    login = client.get("/login", headers=proxied)
    query = parse_qs(urlsplit(login.headers["Location"]).query)
    assert query["redirect_uri"] == ["https://portal.example.com/callback"]

    same_origin = {**proxied, "Origin": "https://portal.example.com"}
    assert client.post("/logout", headers=same_origin).status_code == 303
    # Without the proxy's headers the same Origin is another site: refused.
    plain = {"Origin": "https://portal.example.com"}
    assert client.post("/logout", headers=plain).status_code == 403


@pytest.mark.usefixtures("production_env")
@pytest.mark.slow
def test_gunicorn_config_loads_the_wsgi_app() -> None:
    checked = subprocess.run(
        [sys.executable, "-m", "gunicorn", "--check-config", "-c", "gunicorn.conf.py"],
        cwd=EXAMPLES,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"},
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr


# -- spark_api -----------------------------------------------------------------------------


def test_a_copy_goes_on_where_it_stopped(
    example: Callable[..., ModuleType],
    make_app: AppFactory,
    browser_for: Any,
    spark_platform: SparkPlatform,
) -> None:
    spark_platform.replication_records = 3000
    app = make_app(SPARK_REPLICATION_URL=spark_platform.replication_url)
    copy_listings = example("replicate").copy_listings
    saved: list[str] = []
    where: list[str] = []
    stops = [200]

    class Stopped(Exception):
        pass

    def save(listing: dict[str, Any]) -> None:
        if stops and len(saved) == stops[0]:
            stops.pop()
            raise Stopped  # a deploy, a crash: the copy stops half-way
        saved.append(listing["Id"])

    @app.get("/copy")
    def copy() -> Any:
        with contextlib.suppress(Stopped):
            copy_listings(spark_api, save, where.append)
        calls = copy_listings(spark_api, save, where.append, since=where[-1])
        return {"calls": calls}

    browser: Browser = browser_for(app)
    browser.sign_in()
    assert browser.client.get("/copy").json["calls"] >= 1
    fargo = [
        item["Id"]
        for item in replication_listings(3000)
        if item["StandardFields"]["City"] == "Fargo"
    ]
    assert len(fargo) > 200
    assert not stops  # it did stop once
    assert saved == fargo  # each once, in order, none lost at the stop


@pytest.mark.slow
def test_a_copy_waits_out_the_rate_budget_and_goes_on(
    example: Callable[..., ModuleType],
    make_app: AppFactory,
    browser_for: Any,
    spark_platform: SparkPlatform,
) -> None:
    spark_platform.replication_records = 3000
    spark_platform.rate_limit, spark_platform.rate_window = 2, 1.0
    app = make_app(
        SPARK_REPLICATION_URL=spark_platform.replication_url,
        SPARK_RATE_LIMIT=2,
        SPARK_RATE_WINDOW=1,
        SPARK_MAX_RETRY_WAIT=0,
    )
    copy_everything = example("rate_limits").copy_everything
    saved: list[str] = []
    slept: list[float] = []

    def sleep(seconds: float) -> None:
        slept.append(seconds)
        time.sleep(seconds)

    @app.get("/copy")
    def copy() -> Any:
        return {"waits": copy_everything(spark_api, lambda item: saved.append(item["Id"]), sleep)}

    browser: Browser = browser_for(app)
    browser.sign_in()  # its account read: 1 of 2 in the first second
    waits = browser.client.get("/copy").json["waits"]

    assert waits >= 1
    assert len(slept) == waits
    assert all(1 <= s <= 2 for s in slept)  # Retry-After: the window, rounded up
    assert saved == [item["Id"] for item in replication_listings(3000)]  # each once, in order
    assert spark_platform.stats.rate_limited == 0  # the platform never had to say no


def test_search_builds_its_filter_from_the_visitors_words(
    example: Callable[..., ModuleType],
    make_app: AppFactory,
    browser_for: Any,
    spark_platform: SparkPlatform,
) -> None:
    app = make_app()
    app.register_blueprint(example("search").bp)
    browser: Browser = browser_for(app)
    browser.sign_in()

    found = browser.client.get("/search?city=Fargo&min_price=200000&beds=3").json
    assert found["filter"] == "City Eq 'Fargo' And ListPrice Ge 200000 And BedsTotal Ge 3"
    fields = [item["StandardFields"] for item in LISTINGS]
    wanted = [
        f
        for f in fields
        if f["City"] == "Fargo" and f["ListPrice"] >= 200000 and f["BedsTotal"] >= 3
    ]
    wanted.sort(key=lambda f: -f["ListPrice"])
    assert wanted
    assert found["ids"] == [f["ListingId"] for f in wanted][:25]

    hostile = browser.client.get("/search", query_string={"city": "Fargo' Or ListPrice Gt '0"})
    assert hostile.json == {"filter": "City Eq 'Fargo\\' Or ListPrice Gt \\'0'", "ids": []}
    everything = browser.client.get("/search").json
    assert everything["filter"] is None
    assert len(everything["ids"]) == 25


def test_api_usage_views(
    example: Callable[..., ModuleType],
    make_app: AppFactory,
    browser_for: Any,
    spark_platform: SparkPlatform,
) -> None:
    app = make_app()
    app.register_blueprint(example("api_usage").bp)
    browser: Browser = browser_for(app)
    assert browser.client.get("/account").status_code == 302
    browser.sign_in()

    assert browser.client.get("/account").json == {
        "name": "Jane Agent",
        "office": "Prairie Home Realty",
    }

    fargo = [item["StandardFields"] for item in LISTINGS]
    fargo = [fields for fields in fargo if fields["City"] == "Fargo"]
    expected = [f["ListingId"] for f in sorted(fargo, key=lambda f: -f["ListPrice"])]
    assert len(expected) > 1
    assert browser.client.get("/listings").json == expected

    assert browser.client.get("/listings/count").json == {"total": len(fargo)}
    one = LISTINGS[0]["Id"]
    assert browser.client.get(f"/listings/{one}").json["Id"] == one
    assert browser.client.get("/listings/00000000000000000000000000").status_code == 404

    created = browser.client.post("/contacts", data={"name": "Pat Doe"})
    assert created.status_code == 201
    assert created.json["uri"].startswith("/v1/contacts/")
    sent = spark_platform.requests_for("data")[-1]
    assert sent.json == {"D": {"DisplayName": "Pat Doe"}}


def test_a_query_string_in_the_path_is_refused_as_the_pages_say(make_app: AppFactory) -> None:
    app = make_app()
    with app.app_context(), pytest.raises(ValueError, match="query parameters") as refused:
        spark_api.get("/listings?_limit=3")
    message = str(refused.value)
    assert "pass query parameters as keyword arguments" in message
    start = message.split(",", 1)[0]
    assert f"``ValueError: {start} ...``" in (DOCS / "troubleshooting.rst").read_text()
    assert 'spark_api.get("/listings?_limit=3")' in (DOCS / "api.rst").read_text()


# -- views, signals and error pages ---------------------------------------------------------


@pytest.fixture
def pages_app(
    example: Callable[..., ModuleType], make_app: AppFactory
) -> tuple[Flask, ModuleType]:
    module = example("pages_and_signals")
    app = make_app()
    app.template_folder = str(EXAMPLES / "templates")  # the samples' templates/ folder

    @app.get("/")
    def home() -> Any:
        return "home"

    @app.get("/account")
    def account() -> Any:
        return jsonify(spark_api.get("/my/account"))

    module.register(app)
    return app, module


def test_signals_keep_the_agent_and_a_blueprint_answers_json(
    pages_app: tuple[Flask, ModuleType], browser_for: Any
) -> None:
    """The blueprint's own NotSignedIn handler answers the anonymous requests that
    spark_login_required turns away: no decorator of the app's own is needed."""
    app, module = pages_app
    assert module.me.__wrapped__ is not None  # functools.wraps of spark_login_required
    assert "spark_login_required" in (EXAMPLES / "pages_and_signals.py").read_text()
    assert not hasattr(module, "login_required")
    browser: Browser = browser_for(app)
    anonymous = browser.client.get("/api/me")
    assert anonymous.status_code == 401
    assert anonymous.json == {"error": "sign_in_required", "login": "/login"}

    browser.sign_in()
    assert browser.client.get("/api/me").json == {
        "id": "20110208155215739016000000",
        "name": "Jane Agent",
    }
    out = browser.client.post("/logout", headers={"Sec-Fetch-Site": "same-origin"})
    assert out.status_code == 303
    assert browser.client.get("/api/me").status_code == 401


def test_an_app_handler_sees_the_decorators_requests_and_spark_api_calls(
    make_app: AppFactory, browser_for: Any, spark_platform: SparkPlatform
) -> None:
    """As the views page says: an app's own @app.errorhandler(NotSignedIn) answers both
    spark_login_required's anonymous requests and a NotSignedIn (or
    ReauthenticationRequired) raised by a spark_api call."""
    app = make_app()  # Spark(app) has run: its default handler is in place
    seen: list[str] = []

    @app.errorhandler(NotSignedIn)
    def please_sign_in(error: NotSignedIn) -> Any:
        seen.append(type(error).__name__)
        return "please sign in (ours)", 401

    @app.get("/protected")
    @spark_login_required
    def protected() -> Any:
        return jsonify(spark_api.get("/my/account"))

    @app.get("/unprotected")
    def unprotected() -> Any:
        return jsonify(spark_api.get("/my/account"))

    browser: Browser = browser_for(app)
    for path in ("/protected", "/unprotected"):
        answer = browser.client.get(path)
        assert (answer.status_code, answer.text) == (401, "please sign in (ours)")
    assert seen == ["NotSignedIn", "NotSignedIn"]

    browser.sign_in()
    assert browser.client.get("/protected").status_code == 200
    token = spark_platform.requests_for("data")[-1].headers["Authorization"].split()[1]
    spark_platform.revoke_grant(token)  # revoked at Flexmls: code 1000
    assert browser.client.get("/protected").status_code == 401
    assert seen[-1] == "ReauthenticationRequired"
    assert browser.client.get("/protected").status_code == 401  # the record is forgotten
    assert seen[-1] == "NotSignedIn"


def test_login_failed_receiver_replaces_the_cancelled_page(
    pages_app: tuple[Flask, ModuleType], browser_for: Any, spark_platform: SparkPlatform
) -> None:
    app, _ = pages_app
    spark_platform.force_deny = True
    response = browser_for(app).sign_in()
    assert response.status_code == 302
    assert response.headers["Location"] == "/?signin=cancelled"


def test_error_template_override(
    pages_app: tuple[Flask, ModuleType], browser_for: Any, spark_platform: SparkPlatform
) -> None:
    app, _ = pages_app
    browser: Browser = browser_for(app)
    browser.start_login()
    unknown = browser.client.get("/callback?state=nope-nope-nope-nope-nope&code=x")
    assert unknown.status_code == 400
    assert 'class="prairie-home"' in unknown.text
    assert "Sign-in link not recognised" in unknown.text
    assert 'href="/login"' in unknown.text

    # A forged error link: the page shows no text of its own.
    forged = browser.client.get(
        "/callback", query_string={"error": "server_error", "error_description": "Call us"}
    )
    assert forged.status_code == 400
    assert "Call us" not in forged.text
    assert "Flexmls said" not in forged.text

    # The platform's words for a sign-in this browser started, and a retry that keeps next.
    location = browser.start_login("/login?next=/account")
    state = parse_qs(urlsplit(location).query)["state"][0]
    said = browser.client.get(
        "/callback",
        query_string={"error": "server_error", "error_description": "Try later", "state": state},
    )
    assert said.status_code == 400
    assert "Flexmls said: Try later" in said.text
    assert 'href="/login?next=/account"' in said.text

    callback, _ = browser.authorize(browser.start_login("/login?next=/account"))
    spark_platform.add_fault(Fault("grant", "status", status=500))
    failed = browser.client.get(callback)
    assert failed.status_code == 502
    assert 'class="prairie-home"' in failed.text
    assert 'href="/login?next=/account"' in failed.text

    # A refused sign-out offers no sign-in button.
    refused = browser.client.post("/logout")
    assert refused.status_code == 403
    assert 'class="prairie-home"' in refused.text
    assert "Sign in with Flexmls" not in refused.text

    # The 503 pages use the same template (reason "unavailable").
    browser.sign_in()
    spark_platform.add_fault(Fault("data", "rate_limit", retry_after=60))
    busy = browser.client.get("/account")
    assert busy.status_code == 503
    assert 'class="prairie-home"' in busy.text
    assert "Temporarily unavailable" in busy.text


def test_an_apps_own_handlers_win_even_registered_after_init_app(
    make_app: AppFactory, browser_for: Any, spark_platform: SparkPlatform
) -> None:
    """As the views page says: Flask-Spark's defaults hang on SparkError alone, so an
    app's handler for SparkError replaces them, and one for a subclass is more specific,
    registered before or after init_app."""

    def add_views(app: Flask) -> None:
        @app.get("/account")
        def account() -> Any:
            return jsonify(spark_api.get("/my/account"))

    base_only = make_app()
    add_views(base_only)

    @base_only.errorhandler(SparkError)
    def any_spark_error(error: SparkError) -> Any:
        return "mine", 500

    own = make_app()  # Spark(app) has run: its default handlers are in place
    add_views(own)

    @own.errorhandler(RateLimited)
    def slow_down(error: RateLimited) -> Any:
        return "slow down", 429

    for app, status, text in ((base_only, 500, "mine"), (own, 429, "slow down")):
        browser: Browser = browser_for(app)
        browser.sign_in()
        spark_platform.add_fault(Fault("data", "rate_limit", retry_after=60))
        page = browser.client.get("/account")
        assert (page.status_code, page.text) == (status, text)


def test_every_reason_is_documented() -> None:
    page = (DOCS / "views.rst").read_text()
    for reason in [*REASONS, "unavailable"]:
        assert f"``{reason}``" in page, reason


# -- portals and single-session keys ----------------------------------------------------------


def test_portals_keep_their_own_sign_in(
    example: Callable[..., ModuleType],
    spark_platform: SparkPlatform,
    browser_for: Any,
    redis_server: RedisServer,
    built: list[Flask],
) -> None:
    spark_platform.register_client(
        "vow-key",
        "vow-secret",
        ("http://localhost/alpha/callback", "http://localhost/beta/callback"),
    )
    app = example("portals").create_app(
        SESSION_TYPE="redis",
        SESSION_REDIS=redis.Redis.from_url(redis_server.url),
        **simulator_config(
            spark_platform, SPARK_CLIENT_ID="vow-key", SPARK_CLIENT_SECRET="vow-secret"
        ),
    )
    built.append(app)
    browser: Browser = browser_for(app)
    assert "href='/alpha/login'" in browser.client.get("/alpha/").text

    location = browser.start_login("/alpha/login?next=/alpha/saved-searches")
    assert urlsplit(location).path == "/auth/vow/alpha"
    callback, _ = browser.authorize(location)
    assert callback.startswith("/alpha/callback?")
    signed_in = browser.client.get(callback)
    assert signed_in.headers["Location"] == "/alpha/saved-searches"

    assert browser.client.get("/alpha/saved-searches").json == {
        "portal": "alpha",
        "consumer": spark_platform.consumers("alpha")[0]["Name"],
    }
    assert "action='/alpha/logout'" in browser.client.get("/alpha/").text
    assert "href='/beta/login'" in browser.client.get("/beta/").text
    beta = browser.client.get("/beta/saved-searches")
    assert beta.headers["Location"] == "/beta/login?next=/beta/saved-searches"
    assert browser.client.get("/no.such.portal/").status_code == 404


def test_an_agent_portal_and_vow_portals_in_one_app(
    example: Callable[..., ModuleType],
    spark_platform: SparkPlatform,
    browser_for: Any,
    redis_server: RedisServer,
    built: list[Flask],
) -> None:
    spark_platform.register_client(
        "vow-key", "vow-secret", ("http://localhost/portal/alpha/callback",)
    )
    app = example("instances").create_app(
        SESSION_TYPE="redis",
        SESSION_REDIS=redis.Redis.from_url(redis_server.url),
        SPARK_VOW_CLIENT_ID="vow-key",
        SPARK_VOW_CLIENT_SECRET="vow-secret",
        **simulator_config(spark_platform),
    )
    built.append(app)
    browser: Browser = browser_for(app)
    assert browser.client.get("/dashboard").headers["Location"] == "/login?next=/dashboard"
    listings = browser.client.get("/portal/alpha/listings")
    assert listings.headers["Location"] == "/portal/alpha/login?next=/portal/alpha/listings"

    agent_login = browser.start_login("/login?next=/dashboard")
    assert urlsplit(agent_login).path == "/openid/authorize"
    callback, _ = browser.authorize(agent_login)
    assert browser.client.get(callback).headers["Location"] == "/dashboard"
    assert browser.client.get("/dashboard").json["agent"] == "Jane Agent"
    assert "href='/portal/alpha/login'" in browser.client.get("/portal/alpha/").text

    alex = spark_platform.consumers("alpha")[1]
    callback, _ = browser.authorize(browser.start_login("/portal/alpha/login"), alex["Id"])
    assert callback.startswith("/portal/alpha/callback?")
    assert browser.client.get(callback).status_code == 303
    home = browser.client.get("/portal/alpha/").text
    assert f"Welcome, {alex['Name']}" in home
    assert "action='/portal/alpha/logout'" in home
    assert browser.client.get("/portal/alpha/listings").json["listings"] > 0
    assert browser.client.get("/portal/alpha/agent-view").json == {
        "agent": "Jane Agent",
        "consumer": alex["Name"],
    }

    out = browser.client.post("/portal/alpha/logout", headers={"Origin": "http://localhost"})
    assert out.headers["Location"] == "/portal/"
    assert browser.client.get("/portal/alpha/agent-view").json["consumer"] is None
    assert browser.client.get("/dashboard").json["agent"] == "Jane Agent"


def test_single_session_command(
    example: Callable[..., ModuleType],
    make_app: AppFactory,
    spark_platform: SparkPlatform,
) -> None:
    pair = spark_platform.issue_tokens()
    settings = dotenv_values(EXAMPLES / "single_session.env")
    assert settings["FLASK_SPARK_ACCESS_TOKEN"] == "<access token>"
    settings["FLASK_SPARK_ACCESS_TOKEN"] = pair["access_token"]
    settings["FLASK_SPARK_REFRESH_TOKEN"] = pair["refresh_token"]
    config = {key.removeprefix("FLASK_"): value for key, value in settings.items()}
    spark_platform.register_client(
        spark_platform.client_id, spark_platform.client_secret, (config["SPARK_REDIRECT_URI"],)
    )
    app = make_app(**config)
    example("single_session").register_commands(app)
    runner = app.test_cli_runner()

    first = runner.invoke(args=["count-listings"])
    assert first.exit_code == 0, first.output
    assert first.output == f"{len(LISTINGS)} listings\n"
    assert f"\n   {first.output}" in (DOCS / "single-session.rst").read_text()

    spark_platform.expire_all()
    again = runner.invoke(args=["count-listings"])
    assert again.exit_code == 0, again.output
    assert spark_platform.stats.refreshes == 1
    refresh = spark_platform.requests_for("grant")[-1]
    assert refresh.json is not None
    assert refresh.json["redirect_uri"] == "https://portal.example.com/callback"


def test_a_personal_token_as_the_docs_configure_it(
    make_app: AppFactory, spark_platform: SparkPlatform
) -> None:
    settings = dotenv_values(EXAMPLES / "personal_token.env")
    assert settings == {"FLASK_SPARK_ACCESS_TOKEN": "<personal access token>"}
    token = spark_platform.issue_tokens()["access_token"]
    app = make_app(SPARK_ACCESS_TOKEN=token)
    with app.app_context():
        assert spark_api.get("/my/account")[0]["Id"] == spark_platform.accounts[0]["Id"]
    assert spark_platform.requests_for("data")[0].auth_scheme == "Bearer"


def test_openid_as_the_docs_configure_it(
    make_app: AppFactory, browser_for: Any, spark_platform: SparkPlatform
) -> None:
    settings = dotenv_values(EXAMPLES / "openid.env")
    config = {key.removeprefix("FLASK_"): value for key, value in settings.items()}
    assert config == {"SPARK_AUTH_FLOW": "openid", "SPARK_OPENID_SCOPE": "openid profile email"}
    app = make_app(**config)

    @app.get("/who")
    def who() -> Any:
        return spark_account.name if spark_account else "nobody"

    browser: Browser = browser_for(app)
    assert browser.sign_in().status_code == 303
    assert browser.client.get("/who").text == spark_platform.accounts[0]["Name"]
    assert [r.path for r in spark_platform.requests_for("grant")] == ["/openid/token"]


def test_the_async_view_example(
    example: Callable[..., ModuleType],
    make_app: AppFactory,
    browser_for: Any,
    spark_platform: SparkPlatform,
) -> None:
    app = make_app()
    app.register_blueprint(example("async_views").bp)
    browser: Browser = browser_for(app)
    assert browser.client.get("/reports/mine").status_code == 302
    assert browser.sign_in().status_code == 303
    mine = browser.client.get("/reports/mine")
    assert mine.status_code == 200
    theirs = my_listings(spark_platform.accounts[0]["Id"])
    assert theirs
    assert mine.json == {"count": min(25, len(theirs))}


# -- grants: jobs, operators, the app's own users, stores ---------------------------------------

SAME_SITE = {"Sec-Fetch-Site": "same-origin"}


def file_session_app(platform: SparkPlatform, tmp_path: Path, **extra: Any) -> Flask:
    """An app with file sessions and Session(app) done, its instance folder in tmp_path:
    the samples below do the Spark part themselves."""
    app = Flask("grants_example", instance_path=str(tmp_path / "instance"))
    app.config.update(
        SESSION_TYPE="cachelib",
        SESSION_CACHELIB=FileSystemCache(str(tmp_path / "sessions")),
        **simulator_config(platform, **extra),
    )
    Session(app)
    return app


def test_a_job_works_for_a_signed_in_agent_and_shares_the_refresh(
    example: Callable[..., ModuleType],
    spark_platform: SparkPlatform,
    browser_for: Any,
    built: list[Flask],
    tmp_path: Path,
) -> None:
    """jobs.py as the grants page shows it: the command and the nightly job call the API
    with the agent's stored grant, one refresh serves the job and the browser, and a
    sign-out ends the job's access too."""
    jobs = example("jobs")
    app = file_session_app(spark_platform, tmp_path)
    jobs.init_app(app)
    built.append(app)

    @app.get("/count")
    def count() -> Any:
        return {
            "total": spark_api.request(
                "GET", "/listings", params={"_pagination": "count"}
            ).pagination["TotalRows"]
        }

    runner = app.test_cli_runner()
    jane = spark_platform.accounts[0]["Id"]
    never = runner.invoke(args=["count-listings-for", jane])
    assert never.exit_code == 1
    assert never.output == f"Error: {jane} has to sign in again\n"
    assert jobs.nightly_counts(app) == {}

    browser: Browser = browser_for(app)
    browser.sign_in()
    done = runner.invoke(args=["count-listings-for", jane])
    assert (done.exit_code, done.output) == (0, f"{len(LISTINGS)} listings\n")

    spark_platform.expire_all()
    assert runner.invoke(args=["count-listings-for", jane]).output == done.output
    assert browser.client.get("/count").json == {"total": len(LISTINGS)}
    assert spark_platform.stats.refreshes == 1  # the job's refresh served the browser

    assert jobs.nightly_counts(app) == {jane: len(LISTINGS)}
    with app.app_context():
        assert not spark_account  # no request, no browser: only client_for knows whom

    assert browser.client.post("/logout", headers=SAME_SITE).status_code == 303
    gone = runner.invoke(args=["count-listings-for", jane])
    assert gone.output == f"Error: {jane} has to sign in again\n"
    assert jobs.nightly_counts(app) == {}


def console_block(page: str, command: str) -> list[str]:
    """The lines a ``.. code-block:: console`` of ``page`` shows after ``$ <command>``."""
    text = (DOCS / page).read_text()
    start = text.index(f"   $ {command}\n") + len(f"   $ {command}\n")
    lines = []
    for line in text[start:].splitlines():
        if not line.startswith("   ") or line.startswith("   $ "):
            break
        lines.append(line[3:])
    return lines


def test_flask_spark_grants_list_and_revoke(
    make_app: AppFactory, browser_for: Any, spark_platform: SparkPlatform
) -> None:
    """The commands of the grants page, with the output it shows."""
    app = make_app()

    @app.get("/me")
    @spark_login_required
    def me() -> Any:
        return spark_api.get("/my/account")[0]["Name"]

    runner = app.test_cli_runner()
    assert runner.invoke(args=["spark", "grants", "list"]).output == "No grants.\n"
    browser: Browser = browser_for(app)
    browser.sign_in()
    jane = spark_platform.accounts[0]["Id"]

    shown = console_block("grants.rst", "flask --app portal spark grants list")
    listed = runner.invoke(args=["spark", "grants", "list"]).output.splitlines()
    assert listed[0] == shown[0]  # the header
    row = listed[1].split()
    assert (row[0], row[1], row[-2:]) == (jane, "idx", ["Jane", "Agent"])
    assert shown[1].split()[:2] == [jane, "idx"]
    assert shown[1].endswith("Jane Agent")
    with app.app_context():
        [info] = app.extensions["spark"].extension.grants.list()
    assert (info.account_id, info.scope, info.name, info.ended) == (
        jane,
        "idx",
        "Jane Agent",
        False,
    )

    revocations = spark_platform.stats.revocations
    revoked = runner.invoke(args=["spark", "grants", "revoke", jane])
    assert revoked.exit_code == 0
    assert revoked.output.splitlines() == console_block(
        "grants.rst", f"flask --app portal spark grants revoke {jane}"
    )
    assert spark_platform.stats.revocations == revocations + 1
    assert browser.client.get("/me").status_code == 302  # signed out in every browser
    again = runner.invoke(args=["spark", "grants", "revoke", jane])
    assert (again.exit_code, again.output) == (1, f"Error: No grant of account {jane}\n")


@pytest.mark.parametrize("ends_grant", [True, False])
def test_sign_out_ends_the_grant_or_only_this_browser(
    make_app: AppFactory, browser_for: Any, spark_platform: SparkPlatform, ends_grant: bool
) -> None:
    """SPARK_LOGOUT_ENDS_GRANT as the grants page tells it: two browsers of one agent
    share one grant; signing out of one ends it for both and revokes it (the default),
    or only unbinds that browser."""
    app = make_app(SPARK_LOGOUT_ENDS_GRANT=ends_grant)

    @app.get("/me")
    @spark_login_required
    def me() -> Any:
        return spark_api.get("/my/account")[0]["Name"]

    laptop: Browser = browser_for(app)
    phone: Browser = browser_for(app)
    laptop.sign_in()
    phone.sign_in()
    with app.app_context():
        assert len(app.extensions["spark"].extension.grants.list()) == 1  # one grant, shared
    assert laptop.client.get("/me").text == phone.client.get("/me").text == "Jane Agent"

    revocations = spark_platform.stats.revocations
    assert laptop.client.post("/logout", headers=SAME_SITE).status_code == 303
    assert laptop.client.get("/me").status_code == 302
    with app.app_context():
        left = app.extensions["spark"].extension.grants.list()
    if ends_grant:
        assert phone.client.get("/me").status_code == 302
        assert left == []
        assert spark_platform.stats.revocations == revocations + 1
    else:
        assert phone.client.get("/me").text == "Jane Agent"
        assert len(left) == 1
        assert spark_platform.stats.revocations == revocations


def test_flask_login_follows_the_flexmls_sign_in(
    example: Callable[..., ModuleType],
    spark_platform: SparkPlatform,
    browser_for: Any,
    built: list[Flask],
    tmp_path: Path,
) -> None:
    """accounts.py: Flask-Login's current_user is the app's user while the Flexmls
    sign-in lasts, spark_user the same user without Flask-Login, and a sign-out in
    another browser logs this one out of both."""
    accounts = example("accounts")
    app = file_session_app(spark_platform, tmp_path, SECRET_KEY="test-secret-key")
    accounts.init_app(app)
    built.append(app)
    laptop: Browser = browser_for(app)
    phone: Browser = browser_for(app)

    assert laptop.client.get("/").headers["Location"] == "/login?next=%2F"
    assert laptop.client.get("/whoami").json == {"signed_in": False}
    signed_in = laptop.sign_in("/")
    assert signed_in.headers["Location"] == "/"
    assert laptop.client.get("/").text == "Hello, Jane Agent (jane.agent@prairie-home.example)"
    assert laptop.client.get("/whoami").json == {
        "signed_in": True,
        "user": "Jane Agent",
        "office": spark_platform.accounts[0]["OfficeId"],
    }
    jane = spark_platform.accounts[0]["Id"]
    assert list(accounts.USERS) == [jane]

    phone.sign_in()
    assert phone.client.get("/").status_code == 200
    assert list(accounts.USERS) == [jane]  # the same user, made once
    assert phone.client.post("/logout", headers=SAME_SITE).status_code == 303
    assert phone.client.get("/").status_code == 302
    # The laptop still holds Flask-Login's _user_id, but the grant is over.
    assert laptop.client.get("/").status_code == 302
    assert laptop.client.get("/whoami").json == {"signed_in": False}


def docstring_block(module: ModuleType, after: str) -> list[str]:
    """The indented block of ``module``'s docstring that follows the line ``after``."""
    lines = (module.__doc__ or "").splitlines()
    start = lines.index(after) + 2
    block = []
    for line in lines[start:]:
        if line and not line.startswith("    "):
            break
        block.append(line[4:])
    while block and not block[-1]:
        block.pop()
    return block


def test_the_grants_page_copies_the_table_and_key_layouts() -> None:
    import flask_spark.stores.redis
    import flask_spark.stores.sql

    page = (DOCS / "grants.rst").read_text()
    for module, after in (
        (flask_spark.stores.sql, "Tables (``spark_`` prefix by default)::"),
        (
            flask_spark.stores.redis,
            "its bindings and their index share one Cluster hash slot)::",
        ),
    ):
        block = docstring_block(module, after)
        assert len(block) >= 4
        assert "\n".join(f"   {line}" if line else "" for line in block) in page, module


def test_an_engine_or_a_redis_client_of_the_apps_own(
    example: Callable[..., ModuleType],
    spark_platform: SparkPlatform,
    browser_for: Any,
    redis_server: RedisServer,
    redis_client: redis.Redis,
    built: list[Flask],
    tmp_path: Path,
) -> None:
    """stores.py: the app's database gets the spark_ tables beside its own (on SQLite
    the rate table in a file beside it); the Redis client gets the keys of the page's
    layout under the prefix given."""
    stores = example("stores")
    database = tmp_path / "app.db"
    with sqlite3.connect(database) as db:
        db.execute("CREATE TABLE agents (id TEXT PRIMARY KEY)")
    in_sql = file_session_app(spark_platform, tmp_path / "sql")
    stores.spark_in_the_apps_database(in_sql, f"sqlite:///{database}")
    built.append(in_sql)
    engine = in_sql.extensions["spark"].tokens.store.inner.engine  # the app's: it disposes it
    assert browser_for(in_sql).sign_in().status_code == 303
    with sqlite3.connect(database) as db:
        tables = {
            name for (name,) in db.execute("SELECT name FROM sqlite_master WHERE type='table'")
        }
        grants = db.execute("SELECT account_id, scope FROM spark_grants").fetchall()
    with sqlite3.connect(tmp_path / "app-rate.db") as db:
        beside = {
            name for (name,) in db.execute("SELECT name FROM sqlite_master WHERE type='table'")
        }
    assert tables == {"agents", "spark_grants", "spark_bindings", "spark_pending", "spark_markers"}
    assert beside == {"spark_rate"}
    assert grants == [(spark_platform.accounts[0]["Id"], "idx")]
    engine.dispose()

    in_redis = file_session_app(spark_platform, tmp_path / "redis")
    stores.spark_in_its_own_redis(in_redis, redis_server.url)
    built.append(in_redis)
    client = in_redis.extensions["spark"].tokens.store.inner.client  # the app's: it closes it
    assert browser_for(in_redis).sign_in().status_code == 303
    keys = sorted(key.decode() for key in redis_client.keys("*"))
    kinds = [
        re.sub(
            r"r:[0-9a-f]{32}$",
            "r:<bucket>",
            re.sub(r"\{[0-9a-f]{32}\}", "{<g>}", re.sub(r"[0-9a-f]{64}", "<sha256>", key)),
        )
        for key in keys
    ]
    # The pending sign-in was taken; the binding, its index and the grant remain, plus
    # the retired session id's marker and the key's rate window (the account read).
    assert sorted(kinds) == [
        "portal:spark:b:{<g>}:<sha256>",
        "portal:spark:bs:{<g>}",
        "portal:spark:g:{<g>}",
        "portal:spark:m:<sha256>",
        "portal:spark:r:<bucket>",
    ]
    client.close()


# -- testing your app ---------------------------------------------------------------------------


@pytest.mark.slow
def test_the_testing_page_example_passes() -> None:
    """docs/examples/test_portal.py is a user's test file: run it with pytest, as a user
    would, with only the fixtures the installed plugin provides."""
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            str(EXAMPLES / "test_portal.py"),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"},
    )
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    assert "5 passed" in run.stdout


# -- the reference pages against the code ------------------------------------------------------


def python_blocks() -> dict[str, list[str]]:
    """The ``.. code-block:: python`` samples written inline in the pages, by page."""
    found: dict[str, list[str]] = {}
    for page in sorted(DOCS.glob("*.rst")):
        text = page.read_text()
        for match in re.finditer(r"^\.\. code-block:: python\n\n((?:   .*\n|\n)+)", text, re.M):
            block = "\n".join(line[3:] for line in match.group(1).splitlines()).strip()
            found.setdefault(page.name, []).append(block)
    return found


def test_inline_python_samples_run(
    make_app: AppFactory, browser_for: Any, spark_platform: SparkPlatform
) -> None:
    """Python longer than a phrase lives in docs/examples; the one inline sample left, the
    single VOW portal's settings, runs here."""
    blocks = python_blocks()
    assert set(blocks) == {"portals.rst"}
    (block,) = blocks["portals.rst"]
    settings = type("Settings", (), {"config": {}})()
    exec(block, {"app": settings})  # noqa: S102 - the docs' own sample
    browser: Browser = browser_for(make_app(**settings.config))
    assert urlsplit(browser.start_login()).path == "/auth/vow/janeagent"
    callback, _ = browser.authorize(browser.start_login())
    assert browser.client.get(callback).status_code == 303


def documented_keys(page: str) -> dict[str, str | None]:
    """``.. py:data:: SPARK_X`` entries and their ``:value:`` (``None`` without one)."""
    entries: dict[str, str | None] = {}
    for match in re.finditer(r"^\.\. py:data:: (SPARK_\w+)\n((?:   .*\n)*)", page, re.M):
        value = re.search(r"^   :value: (.+)$", match.group(2), re.M)
        entries[match.group(1)] = value.group(1) if value else None
    return entries


def test_configuration_page_lists_every_key_with_its_default() -> None:
    source = (ROOT / "flask_spark" / "config.py").read_text()
    keys = set(re.findall(r'"(SPARK_[A-Z_]+)"', source))
    entries = documented_keys((DOCS / "configuration.rst").read_text())
    assert set(entries) == keys

    defaults = load_config({"SPARK_CLIENT_ID": "id", "SPARK_CLIENT_SECRET": "secret"})
    for key, value in entries.items():
        if key in {"SPARK_CLIENT_ID", "SPARK_CLIENT_SECRET"}:
            assert value is None, f"{key} is required: no default"
            continue
        assert value is not None, f"{key} has no documented :value:"
        actual = getattr(defaults, key.removeprefix("SPARK_").lower())
        assert ast.literal_eval(value) == actual, key


def test_performance_page_says_how_to_rerun_the_benchmark() -> None:
    page = " ".join((DOCS / "performance.rst").read_text().split())
    tox = (ROOT / "tox.ini").read_text()
    bench = (ROOT / "benchmarks" / "bench.py").read_text()
    assert "tox -e bench" in page
    assert "[testenv:bench]" in tox
    assert "python benchmarks/bench.py" in tox
    assert "python benchmarks/bench.py" in page
    assert '"--rounds", type=int, default=3000' in " ".join(bench.split())
    assert "measured in 3,000 rounds" in page
    assert "``--rounds`` changes the 3,000 rounds" in page
    for label in ("raw keep-alive floor (urllib3)", "Authlib"):
        assert label in bench
        assert label in page
    index = (DOCS / "index.rst").read_text()
    assert "\n   performance\n" in index


# -- the site ------------------------------------------------------------------------------------


@pytest.mark.slow
def test_docs_build_without_warnings(tmp_path: Path) -> None:
    # Sphinx, Furo and MyST come with the test extra, so a broken build fails the suite.
    build = subprocess.run(
        [
            sys.executable,
            "-m",
            "sphinx",
            "-W",
            "--keep-going",
            "-q",
            "-b",
            "html",
            "-d",
            str(tmp_path / "doctrees"),
            str(DOCS),
            str(tmp_path / "html"),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert build.returncode == 0, build.stdout[-3000:] + build.stderr[-3000:]
    html = tmp_path / "html"
    assert (html / "_static" / "flow.svg").exists()
    assert (html / "_images" / "dashboard.png").exists()
    # The figure the front page quotes is the one the performance page measured.
    quoted = re.search(r"takes (\d\.\d\dx) a raw keep-alive", (DOCS / "index.rst").read_text())
    assert quoted is not None
    assert quoted.group(1) in (html / "performance.html").read_text()
    assert quoted.group(1) in (html / "index.html").read_text()
    assert (html / "grants.html").exists()
    config_page = (html / "configuration.html").read_text()
    assert "SPARK_ONE_PORTAL_PER_SESSION" in config_page
    assert "Unreleased" in (html / "changelog.html").read_text()


def test_the_installation_page_lists_every_extra() -> None:
    import configparser

    setup = configparser.ConfigParser()
    setup.read(ROOT / "setup.cfg")
    extras = set(setup["options.extras_require"])
    page = (DOCS / "installation.rst").read_text()
    listed = set(re.findall(r"^   \* - ``([a-z]+)``$", page, re.MULTILINE))
    assert listed == extras
    testing = setup["options.extras_require"]["testing"].split()
    assert sorted(name.split(">=")[0] for name in testing) == ["cheroot", "pytest", "trustme"]
    readme = (ROOT / "README.md").read_text()
    assert all(f"`{extra}`" in readme for extra in extras - {"test"})
