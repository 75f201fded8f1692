"""The example portal without a browser: the commands that start it, the real-platform
settings (key, Redis sessions, VOW key, ``.env``), and the demo's safety nets."""

from __future__ import annotations

import os
import re
import selectors
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import redis
import urllib3
from flask import Flask

from example_app import close_app, create_app
from flask_spark.testing import SparkPlatform

from .browser import ROOT
from .conftest import Browser
from .redis_server import RedisServer, busy_port, free_port

BANNER = "this portal talks to Flask-Spark's built-in Spark simulator, not to Flexmls"


def clean_env(**extra: str) -> dict[str, str]:
    """This process's environment without any portal settings, plus ``extra``."""
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("SPARK_", "VOW_", "FLASK_"))
        and key not in {"REDIS_URL", "SECRET_KEY", "PORT", "SIMULATOR_PORT", "INSTANCE_PATH"}
    }
    env.update(PYTHONPATH=str(ROOT), PYTHONUNBUFFERED="1", **extra)
    return env


@pytest.fixture
def http() -> Iterator[urllib3.PoolManager]:
    pool = urllib3.PoolManager(retries=False, timeout=10)
    yield pool
    pool.clear()


@pytest.fixture
def apps() -> Iterator[Callable[..., Flask]]:
    """``create_app`` that closes what it made after the test."""
    made: list[Flask] = []

    def factory(config: dict[str, Any], environ: dict[str, str] | None = None) -> Flask:
        app = create_app(config, environ={} if environ is None else environ)
        made.append(app)
        return app

    yield factory
    for app in made:
        close_app(app)


def stop(process: subprocess.Popen[bytes]) -> int:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
    return process.wait(timeout=20)


def read_line(process: subprocess.Popen[bytes], timeout: float = 20) -> str:
    """The next line the process prints (or fail after ``timeout`` seconds)."""
    assert process.stdout is not None
    with selectors.DefaultSelector() as selector:
        selector.register(process.stdout, selectors.EVENT_READ)
        if not selector.select(timeout):
            raise AssertionError("the portal printed nothing")
    return process.stdout.readline().decode()


@pytest.mark.slow
def test_one_command_starts_the_demo_and_prints_the_url(
    tmp_path: Path, http: urllib3.PoolManager
) -> None:
    env = clean_env(INSTANCE_PATH=str(tmp_path / "instance"), SIMULATOR_PORT=str(free_port()))
    with subprocess.Popen(
        [sys.executable, "-m", "example_app", "--port", "0"],
        cwd=tmp_path,  # no .env of the checkout
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    ) as process:
        try:
            first = read_line(process)
            assert first.startswith("Flask-Spark example portal: open http://127.0.0.1:")
            url = first.split("open ", 1)[1].strip()
            assert url.endswith("/")

            home = http.request("GET", url)
            assert home.status == 200
            assert BANNER in home.data.decode()
            login = http.request("GET", url + "login", redirect=False)
            assert login.status == 302
            consent = http.request("GET", login.headers["Location"])
            assert consent.status == 200
            assert "Authorize application" in consent.data.decode()  # not auto-approved
        finally:
            assert stop(process) == 0
        assert process.stderr is not None
        log = process.stderr.read().decode()
    assert "Demo mode: started the built-in Spark simulator at http://127.0.0.1:" in log


