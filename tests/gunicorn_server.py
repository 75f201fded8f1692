"""Runs the test portal under real gunicorn workers on a free loopback port."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import urllib3

from .redis_server import free_port

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
