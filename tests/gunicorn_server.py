"""Runs the test portal under real gunicorn workers on a free loopback port."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import urllib3

from flask_spark.testing import Fault, SparkPlatform

from .redis_server import RedisServer, free_port

ROOT = Path(__file__).resolve().parent.parent


class GunicornServer:
    """``gunicorn 'tests.portal_app:create_app()'`` with ``workers`` x ``threads``."""

    def __init__(self, env: dict[str, Any], workers: int = 3, threads: int = 4) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = {**os.environ, **{k: str(v) for k, v in env.items()}}
        self.workers = workers
        self.threads = threads
        self.process: subprocess.Popen[bytes] | None = None
        self.log = ROOT / "test-artifacts" / f"gunicorn-{self.port}.log"

    def start(self) -> None:
        self.log.parent.mkdir(exist_ok=True)
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "gunicorn",
                "--bind",
                f"127.0.0.1:{self.port}",
                "--workers",
                str(self.workers),
                "--threads",
                str(self.threads),
                "--log-level",
                "debug",
                "--no-control-socket",
                "--error-logfile",
                str(self.log),
                "tests.portal_app:create_app()",
            ],
            cwd=ROOT,
            env=self.env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        http = urllib3.PoolManager(retries=False, timeout=1.0)
        deadline = time.monotonic() + 30
        try:
            while time.monotonic() < deadline:
                if self.process.poll() is not None:
                    raise RuntimeError(f"gunicorn exited; see {self.log}")
                try:
                    if http.request("GET", self.url + "/").status == 200:
                        return
                except urllib3.exceptions.HTTPError:
                    pass
                time.sleep(0.05)
            raise RuntimeError("gunicorn did not answer within 30 s")
        finally:
            http.clear()

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=30)
        self.process = None


#: The portals' SECRET_KEY, from which they derive the key their tokens are sealed with.
PORTAL_SECRET_KEY = "gunicorn-test-secret"


def portal_env(platform: SparkPlatform, redis_server: RedisServer, **extra: Any) -> dict[str, Any]:
    """Environment for ``tests.portal_app`` pointed at the simulator and the test Redis;
    ``extra`` keys become ``FLASK_<key>``, their values JSON unless strings (as Flask's
    ``from_prefixed_env`` reads them back: ``None`` becomes ``null``)."""
    env = {
        "FLASK_SECRET_KEY": PORTAL_SECRET_KEY,
        "FLASK_SPARK_CLIENT_ID": platform.client_id,
        "FLASK_SPARK_CLIENT_SECRET": platform.client_secret,
        "FLASK_SPARK_PLATFORM_URL": platform.platform_url,
        "FLASK_SPARK_API_URL": platform.api_url,
        "FLASK_SPARK_CA_CERTS": platform.ca_file,
        "FLASK_SPARK_USER_AGENT": "Flask-Spark gunicorn tests",
        "PORTAL_REDIS_URL": redis_server.url,
    }
    env.update(
        {f"FLASK_{k}": v if isinstance(v, str) else json.dumps(v) for k, v in extra.items()}
    )
    return env


def start_portals(
    platform: SparkPlatform,
    env: dict[str, Any],
    running: list[GunicornServer],
    count: int = 1,
) -> list[GunicornServer]:
    """Start ``count`` portals of 3 workers x 8 threads on ``env``, their callbacks
    registered with ``platform``; each is added to ``running`` (the ``servers``
    fixture's list, which stops them and checks their logs)."""
    made = [GunicornServer(env, workers=3, threads=8) for _ in range(count)]
    platform.register_client(
        platform.client_id, platform.client_secret, [f"{s.url}/callback" for s in made]
    )
    for server in made:
        server.start()
        running.append(server)
    return made


def bursts_at_expiry(
    platform: SparkPlatform,
    http: urllib3.PoolManager,
    url: str,
    headers: dict[str, str],
    rounds: int = 5,
    size: int = 16,
) -> tuple[int, list[int]]:
    """``rounds`` times: expire every token, slow the next refresh by 0.1 s, and send
    ``size`` requests to ``url`` at once. Returns how many were served and the refreshes
    the platform saw in each round."""
    served, refreshes = 0, []
    for _ in range(rounds):
        before = platform.stats.refreshes
        platform.expire_all()
        platform.add_fault(Fault("grant", "delay", delay=0.1))
        statuses = burst(http, [url] * size, headers)
        served += statuses.count(200)
        refreshes.append(platform.stats.refreshes - before)
    return served, refreshes


def burst(http: urllib3.PoolManager, urls: list[str], headers: dict[str, str]) -> list[int]:
    """One request per URL from as many threads, released together; their statuses."""
    barrier = threading.Barrier(len(urls))
    statuses: list[int] = []
    lock = threading.Lock()

    def hit(url: str) -> None:
        barrier.wait()
        status = http.request("GET", url, headers=headers, redirect=False).status
        with lock:
            statuses.append(status)

    threads = [threading.Thread(target=hit, args=(u,)) for u in urls]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return statuses
