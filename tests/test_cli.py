"""``flask spark check`` against the simulator over HTTPS, and ``flask spark simulate`` run
as a real ``flask`` command that an app then signs in against."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import types
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import Result
from flask import Flask

from flask_spark import Spark
from flask_spark.testing import SparkPlatform

from .browser import ROOT
from .conftest import AppFactory, Browser
from .redis_server import busy_port, free_port


def check(app: Flask, *args: str) -> Result:
    return app.test_cli_runner().invoke(
        args=["spark", "check", "--app-url", "http://localhost", *args]
    )


def lines(result: Result) -> list[str]:
    return [line.strip() for line in result.output.splitlines()]


def test_check_passes_on_good_settings(make_app: AppFactory) -> None:
    result = check(make_app())
    assert result.exit_code == 0, result.output
    found = lines(result)
    assert found[0].startswith("spark (key ")
    assert found[1].startswith("ok   settings: role idx, OAuth 2, platform https://127.0.0.1:")
    assert found[1].endswith("redirect URI http://localhost/callback")
    assert found[2].startswith("ok   authorization endpoint: https://127.0.0.1:")
    assert (
        found[3]
        == "ok   token endpoint: accepted the key (it refused the made-up code: invalid_grant)"
    )
    assert found[4].startswith("ok   API: https://127.0.0.1:")
    assert found[-1] == "Everything answered as it should."


def test_check_passes_on_openid_connect(make_app: AppFactory) -> None:
    result = check(make_app(SPARK_AUTH_FLOW="openid"))
    assert result.exit_code == 0, result.output
    assert "OpenID Connect" in lines(result)[1]


def test_check_explains_a_redirect_uri_the_platform_does_not_take(make_app: AppFactory) -> None:
    app = make_app()
    result = app.test_cli_runner().invoke(
        args=["spark", "check", "--app-url", "http://127.0.0.1:5999"]
    )
    assert result.exit_code == 1
    [failure] = [line for line in lines(result) if line.startswith("FAIL")]
    assert failure == (
        "FAIL authorization endpoint: the platform does not accept "
        "http://127.0.0.1:5999/callback as a redirect URI for the key "
        f"{app.config['SPARK_CLIENT_ID']}. Register exactly this URI with the key (scheme, "
        "host, port and path must all match), or set SPARK_REDIRECT_URI to one that is "
        "registered"
    )
    assert "1 check failed." in result.output


def test_check_reports_a_wrong_secret_without_showing_it(make_app: AppFactory) -> None:
    result = check(make_app(SPARK_CLIENT_SECRET="not-the-secret-at-all"))
    assert result.exit_code == 1
    assert (
        "FAIL token endpoint: refused the key (invalid_client): check SPARK_CLIENT_ID and "
        "SPARK_CLIENT_SECRET"
    ) in lines(result)
    assert "not-the-secret-at-all" not in result.output


def test_check_reports_an_api_it_cannot_reach(make_app: AppFactory) -> None:
    result = check(make_app(SPARK_API_URL=f"https://127.0.0.1:{free_port()}"))
    assert result.exit_code == 1
    failures = [line for line in lines(result) if line.startswith("FAIL")]
    # The token endpoint is on the API host too.
    assert [line.split(":")[0] for line in failures] == ["FAIL token endpoint", "FAIL API"]
    assert all("could not be reached" in line for line in failures)


def test_check_of_a_vow_key_tries_the_portal_it_is_given(
    make_app: AppFactory, spark_platform: SparkPlatform
) -> None:
    spark_platform.register_client("vow-key", "vow-secret", ["http://localhost/alpha/callback"])

    def portal() -> str | None:
        from flask import request

        return (request.view_args or {}).get("portal")

    app = make_app(
        spark=Spark(url_prefix="/<portal>", portal_loader=portal),
        SPARK_ROLE="vow",
        SPARK_CLIENT_ID="vow-key",
        SPARK_CLIENT_SECRET="vow-secret",
    )
    without = check(app)
    assert without.exit_code == 1
    assert "The 'spark' instance's callback URL needs a portal: pass --portal" in without.output
    result = check(app, "--portal", "alpha")
    assert result.exit_code == 0, result.output
    assert lines(result)[1].endswith("redirect URI http://localhost/alpha/callback")
    other = check(app, "--portal", "beta")  # not registered with the key
    assert other.exit_code == 1
    assert "http://localhost/beta/callback as a redirect URI" in other.output


#: The quick start app's settings, as a user gives them to ``flask``.
QUICKSTART_ENV = {
    **os.environ,
    "FLASK_SPARK_CLIENT_ID": "my-dev-key",
    "FLASK_SPARK_CLIENT_SECRET": "my-dev-secret",
    "FLASK_SPARK_GRANT_STORE": '"memory://"',
    "FLASK_SECRET_KEY": '"dev"',
    "PYTHONPATH": str(ROOT),
}


def simulate_command(*options: str) -> list[str]:
    """``flask --app quickstart spark simulate`` with ``options``."""
    app = str(ROOT / "docs" / "examples" / "quickstart.py") + ":create_app"
    return [sys.executable, "-m", "flask", "--app", app, "spark", "simulate", *options]


@pytest.fixture
def simulate(tmp_path: Path) -> Iterator[tuple[subprocess.Popen[str], list[str]]]:
    """``flask spark simulate --tls`` for the quickstart app, as a user runs it."""
    app_port = free_port()
    errors = (tmp_path / "stderr.txt").open("w")  # its log lines
    process = subprocess.Popen(
        simulate_command(
            "--tls", "--auto-approve", "--port", "0", "--app-url", f"http://127.0.0.1:{app_port}"
        ),
        cwd=tmp_path,
        env=QUICKSTART_ENV,
        stdout=subprocess.PIPE,
        stderr=errors,
        text=True,
    )
    printed: list[str] = []
    assert process.stdout is not None
    # A command that never prints its banner is killed, which ends the reads below.
    deadline = threading.Timer(60, process.kill)
    deadline.start()
    try:
        while not any(line.startswith("  SPARK_PLATFORM_URL=") for line in printed):
            line = process.stdout.readline()
            assert line, f"exited {process.wait()}: {printed}"
            printed.append(line.rstrip("\n"))
        deadline.cancel()
        yield process, printed
    finally:
        deadline.cancel()
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            process.wait(timeout=30)
        process.stdout.close()
        errors.close()


@pytest.mark.slow
def test_simulate_serves_the_apps_keys_and_prints_the_settings_to_use(
    simulate: tuple[subprocess.Popen[str], list[str]],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.chdir(tmp_path)  # the quickstart app keeps its sessions in ./sessions
    process, printed = simulate
    assert re.fullmatch(
        r"Spark platform simulator listening on https://127\.0\.0\.1:\d+ \(Ctrl-C to stop\)\.",
        printed[0],
    ), printed
    assert printed[1] == "It accepts the app's keys and these redirect URIs:"
    assert re.fullmatch(r"  http://127\.0\.0\.1:\d+/callback", printed[2])
    assert printed[3] == printed[2].replace("127.0.0.1", "localhost")
    settings = dict(part.split("=", 1) for part in printed[-1].split())
    assert settings.keys() == {"SPARK_PLATFORM_URL", "SPARK_API_URL", "SPARK_CA_CERTS"}

    # The app, pointed at it with those settings, signs in.
    sys.path.insert(0, str(ROOT / "docs" / "examples"))
    try:
        import quickstart
    finally:
        sys.path.remove(str(ROOT / "docs" / "examples"))
    callback = printed[2].strip()
    app = quickstart.create_app(
        SECRET_KEY="dev",
        SPARK_CLIENT_ID="my-dev-key",
        SPARK_CLIENT_SECRET="my-dev-secret",
        SPARK_REDIRECT_URI=callback,
        SPARK_GRANT_STORE="memory://",
        **settings,
    )
    platform: Any = types.SimpleNamespace(  # the simulator runs in the other process
        platform_url=settings["SPARK_PLATFORM_URL"],
        ca_file=settings["SPARK_CA_CERTS"],
        auto_approve=True,  # --auto-approve
    )
    browser = Browser(app.test_client(), platform)
    assert browser.sign_in("/").status_code == 303
    assert browser.client.get("/").text == "Signed in as Jane Agent"
    app.extensions["spark"].transport.close()

    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=30) == 0


@pytest.mark.slow
def test_simulate_names_the_option_when_the_port_is_taken(tmp_path: Path) -> None:
    with busy_port() as port:
        done = subprocess.run(
            simulate_command("--port", str(port)),
            cwd=tmp_path,
            env=QUICKSTART_ENV,
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert done.returncode == 1
    assert "choose another with --port (0 picks a free one)" in done.stderr
    assert "Traceback" not in done.stderr