@pytest.mark.slow
def test_a_busy_simulator_port_says_how_to_choose_another(tmp_path: Path) -> None:
    with busy_port() as port:
        env = clean_env(INSTANCE_PATH=str(tmp_path / "instance"), SIMULATOR_PORT=str(port))
        done = subprocess.run(
            [sys.executable, "-m", "example_app", "--port", "0"],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert done.returncode == 1
    assert f"error: The demo Spark simulator cannot listen on 127.0.0.1:{port}" in done.stderr
    assert "python -m example_app --port N" in done.stderr
    assert "Traceback" not in done.stderr
    assert done.stdout == ""  # no URL printed for a portal that is not running


@pytest.mark.slow
def test_flask_run_serves_the_same_portal(tmp_path: Path, http: urllib3.PoolManager) -> None:
    port = free_port()
    env = clean_env(
        INSTANCE_PATH=str(tmp_path / "instance"),
        SIMULATOR_PORT=str(free_port()),
        FLASK_RUN_PORT=str(port),  # `flask run` and the demo's callback URLs agree
    )
    with subprocess.Popen(
        [sys.executable, "-m", "flask", "--app", "example_app", "run"],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    ) as process:
        try:
            url = f"http://127.0.0.1:{port}/"
            home = wait_for(http, url, process)
            assert BANNER in home
            assert "only accepts sign-ins coming back" not in home
            login = http.request("GET", url + "login", redirect=False)
            query = parse_qs(urlsplit(login.headers["Location"]).query)
            assert query["redirect_uri"] == [f"http://127.0.0.1:{port}/callback"]
        finally:
            stop(process)


def wait_for(http: urllib3.PoolManager, url: str, process: subprocess.Popen[bytes]) -> str:
    """The page at ``url`` once the server answers (it is starting up)."""
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError("the server exited")
        try:
            reply = http.request("GET", url)
        except urllib3.exceptions.HTTPError:
            time.sleep(0.05)
            continue
        assert reply.status == 200
        return str(reply.data.decode())
    raise AssertionError(f"{url} did not answer within 20 s")


def real_env(platform: SparkPlatform, **extra: str) -> dict[str, str]:
    """The environment of a portal with a key for ``platform`` (over HTTPS)."""
    return {
        "SPARK_CLIENT_ID": platform.client_id,
        "SPARK_CLIENT_SECRET": platform.client_secret,
        "SPARK_PLATFORM_URL": platform.platform_url,
        "SPARK_API_URL": platform.api_url,
        "SPARK_CA_CERTS": str(platform.ca_file),
        "SECRET_KEY": "from-the-environment",
        **extra,
    }


def test_with_a_key_it_signs_in_at_the_configured_platform_with_redis_sessions(
    apps: Callable[..., Flask],
    spark_platform: SparkPlatform,
    redis_server: RedisServer,
    redis_client: redis.Redis[bytes],
    browser_for: Callable[[Flask], Browser],
    tmp_path: Path,
) -> None:
    app = apps(
        {"INSTANCE_PATH": str(tmp_path)},
        real_env(spark_platform, REDIS_URL=redis_server.url),
    )
    browser = browser_for(app)
    home = browser.client.get("/").text
    assert "Sign in with Flexmls" in home
    assert "Demo mode" not in home
    assert "/portal/" not in home  # no VOW key, no VOW portals

    response = browser.sign_in("/dashboard")
    assert response.status_code == 303
    dashboard = browser.client.get(response.headers["Location"]).text
    assert "Jane Agent" in dashboard
    assert "Page 1 of 6" in dashboard
    assert redis_client.keys("session:*")  # the session lives in Redis
    assert not (tmp_path / "secret_key").exists()  # SECRET_KEY came from the environment


def test_agents_sign_in_with_openid_connect_when_the_settings_say_so(
    apps: Callable[..., Flask],
    spark_platform: SparkPlatform,
    browser_for: Callable[[Flask], Browser],
    tmp_path: Path,
) -> None:
    env = real_env(spark_platform, SPARK_AUTH_FLOW="openid")
    app = apps({"INSTANCE_PATH": str(tmp_path)}, env)
    browser = browser_for(app)
    location = browser.start_login("/login?next=/dashboard")
    assert urlsplit(location).path == "/openid/authorize"
    callback, _ = browser.authorize(location)
    assert browser.client.get(callback).status_code == 303
    assert "Jane Agent" in browser.client.get("/dashboard").text
    assert [r.path for r in spark_platform.requests_for("grant")] == ["/openid/token"]


def test_with_a_vow_key_the_portals_sign_in_at_their_own_endpoint(
    apps: Callable[..., Flask],
    spark_platform: SparkPlatform,
    browser_for: Callable[[Flask], Browser],
    tmp_path: Path,
) -> None:
    spark_platform.register_client(
        "vow-key", "vow-secret", ["http://localhost/portal/alpha/callback"]
    )
    env = real_env(
        spark_platform, SPARK_VOW_CLIENT_ID="vow-key", SPARK_VOW_CLIENT_SECRET="vow-secret"
    )
    app = apps({"INSTANCE_PATH": str(tmp_path)}, env)
    browser = browser_for(app)
    page = browser.client.get("/portal/alpha/").text
    assert "Alpha Home Search" in page

    location = browser.start_login("/portal/alpha/login?next=/portal/alpha/")
    assert urlsplit(location).path == "/auth/vow/alpha"
    callback, _ = browser.authorize(location)
    response = browser.client.get(callback)
    assert response.headers["Location"] == "/portal/alpha/"
    consumer = spark_platform.consumers("alpha")[0]
    assert f"Welcome, {consumer['Name']}" in browser.client.get("/portal/alpha/").text
    assert "Sign in with Flexmls" in browser.client.get("/").text  # the agent portal: not


def test_one_portal_app_signs_agents_in_with_openid_and_consumers_with_oauth2(
    apps: Callable[..., Flask],
    spark_platform: SparkPlatform,
    browser_for: Callable[[Flask], Browser],
    tmp_path: Path,
) -> None:
    spark_platform.register_client(
        "vow-key", "vow-secret", ["http://localhost/portal/alpha/callback"]
    )
    env = real_env(
        spark_platform,
        SPARK_AUTH_FLOW="openid",
        SPARK_VOW_CLIENT_ID="vow-key",
        SPARK_VOW_CLIENT_SECRET="vow-secret",
    )
    app = apps({"INSTANCE_PATH": str(tmp_path)}, env)
    browser = browser_for(app)
    alex = spark_platform.consumers("alpha")[1]
    assert browser.sign_in("/dashboard").status_code == 303
    callback, _ = browser.authorize(browser.start_login("/portal/alpha/login"), alex["Id"])
    assert browser.client.get(callback).status_code == 303
    assert [r.path for r in spark_platform.requests_for("grant")] == [
        "/openid/token",
        "/v1/oauth2/grant",
    ]

    portal = browser.client.get("/portal/alpha/").text
    assert f"Welcome, {alex['Name']}" in portal
    assert "Jane Agent" in browser.client.get("/dashboard").text
    # Each site's header signs out of its own sign-in only.
    form = re.search(r'<form class="sign-out" method="post" action="([^"]+)"', portal)
    assert form is not None
    assert form.group(1) == "/portal/alpha/logout"
    out = browser.client.post(form.group(1), headers={"Origin": "http://localhost"})
    assert out.headers["Location"] == "/portal/"
    assert "Sign in with Flexmls" in browser.client.get("/portal/alpha/").text
    assert "Jane Agent" in browser.client.get("/dashboard").text


def test_settings_come_from_a_dotenv_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, apps: Callable[..., Flask]
) -> None:
    names = ("SPARK_CLIENT_ID", "SPARK_CLIENT_SECRET", "SPARK_PLATFORM_URL", "INSTANCE_PATH")
    for name in names:  # remember each as unset, so loading .env is undone after the test
        monkeypatch.setenv(name, "")
        monkeypatch.delenv(name)
    (tmp_path / ".env").write_text(
        "SPARK_CLIENT_ID=dotenv-key\n"
        "SPARK_CLIENT_SECRET=dotenv-secret\n"
        "SPARK_PLATFORM_URL=https://platform.example.test\n"
        f"INSTANCE_PATH={tmp_path / 'instance'}\n"
    )
    monkeypatch.chdir(tmp_path)

    app = create_app()
    try:
        client = app.test_client()
        assert "Demo mode" not in client.get("/").text
        location = client.get("/login").headers["Location"]
        assert location.startswith("https://platform.example.test/oauth2?")
        assert parse_qs(urlsplit(location).query)["client_id"] == ["dotenv-key"]
    finally:
        close_app(app)


