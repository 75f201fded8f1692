"""Helpers for the browser tests: Debian's Chromium under Playwright, and the example portal
served in-process on a free loopback port."""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from werkzeug.serving import BaseWSGIServer, make_server

from example_app import close_app, create_app
from flask_spark.testing import SparkPlatform

#: Debian's Chromium, or another one named by ``SPARK_TEST_CHROMIUM``.
CHROMIUM = os.environ.get("SPARK_TEST_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]
ROOT = Path(__file__).resolve().parent.parent
ARTIFACTS = ROOT / "test-artifacts"


def chromium_missing() -> bool:
    return not os.access(CHROMIUM, os.X_OK)


def require_chromium() -> None:
    """Skip the calling test when Chromium is missing, with the reason in the summary;
    under CI (``CI`` set), fail instead: a green run must have run the browser tests."""
    if not chromium_missing():
        return
    reason = f"{CHROMIUM} is not installed"
    if os.environ.get("CI"):
        pytest.fail(f"{reason}, and under CI the browser tests must run", pytrace=False)
    pytest.skip(reason)


def _starting(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    raise RuntimeError("the portal is still starting")  # pragma: no cover


class PortalServer:
    """The example portal (demo mode, its own instance folder) behind werkzeug's threaded
    server on ``127.0.0.1:<free port>``, in this process so tests can reach its simulator."""

    def __init__(self, instance_path: Path, **config: Any) -> None:
        self.server: BaseWSGIServer = make_server("127.0.0.1", 0, _starting, threaded=True)
        self.port = self.server.port
        self.url = f"http://127.0.0.1:{self.port}"
        try:
            self.app: Flask = create_app(
                {
                    "PORT": self.port,
                    "SIMULATOR_PORT": 0,
                    "INSTANCE_PATH": str(instance_path),
                    **config,
                },
                environ={},
            )
        except BaseException:
            self.server.server_close()
            raise
        self.server.app = self.app
        self.thread = threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self.thread.start()

    @property
    def platform(self) -> SparkPlatform:
        """The embedded simulator's platform, to expire tokens and read counters."""
        platform: SparkPlatform | None = self.app.extensions["example_simulator"].platform
        assert platform is not None
        return platform

    @property
    def simulator_url(self) -> str:
        return str(self.app.extensions["example_simulator"].url)

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join()
        close_app(self.app)
