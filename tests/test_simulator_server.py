"""SimulatorServer, the command line and the pytest plugin: real sockets, keep-alive,
plain HTTP, clean shutdown, many threads and other processes, and silent logs."""

from __future__ import annotations

import gc
import json
import logging
import os
import re
import signal
import socket
import ssl
import subprocess
import sys
import textwrap
import threading
import time
import weakref
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import urllib3

from flask_spark.testing import Fault, SimulatorServer, SparkPlatform

from .test_simulator_support import UA, Wire, envelope

ENV = {**os.environ, "PYTHONWARNINGS": "error"}


@pytest.fixture
def wire(spark_platform: SparkPlatform) -> Iterator[Wire]:
    wire = Wire(spark_platform)
    yield wire
    wire.close()


def test_the_fixture_platform_is_served_over_https(spark_platform: SparkPlatform) -> None:
    assert re.fullmatch(r"https://127\.0\.0\.1:\d+", spark_platform.url)
    assert spark_platform.platform_url == spark_platform.api_url == spark_platform.url
    assert spark_platform.ca_file is not None
    assert Path(spark_platform.ca_file).read_text().startswith("-----BEGIN CERTIFICATE-----")


def test_keep_alive_reuses_one_connection(wire: Wire, spark_platform: SparkPlatform) -> None:
    token = wire.tokens()["access_token"]
    pool = urllib3.HTTPSConnectionPool(
        "127.0.0.1",
        int(spark_platform.url.rsplit(":", 1)[1]),
        ca_certs=spark_platform.ca_file,
        maxsize=1,
        block=True,
        retries=False,
    )
    headers = {**UA, "Authorization": f"OAuth {token}"}
    for _ in range(10):
        reply = pool.request("GET", "/v1/my/account", headers=headers)
        assert reply.status == 200
        assert reply.headers.get("Connection", "").lower() != "close"
        assert int(reply.headers["Content-Length"]) == len(reply.data)
    assert pool.num_connections == 1
    assert pool.num_requests == 10
    pool.close()


def test_certificate_is_valid_for_localhost_too(spark_platform: SparkPlatform) -> None:
    port = spark_platform.url.rsplit(":", 1)[1]
    http = urllib3.PoolManager(ca_certs=spark_platform.ca_file, retries=False)
    reply = http.request("GET", f"https://localhost:{port}/oauth2", redirect=False)
    assert reply.status == 400  # no parameters: an error page, over verified TLS
    http.clear()


def test_a_client_that_does_not_trust_the_ca_is_refused(spark_platform: SparkPlatform) -> None:
    http = urllib3.PoolManager(retries=False)
    with pytest.raises(urllib3.exceptions.SSLError):
        http.request("GET", spark_platform.url + "/v1/system")
    http.clear()


def test_start_stop_and_context_manager() -> None:
    platform = SparkPlatform()
    server = SimulatorServer(platform)
    with pytest.raises(RuntimeError):
        _ = server.url
    with pytest.raises(RuntimeError):
        _ = platform.url
    server.start()
    ca_file = server.ca_file
    assert ca_file is not None
    assert os.path.exists(ca_file)
    assert platform.url == server.url
    assert platform.ca_file == ca_file
    with pytest.raises(RuntimeError):
        server.start()
    with pytest.raises(RuntimeError):  # one server per platform at a time
        SimulatorServer(platform).start()
    server.stop()
    server.stop()
    assert not os.path.exists(ca_file)
    assert server.ca_file is None
    assert platform.ca_file is None
    with pytest.raises(RuntimeError):
        _ = platform.url
    with SimulatorServer(platform) as again:
        assert platform.url == again.url


def test_stop_closes_idle_keep_alive_connections_promptly() -> None:
    platform = SparkPlatform()
    server = SimulatorServer(platform).start()
    port = server.port
    idle = [Raw(platform) for _ in range(5)]
    for raw in idle:  # each leaves a keep-alive connection open
        raw.send(request_head("GET", "/", 0))
        assert raw.answer()[0] == 200
    busy = Raw(platform)  # a request in progress, waiting for a body that never comes
    busy.send(request_head("POST", "/v1/oauth2/grant", 100, Expect="100-continue"))
    assert busy.answer()[0] == 100
    started = time.monotonic()
    server.stop()
    assert time.monotonic() - started < 3
    # Every connection was closed by the server (a read that found none would wait for the
    # socket's 10 s timeout and fail), and every thread it started was joined.
    for raw in [*idle, busy]:
        assert raw.closed_by_server()
        raw.close()
    name = f"flask-spark-simulator:{port}"
    assert not [t for t in threading.enumerate() if t.name.split()[0] == name]


