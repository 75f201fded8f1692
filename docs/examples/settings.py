"""settings.py, loaded with app.config.from_pyfile("settings.py") before Spark(app)."""

import json
import os
from datetime import timedelta

import redis

# Flexmls: the key's id and secret, your app's name for X-SparkApi-User-Agent, and the
# redirect URI exactly as on record for the key.
SPARK_CLIENT_ID = os.environ["SPARK_CLIENT_ID"]
SPARK_CLIENT_SECRET = os.environ["SPARK_CLIENT_SECRET"]
SPARK_USER_AGENT = "Prairie Home portal"
SPARK_REDIRECT_URI = "https://portal.example.com/callback"

# Flask's secret, and the keys the tokens are encrypted with at rest (newest first).
SECRET_KEY = os.environ["SECRET_KEY"]
SPARK_TOKEN_KEYS = json.loads(os.environ["SPARK_TOKEN_KEYS"])

# Flask-Session: server-side sessions in Redis; Flask-Spark keeps its grants in the same
# Redis, under keys of its own (spark:...).
SESSION_TYPE = "redis"
SESSION_REDIS = redis.Redis.from_url(os.environ["REDIS_URL"])

# The session cookie: HTTPS only, and sent on the redirect back from Flexmls.
SESSION_COOKIE_SECURE = True
SESSION_COOKIE_SAMESITE = "Lax"

# How long a session, and its binding to the Flexmls sign-in, lasts unused.
PERMANENT_SESSION_LIFETIME = timedelta(days=7)