def test_home_warns_when_served_on_another_port_than_port(
    apps: Callable[..., Flask], tmp_path: Path
) -> None:
    port = free_port()
    app = apps({"PORT": port, "SIMULATOR_PORT": 0, "INSTANCE_PATH": str(tmp_path)})
    client = app.test_client()

    elsewhere = client.get("/", base_url="http://127.0.0.1:9").text
    assert "only accepts sign-ins coming back to the port in" in elsewhere
    for host in ("127.0.0.1", "localhost"):
        here = client.get("/", base_url=f"http://{host}:{port}").text
        assert BANNER in here
        assert "only accepts sign-ins coming back" not in here


def test_unknown_vow_portals_are_not_found(apps: Callable[..., Flask], tmp_path: Path) -> None:
    app = apps({"PORT": free_port(), "SIMULATOR_PORT": 0, "INSTANCE_PATH": str(tmp_path)})
    client = app.test_client()
    assert client.get("/portal/redriver/").status_code == 200
    assert client.get("/portal/elsewhere/").status_code == 404
    assert client.get("/portal/elsewhere/login").status_code == 404
    assert "Redriver Home Search" in client.get("/portal/").text


def test_the_demo_secret_key_is_made_once_and_kept(tmp_path: Path) -> None:
    config = {"PORT": free_port(), "SIMULATOR_PORT": 0, "INSTANCE_PATH": str(tmp_path)}
    first = create_app(config, environ={})
    close_app(first)
    second = create_app(config, environ={})
    close_app(second)
    assert first.config["SECRET_KEY"] == second.config["SECRET_KEY"]
    assert len(first.config["SECRET_KEY"]) == 64
    assert (tmp_path / "secret_key").stat().st_mode & 0o777 == 0o600


