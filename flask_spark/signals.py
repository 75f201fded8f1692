"""Signals (blinker), sent with the Flask app as sender.

- :data:`token_obtained`: a sign-in finished; keyword args ``scope``, ``portal``,
  ``account_id``.
- :data:`token_refreshed`: this process refreshed a grant at the platform; ``scope``,
  ``app_wide`` (``True`` for single-session keys), ``account_id`` (``None`` for them).
- :data:`login_failed`: a sign-in did not finish; ``reason``, ``error``, ``description``.
  A receiver may return a :class:`~flask.Response`, which replaces the error page.
- :data:`logged_out`: a user signed out; ``scope``, ``portal``, ``account_id``.

No signal carries a token: receivers that need the API call :data:`flask_spark.spark_api`.
"""

from __future__ import annotations

from blinker import Namespace

_signals = Namespace()

token_obtained = _signals.signal("spark-token-obtained")
token_refreshed = _signals.signal("spark-token-refreshed")
login_failed = _signals.signal("spark-login-failed")
logged_out = _signals.signal("spark-logged-out")
