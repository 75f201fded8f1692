"""A small portal for the multi-process tests, run by real gunicorn workers.

Configured from ``FLASK_*`` environment variables (``FLASK_SPARK_API_URL`` becomes
``SPARK_API_URL``), plus ``PORTAL_REDIS_URL`` for Redis sessions or ``PORTAL_CACHE_DIR`` for
file sessions.
"""

from __future__ import annotations

import os
from typing import Any

import redis
from cachelib import FileSystemCache
from flask import Flask, jsonify
from flask_session import Session

from flask_spark import Spark, spark_api, spark_login_required


def create_app() -> Flask:
    app = Flask(__name__)
    app.config.from_prefixed_env()
    if "PORTAL_CACHE_DIR" in os.environ:  # one host: file sessions and file locks
        app.config["SESSION_TYPE"] = "cachelib"
        app.config["SESSION_CACHELIB"] = FileSystemCache(os.environ["PORTAL_CACHE_DIR"])
    else:
        app.config["SESSION_TYPE"] = "redis"
        app.config["SESSION_REDIS"] = redis.Redis.from_url(os.environ["PORTAL_REDIS_URL"])
    Session(app)
    Spark(app)

    @app.get("/")
    def home() -> Any:
        return "home"

    @app.get("/account")
    @spark_login_required
    def account() -> Any:
        return jsonify(spark_api.get("/my/account"))

    @app.get("/app-account")
    def app_account() -> Any:
        return jsonify(spark_api.get("/my/account"))

    return app