def test_a_stopped_server_lets_go_of_its_platform() -> None:
    platform = SparkPlatform()
    with SimulatorServer(platform):
        wire = Wire(platform)
        assert wire.request("GET", "/").status == 200
        wire.close()
    released = weakref.ref(platform)
    del platform, wire
    gc.collect()
    assert released() is None


ALL_INTERFACES = "0.0.0.0"  # noqa: S104 (what the simulator must refuse)


@pytest.mark.parametrize("host", [ALL_INTERFACES, "192.168.1.10", "example.com", "::"])
def test_only_loopback_hosts(host: str) -> None:
    with pytest.raises(ValueError, match="loopback"):
        SimulatorServer(SparkPlatform(), host=host)


def test_headers_named_with_an_underscore_are_dropped(
    wire: Wire, spark_platform: SparkPlatform
) -> None:
    token = wire.tokens()["access_token"]
    headers = {"Authorization": f"OAuth {token}", "X_SparkApi_User_Agent": "underscored"}
    reply = wire.request("GET", "/v1/system", headers=headers)
    assert reply.status == 400
    assert envelope(reply)["Code"] == 1016  # no X-SparkApi-User-Agent
    recorded = spark_platform.requests_for("data")[-1].headers
    assert "X-SparkApi-User-Agent" not in recorded
    assert "X_SparkApi_User_Agent" not in recorded


def test_busy_port_is_an_oserror(spark_platform: SparkPlatform) -> None:
    port = int(spark_platform.url.rsplit(":", 1)[1])
    server = SimulatorServer(SparkPlatform(), port=port, tls=False)
    with pytest.raises(OSError, match="listen"):
        server.start()


