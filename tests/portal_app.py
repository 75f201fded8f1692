"""A small portal for the multi-process tests, run by real gunicorn workers.

Configured from ``FLASK_*`` environment variables (``FLASK_SPARK_API_URL`` becomes
``SPARK_API_URL``), plus ``PORTAL_REDIS_URL`` for the session store.
"""

from __future__ import annotations

import os
from typing import Any

import redis
from flask import Flask, jsonify
from flask_session import Session

from flask_spark import Spark, spark_api, spark_login_required


def create_app() -> Flask:
    app = Flask(__name__)
    app.config.from_prefixed_env()
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
