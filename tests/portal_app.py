"""A small portal for the multi-process tests, run by real gunicorn workers.

Configured from ``FLASK_*`` environment variables (``FLASK_SPARK_API_URL`` becomes
``SPARK_API_URL``, ``FLASK_SPARK_GRANT_STORE`` the grant store), plus ``PORTAL_REDIS_URL``
for Redis sessions or ``PORTAL_CACHE_DIR`` for file sessions (the example portal's
embedded default), and ``PORTAL_INSTANCE_DIR`` for the instance folder (where the default
SQLite grant store lives).
"""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path
from typing import Any

import redis
from cachelib import FileSystemCache
from flask import Flask, jsonify, request, session
from flask_session import Session

from flask_spark import Spark, spark_account, spark_api, spark_login_required


def create_app() -> Flask:
    app = Flask(__name__, instance_path=os.environ.get("PORTAL_INSTANCE_DIR"))
    # Flask-Spark's own log lines go to gunicorn's error log, which the tests read.
    ours = logging.getLogger("flask_spark")
    ours.handlers = logging.getLogger("gunicorn.error").handlers
    ours.setLevel(logging.DEBUG)
    app.config.from_prefixed_env()
    if "PORTAL_CACHE_DIR" in os.environ:  # one host: file sessions, never pruned
        app.config["SESSION_TYPE"] = "cachelib"
        app.config["SESSION_CACHELIB"] = FileSystemCache(
            os.environ["PORTAL_CACHE_DIR"], threshold=0
        )
    else:
        app.config["SESSION_TYPE"] = "redis"
        app.config["SESSION_REDIS"] = redis.Redis.from_url(os.environ["PORTAL_REDIS_URL"])
    Session(app)
    Spark(app)

    @app.get("/")
    def home() -> Any:
        return "home"

    @app.get("/visit")
    def visit() -> Any:
        session["visits"] = session.get("visits", 0) + 1
        return "visited"

    @app.get("/whoami")
    def whoami() -> Any:
        return jsonify(account=spark_account.id if spark_account else None)

    @app.get("/account")
    @spark_login_required
    def account() -> Any:
        return jsonify(spark_api.get("/my/account"))

    @app.get("/app-account")
    def app_account() -> Any:
        return jsonify(spark_api.get("/my/account"))

    @app.get("/held")
    def held() -> Any:
        """Stays open until the test lets it go: says it arrived by creating
        ``<dir>/arrived``, then waits for ``<dir>/release`` (10 s at most)."""
        folder = Path(request.args["dir"])
        (folder / "arrived").touch()
        deadline = time.monotonic() + 10
        while not (folder / "release").exists() and time.monotonic() < deadline:
            time.sleep(0.005)
        return "held"

    return app