@pytest.mark.slow
def test_plain_http_does_not_need_trustme() -> None:
    script = textwrap.dedent(
        """
        import sys
        sys.modules["trustme"] = None  # importing it now fails
        import urllib3
        from flask_spark.testing import SimulatorServer, SparkPlatform
        with SimulatorServer(SparkPlatform(), tls=False) as server:
            assert server.url.startswith("http://127.0.0.1:"), server.url
            assert server.ca_file is None
            http = urllib3.PoolManager(retries=False)
            reply = http.request("GET", server.url + "/v1/system", redirect=False)
            print(reply.status, reply.json()["D"]["Code"])
            http.clear()
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, env=ENV
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["400", "1016"]  # no X-SparkApi-User-Agent


@pytest.mark.slow
def test_many_threads_with_keep_alive(wire: Wire, spark_platform: SparkPlatform) -> None:
    tokens = [wire.tokens()["access_token"] for _ in range(4)]
    failures: list[object] = []

    def hammer(n: int) -> None:
        mine = Wire(spark_platform)
        try:
            for i in range(25):
                reply = mine.api("GET", "/v1/listings", tokens[(n + i) % 4], fields={"_page": 2})
                if reply.status != 200 or len(reply.json()["D"]["Results"]) != 10:
                    failures.append(reply.status)
        except Exception as exc:  # collected for the assertion below
            failures.append(exc)
        finally:
            mine.close()

    threads = [threading.Thread(target=hammer, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert failures == []
    assert spark_platform.stats.data_calls == 200
    assert len(spark_platform.requests_for("data")) == 200


def test_another_process_can_sign_in_and_call(spark_platform: SparkPlatform) -> None:
    script = textwrap.dedent(
        """
        import json, sys
        from urllib.parse import parse_qs, urlencode, urlsplit
        import urllib3
        url, ca, client_id, secret = sys.argv[1:]
        http = urllib3.PoolManager(ca_certs=ca, retries=False)
        query = urlencode({"response_type": "code", "client_id": client_id,
                           "redirect_uri": "http://localhost/callback"})
        reply = http.request("GET", f"{url}/oauth2?{query}", redirect=False)
        code = parse_qs(urlsplit(reply.headers["Location"]).query)["code"][0]
        body = {"client_id": client_id, "client_secret": secret, "code": code,
                "grant_type": "authorization_code", "redirect_uri": "http://localhost/callback"}
        reply = http.request("POST", f"{url}/v1/oauth2/grant", body=json.dumps(body),
                             headers={"Content-Type": "application/json"})
        token = reply.json()["access_token"]
        headers = {"Authorization": f"OAuth {token}", "X-SparkApi-User-Agent": "child"}
        statuses = {http.request("GET", f"{url}/v1/system", headers=headers).status
                    for _ in range(30)}
        http.clear()
        print(json.dumps(sorted(statuses)))
        """
    )
    assert spark_platform.ca_file is not None
    args = [spark_platform.url, spark_platform.ca_file]
    args += [spark_platform.client_id, spark_platform.client_secret]
    children = [
        subprocess.Popen(
            [sys.executable, "-c", script, *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=ENV,
        )
        for _ in range(3)
    ]
    for child in children:
        out, err = child.communicate(timeout=60)
        assert child.returncode == 0, err
        assert json.loads(out) == [200]
    stats = spark_platform.stats
    assert (stats.authorizations, stats.code_exchanges, stats.data_calls) == (3, 3, 90)


def test_nothing_secret_reaches_logs_or_the_console(
    wire: Wire,
    spark_platform: SparkPlatform,
    caplog: pytest.LogCaptureFixture,
    capfd: pytest.CaptureFixture[str],
) -> None:
    caplog.set_level(logging.DEBUG)
    tokens = wire.tokens()
    access = tokens["access_token"]
    wire.api("GET", "/v1/my/account", access)
    wire.refresh(tokens["refresh_token"], client_secret="wrong")
    fresh = wire.refresh(tokens["refresh_token"]).json()
    wire.api("DELETE", f"/v1/oauth2/token/{fresh['access_token']}", fresh["access_token"])
    spark_platform.add_fault(Fault("any", "drop"))
    with pytest.raises(urllib3.exceptions.ProtocolError):
        wire.api("GET", f"/v1/listings?access_token={access}", access)
    untrusting = urllib3.PoolManager(retries=False)
    with pytest.raises(urllib3.exceptions.SSLError):
        untrusting.request("GET", f"{spark_platform.url}/v1/oauth2/token/{access}")
    untrusting.clear()
    assert spark_platform.wait_idle(5)
    out, err = capfd.readouterr()
    # urllib3 logs the test client's own request lines: only the server side counts.
    server_side = [r for r in caplog.records if not r.name.startswith("urllib3")]
    assert not [r for r in server_side if r.name.startswith("werkzeug")]
    assert [r.name for r in server_side] == ["flask_spark.testing"] * len(server_side)
    text = out + err + "\n".join(r.getMessage() for r in server_side)
    for value in spark_platform.issued_values():
        assert value not in text


def start_cli(*args: str) -> tuple[subprocess.Popen[str], str]:
    child = subprocess.Popen(
        [sys.executable, "-m", "flask_spark.testing", "--port", "0", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=ENV,
    )
    assert child.stdout is not None
    line = child.stdout.readline()
    return child, line


def stop_cli(child: subprocess.Popen[str]) -> str:
    child.send_signal(signal.SIGINT)
    out, err = child.communicate(timeout=20)
    assert child.returncode == 0, err
    return out + err


@pytest.mark.slow
def test_cli_serves_plain_http_with_a_consent_page() -> None:
    child, line = start_cli("--client-id", "demo-id", "--client-secret", "demo-secret")
    try:
        match = re.search(r"listening on (http://127\.0\.0\.1:\d+);", line)
        assert match, line
        assert "client_id=demo-id" in line
        assert "client_secret=demo-secret" in line
        assert "http://127.0.0.1:5000/callback" in line
        http = urllib3.PoolManager(retries=False)
        query = "response_type=code&client_id=demo-id&redirect_uri=http://localhost:5000/callback"
        reply = http.request("GET", f"{match[1]}/oauth2?{query}", redirect=False)
        assert reply.status == 200
        assert b"Authorize application" in reply.data
        http.clear()
    finally:
        rest = stop_cli(child)
    assert "Traceback" not in rest


@pytest.mark.slow
def test_cli_with_tls_auto_approve_and_redirect_uris(tmp_path: Path) -> None:
    child, line = start_cli(
        "--tls",
        "--auto-approve",
        "--redirect-uri",
        "http://127.0.0.1:8000/cb",
        "--redirect-uri",
        "http://127.0.0.1:8000/other",
        "--token-lifetime",
        "600",
    )
    try:
        match = re.search(r"listening on (https://\S+);.*CA certificate: (\S+);", line)
        assert match, line
        url, ca_file = match[1], match[2]
        assert "http://127.0.0.1:8000/cb http://127.0.0.1:8000/other" in line
        http = urllib3.PoolManager(ca_certs=ca_file, retries=False)
        query = "response_type=code&client_id=flask-spark-test&redirect_uri=http://127.0.0.1:8000/other"
        reply = http.request("GET", f"{url}/oauth2?{query}", redirect=False)
        assert reply.status == 302
        assert reply.headers["Location"].startswith("http://127.0.0.1:8000/other?code=")
        http.clear()
    finally:
        stop_cli(child)
    assert not os.path.exists(ca_file)


@pytest.mark.slow
def test_cli_refuses_a_public_host() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "flask_spark.testing", "--host", ALL_INTERFACES],
        capture_output=True,
        text=True,
        timeout=60,
        env=ENV,
    )
    assert done.returncode == 2
    assert "loopback" in done.stderr


@pytest.mark.slow
def test_cli_reports_a_busy_port(spark_platform: SparkPlatform) -> None:
    port = spark_platform.url.rsplit(":", 1)[1]
    done = subprocess.run(
        [sys.executable, "-m", "flask_spark.testing", "--port", port],
        capture_output=True,
        text=True,
        timeout=60,
        env=ENV,
    )
    assert done.returncode == 1
    assert f"error: cannot listen on 127.0.0.1:{port}: choose another with --port" in done.stderr
    assert "Traceback" not in done.stderr


@pytest.mark.slow
def test_plugin_fixtures_load_through_the_entry_point(tmp_path: Path) -> None:
    (tmp_path / "test_inner.py").write_text(
        textwrap.dedent(
            """
            import urllib3
            from flask_spark.testing import Fault

            def test_dirty(spark_platform, spark_simulator_server):
                assert spark_simulator_server.platform is spark_platform
                assert spark_platform.url == spark_simulator_server.url
                spark_platform.add_fault(Fault("any", "status", count=None))
                spark_platform.token_lifetime = 5
                http = urllib3.PoolManager(ca_certs=spark_platform.ca_file, retries=False)
                assert http.request("GET", spark_platform.url + "/oauth2").status == 500
                http.clear()

            def test_clean(spark_platform):
                assert spark_platform.requests == []
                assert spark_platform.token_lifetime == 86400
                http = urllib3.PoolManager(ca_certs=spark_platform.ca_file, retries=False)
                assert http.request("GET", spark_platform.url + "/oauth2").status == 400
                http.clear()
            """
        )
    )
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-W", "error"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        env=ENV,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "2 passed" in done.stdout


def test_socket_reuse_after_stop_is_possible() -> None:
    with SimulatorServer(SparkPlatform(), tls=False) as server:
        port = server.port
    with socket.create_server(("127.0.0.1", port)):  # the port is free again
        pass


def one_connection(platform: SparkPlatform) -> urllib3.HTTPSConnectionPool:
    return urllib3.HTTPSConnectionPool(
        "127.0.0.1",
        int(platform.url.rsplit(":", 1)[1]),
        ca_certs=platform.ca_file,
        maxsize=1,
        block=True,
        retries=False,
    )


def test_keep_alive_survives_bodies_the_app_does_not_read(
    wire: Wire, spark_platform: SparkPlatform
) -> None:
    token = wire.tokens()["access_token"]
    headers = {**UA, "Authorization": f"OAuth {token}", "Content-Type": "application/json"}
    pool = one_connection(spark_platform)
    body = json.dumps({"D": {"DisplayName": "x" * 5000}})
    # 405 before the body is looked at, then a normal write, then reads: one connection.
    assert pool.request("POST", "/v1/listings", body=body, headers=headers).status == 405
    assert pool.request("POST", "/v1/contacts", body=body, headers=headers).status == 201
    assert pool.request("GET", "/v1/system", headers=headers).status == 200
    assert (
        pool.request("DELETE", "/v1/oauth2/token/x", body=b"junk", headers=headers).status == 401
    )
    assert pool.request("GET", "/v1/contacts", headers=headers).status == 200
    assert pool.num_connections == 1
    assert [r.status for r in spark_platform.requests_for("data")] == [405, 201, 200, 200]
    pool.close()


def test_chunked_request_body_is_read_then_the_connection_closes(
    wire: Wire, spark_platform: SparkPlatform
) -> None:
    code = wire.code()
    body = {
        "client_id": spark_platform.client_id,
        "client_secret": spark_platform.client_secret,
        "grant_type": "authorization_code",
        "code": code,
        "redirect_uri": "http://localhost/callback",
    }
    pool = one_connection(spark_platform)
    raw = json.dumps(body).encode()
    reply = pool.urlopen(
        "POST",
        "/v1/oauth2/grant",
        body=iter([raw[:10], raw[10:]]),
        headers={"Content-Type": "application/json"},
        chunked=True,
    )
    assert reply.status == 200, reply.data
    assert reply.headers["Connection"] == "close"
    assert spark_platform.requests_for("grant")[0].json == body
    pool.close()


def test_oversized_body_is_refused_with_413(wire: Wire, spark_platform: SparkPlatform) -> None:
    token = wire.tokens()["access_token"]
    headers = {**UA, "Authorization": f"OAuth {token}", "Content-Type": "application/json"}
    reply = wire.request(
        "POST", "/v1/contacts", body=b"{" + b" " * (2 * 1024 * 1024) + b"}", headers=headers
    )
    assert reply.status == 413
    assert envelope(reply)["Code"] == 1050
    assert wire.api("GET", "/v1/system", token).status == 200


@pytest.mark.slow
def test_without_cheroot_the_platform_works_and_the_server_names_the_extra() -> None:
    """The platform is a WSGI application of its own; serving it needs the testing extra
    (run in a child whose cheroot cannot be imported)."""
    script = textwrap.dedent(
        """
        import sys
        sys.modules["cheroot"] = None  # as if it were not installed
        from werkzeug.test import Client
        from flask_spark.testing import SimulatorServer, SparkPlatform
        platform = SparkPlatform()
        print(Client(platform).get("/").status_code)
        try:
            SimulatorServer(platform, tls=False).start()
        except ModuleNotFoundError as exc:
            print(exc.name, exc)
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, env=ENV
    )
    assert done.returncode == 0, done.stderr
    status, error = done.stdout.splitlines()
    assert status == "200"
    assert error == (
        "cheroot The simulator's server is cheroot, which Flask-Spark's testing extra "
        "installs: pip install 'Flask-Spark[testing]'"
    )


