"""Flask-Spark: sign in with Flexmls and call the FBS Spark API from Flask."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError
from importlib.metadata import version as _version

from .client import SparkClient, SparkResponse
from .errors import (
    ConfigurationError,
    GrantError,
    NotSignedIn,
    PlatformUnavailable,
    RateLimited,
    ReauthenticationRequired,
    SparkAPIError,
    SparkError,
    StoreUnavailable,
)
from .extension import Spark, SparkWarning, spark_api, spark_login_required
from .signals import logged_out, login_failed, token_obtained, token_refreshed
from .store import CacheLibTokenStore, RedisTokenStore, TokenStore

try:
    __version__ = _version("Flask-Spark")
except PackageNotFoundError:  # pragma: no cover - a source tree that was never installed
    __version__ = "0.0.0"

__all__ = [
    "CacheLibTokenStore",
    "ConfigurationError",
    "GrantError",
    "NotSignedIn",
    "PlatformUnavailable",
    "RateLimited",
    "ReauthenticationRequired",
    "RedisTokenStore",
    "Spark",
    "SparkAPIError",
    "SparkClient",
    "SparkError",
    "SparkResponse",
    "SparkWarning",
    "StoreUnavailable",
    "TokenStore",
    "__version__",
    "logged_out",
    "login_failed",
    "spark_api",
    "spark_login_required",
    "token_obtained",
    "token_refreshed",
]
