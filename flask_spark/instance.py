"""One :class:`~flask_spark.Spark` instance's parts on one app.

:class:`Instance` is private: the extension keeps it in ``app.extensions["spark"]`` (the
default instance) and ``app.extensions["spark.instances"][name]``
(:mod:`~flask_spark.context` finds it there), and the views, the request proxies, the
CLI and the checks work through it. Apps use :class:`~flask_spark.Spark` instead.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from werkzeug.exceptions import HTTPException
from werkzeug.routing import Map, MapAdapter, RequestRedirect, Rule

from .account import SparkAccount
from .config import DEFAULT_INSTANCE, SparkConfig
from .grant import GrantClient
from .rate_budget import RateBudget
from .tokens import TokenManager
from .transport import Transport

PortalLoader = Callable[[], "str | None"]
AccountLoader = Callable[[SparkAccount], Any]


@dataclass
class Loaders:
    """The functions an app registers on its :class:`~flask_spark.Spark` object, shared
    by that object's instances on every app."""

    portal: PortalLoader | None = None
    account: AccountLoader | None = None


@dataclass
class Instance:
    """One instance's parts on one app."""

    #: The instance's name, which is also its blueprint's.
    name: str
    config: SparkConfig
    transport: Transport
    #: The platform's sign-in endpoints (OAuth 2, or OpenID Connect).
    grants: GrantClient
    tokens: TokenManager
    session_ttl: int
    #: The app key's shared rate budget; ``None`` with ``SPARK_RATE_LIMIT = None``.
    budget: RateBudget | None = None
    url_prefix: str | None = None
    loaders: Loaders = field(default_factory=Loaders)
    #: :meth:`~flask_spark.Spark.close` has released its connections.
    closed: bool = False
    #: The :class:`~flask_spark.Spark` object that set this instance up (for code that
    #: holds only the app, such as tests; Flask-Spark itself never goes back to it).
    extension: Any = field(default=None, repr=False, compare=False)

    def __post_init__(self) -> None:
        self._paths = _prefix_matcher(self.url_prefix)

    def __repr__(self) -> str:
        return (
            f"<Instance {self.name!r} client_id={self.config.client_id!r} "
            f"store={self.tokens.store!r}>"
        )

    def slot(self, scope: str) -> str:
        """Where this instance's binding for ``scope`` is kept in a browser session: the
        scope itself for the default instance, ``<name>:<scope>`` for the others."""
        return scope if self.name == DEFAULT_INSTANCE else f"{self.name}:{scope}"

    def owns(self, slot: str) -> bool:
        """Whether a browser session's binding ``slot`` is this instance's."""
        if self.name == DEFAULT_INSTANCE:
            return ":" not in slot
        return slot.startswith(f"{self.name}:")

    def serves(self, path: str) -> bool:
        """Whether ``path`` (below the app root) lies under this instance's URL prefix."""
        if self._paths is None:
            return False
        try:
            self._paths.match(path)
        except RequestRedirect:
            return True
        except HTTPException:
            return False
        return True


def _prefix_matcher(url_prefix: str | None) -> MapAdapter | None:
    """What :meth:`Instance.serves` matches: ``url_prefix`` and every path below it."""
    if not url_prefix:
        return None
    prefix = url_prefix.rstrip("/")
    rules = [Rule(f"{prefix}/", endpoint="here"), Rule(f"{prefix}/<path:_below>", endpoint="here")]
    return Map(rules, strict_slashes=True).bind("localhost")