@pytest.mark.slow
def test_https_without_trustme_names_the_extra_to_install(tmp_path: Path) -> None:
    """Without trustme, the simulator over HTTPS stops with an error that says which
    extra installs it (run in a child whose trustme cannot be imported)."""
    script = tmp_path / "no_trustme.py"
    script.write_text(
        "import sys\n"
        "sys.modules['trustme'] = None  # as if it were not installed\n"
        "from flask_spark.testing import SimulatorServer, SparkPlatform\n"
        "try:\n"
        "    SimulatorServer(SparkPlatform(), tls=True).start()\n"
        "except ModuleNotFoundError as exc:\n"
        "    print(exc.name, exc)\n"
    )
    result = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, timeout=60, check=True
    )

    assert result.stdout.strip() == (
        "trustme The simulator's HTTPS needs trustme, which Flask-Spark's testing extra "
        "installs: pip install 'Flask-Spark[testing]'"
    )


class Raw:
    """One TLS connection to the simulator, written and read byte by byte as sent."""

    def __init__(self, platform: SparkPlatform) -> None:
        assert platform.ca_file is not None
        context = ssl.create_default_context(cafile=platform.ca_file)
        port = int(platform.url.rsplit(":", 1)[1])
        sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        self.sock = context.wrap_socket(sock, server_hostname="127.0.0.1")
        self.file = self.sock.makefile("rb")

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def answer(self) -> tuple[int, dict[str, str], bytes]:
        """The next answer: its status, headers (lower-case names) and body."""
        status_line = self.file.readline()
        assert status_line.startswith(b"HTTP/1.1 "), status_line
        headers: dict[str, str] = {}
        while (line := self.file.readline()) not in {b"\r\n", b""}:
            name, _, value = line.decode("latin-1").partition(":")
            headers[name.strip().lower()] = value.strip()
        body = self.file.read(int(headers.get("content-length", "0")))
        return int(status_line.split()[1]), headers, body

    def closed_by_server(self) -> bool:
        return self.file.read(1) == b""

    def close(self) -> None:
        self.file.close()
        self.sock.close()


