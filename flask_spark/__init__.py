"""Flask-Spark: sign in with Flexmls and call the FBS Spark API from Flask."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError
from importlib.metadata import version as _version

from .account import SparkAccount
from .admin import GrantAdmin, GrantInfo
from .client import SparkClient, SparkResponse
from .context import spark_account, spark_api, spark_login_required, spark_user
from .errors import (
    ConfigurationError,
    IdTokenRejected,
    NotSignedIn,
    PlatformUnavailable,
    RateLimited,
    ReauthenticationRequired,
    SparkAPIError,
    SparkError,
    SparkWarning,
    StoreUnavailable,
)
from .extension import Spark
from .signals import logged_out, login_failed, token_obtained, token_refreshed
from .stores import GrantStore, MemoryGrantStore
from .stores.redis import RedisGrantStore
from .stores.sql import SQLGrantStore

try:
    __version__ = _version("Flask-Spark")
except PackageNotFoundError:  # pragma: no cover - a source tree that was never installed
    __version__ = "0.0.0"

__all__ = [
    "ConfigurationError",
    "GrantAdmin",
    "GrantInfo",
    "GrantStore",
    "IdTokenRejected",
    "MemoryGrantStore",
    "NotSignedIn",
    "PlatformUnavailable",
    "RateLimited",
    "ReauthenticationRequired",
    "RedisGrantStore",
    "SQLGrantStore",
    "Spark",
    "SparkAPIError",
    "SparkAccount",
    "SparkClient",
    "SparkError",
    "SparkResponse",
    "SparkWarning",
    "StoreUnavailable",
    "__version__",
    "logged_out",
    "login_failed",
    "spark_account",
    "spark_api",
    "spark_login_required",
    "spark_user",
    "token_obtained",
    "token_refreshed",
]
