"""The :class:`Spark` extension: what an app sets up, and what it asks of it by name."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any, TypeVar

from flask import Flask, current_app

from .account import SparkAccount
from .admin import GrantAdmin
from .cli import spark_command
from .client import SparkClient
from .config import DEFAULT_INSTANCE, default_scope
from .context import account_of, client_of, new_client, require_sign_in, user_of
from .errors import ConfigurationError
from .handlers import install
from .instance import AccountLoader, Instance, Loaders, PortalLoader
from .registry import add_instance, instance_named, instances
from .stores import GrantStore
from .views import make_blueprint
from .wiring import build_instance, opened_stores

F = TypeVar("F", bound=Callable[..., Any])

_NAME_RE = re.compile(r"[a-z][a-z0-9_]{0,31}")


class Spark:
    """Sign in with Flexmls for a Flask app.

    ::

        app.config.update(SESSION_TYPE="redis", SPARK_CLIENT_ID="...",
                          SPARK_CLIENT_SECRET="...")
        Session(app)
        spark = Spark(app)          # or Spark() and later spark.init_app(app)

    An app may hold several instances, each with its own key, role, blueprint and
    grants: the default ``Spark(app)`` beside, say, ``Spark(app, name="vow",
    url_prefix="/portal/<portal>")`` (see :doc:`instances`).

    :param name: the instance's name, also its blueprint's (``url_for("vow.login")``);
        lowercase letters, digits and ``_``. ``"spark"`` by default.
    :param config_prefix: where its keys are read: ``SPARK_`` for the default instance,
        ``SPARK_<NAME>_`` for the others (``SPARK_VOW_CLIENT_ID``...), which take the
        platform, store and sealing keys from ``SPARK_`` when their own are unset.
    :param url_prefix: where the blueprint (``/login``, ``/callback``, ``/logout``) is
        mounted; the app root by default. The app's views below it are served by this
        instance (:data:`spark_api`, :data:`spark_account`).
    :param portal_loader: VOW apps with several portals: a function returning the current
        request's portal name (see :meth:`portal_loader`).
    :param grant_store: where grants live, instead of the one ``SPARK_GRANT_STORE`` names
        (see :mod:`flask_spark.stores`). The app closes it, not :meth:`close`.
    """

    def __init__(
        self,
        app: Flask | None = None,
        *,
        name: str = DEFAULT_INSTANCE,
        config_prefix: str | None = None,
        url_prefix: str | None = None,
        portal_loader: PortalLoader | None = None,
        grant_store: GrantStore | None = None,
    ) -> None:
        if not isinstance(name, str) or not _NAME_RE.fullmatch(name):
            raise ValueError(
                "a Spark instance's name is 1-32 lowercase letters, digits or '_', "
                "starting with a letter"
            )
        self.name = name
        default_prefix = "SPARK_" if name == DEFAULT_INSTANCE else f"SPARK_{name.upper()}_"
        self.config_prefix = config_prefix or default_prefix
        self.url_prefix = url_prefix
        self._loaders = Loaders(portal=portal_loader)
        self._grant_store = grant_store
        if app is not None:
            self.init_app(app)

    def __repr__(self) -> str:
        return f"<Spark {self.name!r} url_prefix={self.url_prefix!r}>"

    def portal_loader(self, loader: PortalLoader) -> PortalLoader:
        """Register the function that picks the VOW portal for the current request.

        It returns a portal name (any case) or ``None`` for the configured
        ``SPARK_PORTAL``. Register it before :meth:`init_app`, which checks that a VOW app
        can always find a portal::

            spark = Spark()

            @spark.portal_loader
            def portal_from_subdomain():
                return request.host.split(".")[0]

            spark.init_app(app)
        """
        self._loaders.portal = loader
        return loader

    def account_loader(self, loader: AccountLoader) -> AccountLoader:
        """Register the function that maps the signed-in :class:`SparkAccount` to the
        app's own user object, served as :data:`~flask_spark.spark_user`::

            @spark.account_loader
            def load_user(account):
                return User.query.filter_by(spark_id=account.id).one_or_none()
        """
        self._loaders.account = loader
        return loader

    def init_app(self, app: Flask) -> None:
        """Validate the ``SPARK_`` config, open the grant store, register the blueprint,
        the error handlers and the ``flask spark`` commands.

        :raises ConfigurationError: a key is missing or malformed, or the app has no
            server-side session (Flask-Session).
        """
        if self.name in instances(app):
            raise ConfigurationError(
                self.config_prefix + "CLIENT_ID",
                f"a Spark instance named {self.name!r} is already set up on this app "
                "(give each instance its own name)",
            )
        instance = build_instance(
            app,
            name=self.name,
            prefix=self.config_prefix,
            url_prefix=self.url_prefix,
            loaders=self._loaders,
            grant_store=self._grant_store,
            extension=self,
        )
        app.register_blueprint(make_blueprint(self.name), url_prefix=self.url_prefix)
        add_instance(app, instance)
        install(app)
        if spark_command.name not in app.cli.commands:
            app.cli.add_command(spark_command)

    def close(self, app: Flask | None = None) -> None:
        """Close this instance's connections on ``app`` (the current app): its keep-alive
        connections to the platform, and the grant store it opened from the config once
        no other instance of the app uses it (a ``grant_store`` object given to
        :class:`Spark` is the app's to close). For the end of a process, a test, or a
        job; a later call to the API opens new connections."""
        app = app or current_app._get_current_object()  # type: ignore[attr-defined]
        mine = instance_named(app, self.name)
        mine.transport.close()
        store = mine.tokens.backing_store
        others = [i for i in instances(app).values() if i is not mine and not i.closed]
        mine.closed = True
        if any(i.tokens.backing_store is store for i in others):
            return
        opened = opened_stores(app)
        for where, candidate in list(opened.items()):
            if candidate is store:
                del opened[where]
                store.close()

    def _instance(self) -> Instance:
        return instance_named(name=self.name)

    # -- in a request, by name --------------------------------------------------------

    @property
    def api(self) -> SparkClient:
        """This instance's API client for the current request (what :data:`spark_api` is
        in the requests this instance serves)."""
        return client_of(self._instance())

    @property
    def account(self) -> SparkAccount | None:
        """The account signed in to this instance (and portal) in the current request."""
        return account_of(self._instance())

    @property
    def user(self) -> Any:
        """What :meth:`account_loader` made of :attr:`account`."""
        return user_of(self._instance())

    def login_required(self, view: F) -> F:
        """:func:`spark_login_required` for this instance, whichever instance serves the
        request."""
        return require_sign_in(view, self._instance)

    # -- outside a request ---------------------------------------------------------------

    @property
    def grants(self) -> GrantAdmin:
        """The current app's stored grants of this instance: ``spark.grants.list()``,
        ``spark.grants.revoke(account_id)``."""
        return GrantAdmin(self._instance())

    def client_for(self, account_id: str, scope: str | None = None) -> SparkClient:
        """The API client of ``account_id``'s stored grant, for jobs and commands (inside
        an app context). Refreshes are single flight with the web requests of the same
        account.

        :param scope: ``"idx"``, ``"private"`` or ``"vow/<portal>"``; by default the
            configured role's (and ``SPARK_PORTAL``'s).
        :raises ValueError: a VOW app without ``SPARK_PORTAL`` and no ``scope``.
        """
        instance = self._instance()
        key = instance.tokens.key(account_id, scope or default_scope(instance.config))
        return new_client(instance, lambda: (instance.tokens.get(key), True))


__all__ = ["Spark"]