@pytest.fixture
def connect(spark_platform: SparkPlatform) -> Iterator[Callable[[], Raw]]:
    opened: list[Raw] = []

    def new() -> Raw:
        opened.append(Raw(spark_platform))
        return opened[-1]

    yield new
    for raw in opened:
        raw.close()


def request_head(method: str, path: str, length: int | str, **headers: str) -> bytes:
    lines = [f"{method} {path} HTTP/1.1", "Host: 127.0.0.1", f"Content-Length: {length}"]
    lines += [f"{name.replace('_', '-')}: {value}" for name, value in headers.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def test_expect_100_continue_is_answered_before_the_body_is_sent(
    wire: Wire, spark_platform: SparkPlatform, connect: Callable[[], Raw]
) -> None:
    body = json.dumps(
        {
            "client_id": spark_platform.client_id,
            "client_secret": spark_platform.client_secret,
            "grant_type": "authorization_code",
            "code": wire.code(),
            "redirect_uri": "http://localhost/callback",
        }
    ).encode()
    raw = connect()
    head = request_head(
        "POST",
        "/v1/oauth2/grant",
        len(body),
        Content_Type="application/json",
        Expect="100-continue",
    )
    raw.send(head)
    assert raw.answer() == (100, {}, b"")  # before a byte of the body
    raw.send(body)
    status, _, answer = raw.answer()
    assert status == 200
    assert "access_token" in json.loads(answer)


def test_a_client_stuck_in_its_tls_handshake_does_not_stall_the_others(
    spark_platform: SparkPlatform,
) -> None:
    port = int(spark_platform.url.rsplit(":", 1)[1])
    with (
        socket.create_connection(("127.0.0.1", port)),  # never says hello
        socket.create_connection(("127.0.0.1", port)) as halfway,
    ):
        halfway.sendall(b"\x16\x03\x01\x02\x00")  # the start of a ClientHello, no more
        wire = Wire(spark_platform, timeout=3.0)
        assert wire.request("GET", "/").status == 200
        wire.close()


def test_an_unread_body_up_to_16_mib_is_drained_and_the_connection_kept(
    wire: Wire, connect: Callable[[], Raw]
) -> None:
    token = wire.tokens()["access_token"]
    auth = {"Authorization": f"OAuth {token}", "X_SparkApi_User_Agent": "raw"}
    raw = connect()
    body = b"{" + b" " * (3 * 1024 * 1024) + b"}"  # over the 1 MiB the API reads
    raw.send(
        request_head("POST", "/v1/contacts", len(body), Content_Type="application/json", **auth)
        + body
    )
    status, headers, _ = raw.answer()
    assert status == 413
    assert headers.get("connection", "").lower() != "close"
    raw.send(request_head("GET", "/v1/system", 0, **auth))
    assert raw.answer()[0] == 200  # the same connection


@pytest.mark.parametrize("length", ["-1", "ten"])
def test_a_malformed_content_length_is_refused(connect: Callable[[], Raw], length: str) -> None:
    raw = connect()
    raw.send(request_head("POST", "/v1/oauth2/grant", length))
    assert raw.answer()[0] == 400
    assert raw.closed_by_server()


def test_a_bigger_unread_body_closes_the_connection(
    wire: Wire, connect: Callable[[], Raw]
) -> None:
    token = wire.tokens()["access_token"]
    raw = connect()
    length = 16 * 1024 * 1024 + 2
    head = request_head(
        "POST",
        "/v1/contacts",
        length,
        Content_Type="application/json",
        Authorization=f"OAuth {token}",
        X_SparkApi_User_Agent="raw",
    )
    raw.send(head + b"{")  # the rest never comes: the server does not wait for it
    status, headers, _ = raw.answer()
    assert status == 413
    assert headers["connection"].lower() == "close"
    assert raw.closed_by_server()


def test_the_simulator_command_without_cheroot_says_which_extra_to_install() -> None:
    """``python -m flask_spark.testing`` where cheroot cannot be imported: one line that
    names the extra, not a traceback."""
    script = (
        "import runpy, sys\n"
        "sys.modules['cheroot'] = None  # as if it were not installed\n"
        "sys.argv = ['flask_spark.testing', '--port', '0']\n"
        "runpy.run_module('flask_spark.testing', run_name='__main__')\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, env=ENV
    )
    assert done.returncode == 1
    assert done.stderr.splitlines() == [
        (
            "error: The simulator's server is cheroot, which Flask-Spark's testing extra "
            "installs: pip install 'Flask-Spark[testing]'"
        )
    ]