@pytest.fixture
def signed_in_portal(
    apps: Callable[..., Flask],
    spark_platform: SparkPlatform,
    browser_for: Callable[[Flask], Browser],
    tmp_path: Path,
) -> Browser:
    """The example portal on the HTTPS simulator, with Jane Agent signed in."""
    app = apps({"INSTANCE_PATH": str(tmp_path)}, real_env(spark_platform))
    browser = browser_for(app)
    assert browser.sign_in("/dashboard").status_code == 303
    return browser


def test_http_errors_get_the_portals_own_pages(
    apps: Callable[..., Flask],
    spark_platform: SparkPlatform,
    browser_for: Callable[[Flask], Browser],
    tmp_path: Path,
) -> None:
    app = apps({"INSTANCE_PATH": str(tmp_path)}, real_env(spark_platform))

    @app.get("/boom")
    def boom() -> str:
        raise RuntimeError("a bug in a view")

    browser = browser_for(app)
    assert browser.sign_in("/dashboard").status_code == 303
    client = browser.client

    pages = {
        404: client.get("/no/such/page"),
        405: client.post("/dashboard", headers={"Origin": "http://localhost"}),
        414: client.get("/dashboard?city=" + "x" * 9000),
        500: client.get("/boom"),
    }
    titles = {
        404: "Page not found",
        405: "This page cannot do that",
        414: "This address is too long",
        500: "Something went wrong",
    }
    for status, response in pages.items():
        assert response.status_code == status
        assert f"<h1>{titles[status]}</h1>" in response.text
        assert 'class="brand"' in response.text  # the portal's header, not Werkzeug's page
        assert "Back to the home page" in response.text
    assert "a bug in a view" not in pages[500].text
    assert "Traceback" not in pages[500].text


def test_listing_search_reads_what_it_can_and_quotes_it(
    signed_in_portal: Browser, spark_platform: SparkPlatform
) -> None:
    client = signed_in_portal.client
    page = client.get("/dashboard?city=fargo&min_price=abc&max_price=$300,000&min_beds=3")
    assert page.status_code == 200
    sent = spark_platform.requests_for("data")[-1]
    # min_price=abc is left out; "$300,000" is read as 300000; the city is a quoted value.
    assert sent.query["_filter"] == "City Eq 'Fargo' And ListPrice Le 300000 And BedsTotal Ge 3"
    hostile = client.get("/dashboard?city=Fargo' Or ListPrice Gt '0")
    assert hostile.status_code == 200
    assert spark_platform.requests_for("data")[-1].query["_filter"] == (
        "City Eq 'Fargo\\' Or Listprice Gt \\'0'"
    )
    assert "No listings match this search." in hostile.text
    # An unknown sort is ignored, a known one becomes _orderby.
    client.get("/dashboard?sort=Password")
    assert "_orderby" not in spark_platform.requests_for("data")[-1].query
    client.get("/dashboard?sort=-price")
    assert spark_platform.requests_for("data")[-1].query["_orderby"] == "-ListPrice"


def test_listing_pages_answer_404_for_what_is_not_a_listing(signed_in_portal: Browser) -> None:
    client = signed_in_portal.client
    assert client.get("/listings/not-an-id").status_code == 404
    assert client.get("/listings/20240115000000000000000000").status_code == 404
    assert client.get("/dashboard?page=999").headers["Location"] == "/dashboard?page=6"
    assert client.get("/dashboard?page=999&mine=1").headers["Location"] == (
        "/dashboard?page=2&mine=1"
    )
