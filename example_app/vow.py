"""The consumer VOW portals, a second small Flask app mounted under ``/portal``.

Why a second app: a Flask app holds one :class:`~flask_spark.Spark`, and a ``Spark``
signs in with one key in one role. The agent portal uses an IDX (or private) key; consumers
sign in to a VOW portal with a VOW key. So the VOW portals get their own app, ``Spark``,
config and session cookie, and :func:`example_app.create_app` mounts this app under
``/portal`` with werkzeug's ``DispatcherMiddleware``.

One ``Spark`` serves every portal: ``url_prefix="/<portal>"`` puts the sign-in routes at
``/portal/<portal>/login`` and ``/portal/<portal>/callback``, and the portal loader reads
the portal from the URL, so each portal signs in on ``/auth/vow/<portal>`` and keeps its
own tokens.
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Flask, abort, current_app, render_template, request, url_for

from flask_spark import Spark, spark_api

from .pages import install_pages, listings_page, my_account, page_number

bp = Blueprint("vow", __name__)

#: Settings copied from the agent portal's config when it talks to the real platform.
_SHARED_SPARK_KEYS = (
    "SPARK_PLATFORM_URL",
    "SPARK_API_URL",
    "SPARK_CA_CERTS",
    "SPARK_ALLOW_HTTP_LOOPBACK",
    "SPARK_USER_AGENT",
)


def create_vow_app(parent: Flask, mount: str) -> Flask:
    """The VOW portals app, configured from the agent portal ``parent``."""
    from . import use_server_side_sessions

    app = Flask(__name__, instance_path=parent.instance_path)
    config = parent.config
    app.config.update(
        SECRET_KEY=config["SECRET_KEY"],
        EXAMPLE_DEMO=config["EXAMPLE_DEMO"],
        REDIS_URL=config.get("REDIS_URL"),
        VOW_PORTALS=tuple(config.get("VOW_PORTALS") or ()),
        SESSION_COOKIE_SAMESITE="Lax",
        SESSION_COOKIE_SECURE=config.get("SESSION_COOKIE_SECURE", False),
        # Its own cookie, sent only below the mount point.
        SESSION_COOKIE_PATH=mount,
        SPARK_ROLE="vow",
        # Flask-Spark redirects here after a sign-out; a path within the mount point.
        SPARK_LOGIN_REDIRECT="/",
    )
    if config["EXAMPLE_DEMO"]:
        # The demo simulator accepts the agent portal's key for the portals too.
        app.config.update(
            {key: value for key, value in config.items() if key.startswith("SPARK_")},
            SPARK_ROLE="vow",
            SPARK_LOGIN_REDIRECT="/",
        )
    else:
        if not config.get("VOW_CLIENT_SECRET"):
            raise RuntimeError("VOW_CLIENT_SECRET is required with VOW_CLIENT_ID")
        app.config.update(
            {key: config[key] for key in _SHARED_SPARK_KEYS if key in config},
            SPARK_CLIENT_ID=config["VOW_CLIENT_ID"],
            SPARK_CLIENT_SECRET=config["VOW_CLIENT_SECRET"],
        )
    use_server_side_sessions(app, cookie_name="portal_session", folder="portal-sessions")
    Spark(app, url_prefix="/<portal>", portal_loader=portal_from_url)
    app.register_blueprint(bp)
    app.before_request(only_known_portals)
    install_pages(app, portal_site)
    return app


def portal_site() -> tuple[str, str]:
    """The header of a page: the portal's name and home, or the list of portals."""
    portal = portal_from_url()
    if portal is None:
        return "Home search portals", url_for("vow.index")
    return f"{portal.title()} Home Search", url_for("vow.home", portal=portal)


def portal_from_url() -> str | None:
    """The portal of this request: the ``<portal>`` part of its URL."""
    return (request.view_args or {}).get("portal")


def only_known_portals() -> None:
    """With ``VOW_PORTALS`` set, any other portal name is not found."""
    portal = portal_from_url()
    allowed = current_app.config["VOW_PORTALS"]
    if portal is not None and allowed and portal not in allowed:
        abort(404)


@bp.get("/")
def index() -> str:
    """``/portal/``: the list of portals (and where a sign-out from a portal lands)."""
    return render_template("vow_index.html", portals=current_app.config["VOW_PORTALS"])


@bp.get("/<portal>/")
def home(portal: str) -> str:
    """A portal's home: "Sign in with Flexmls", or the consumer's name and listings."""
    context: dict[str, Any] = {"portal": portal}
    if spark_api.authenticated:
        context.update(
            account=my_account(), listings=listings_page(page_number()), show_sign_out=True
        )
    else:
        context["login_url"] = url_for("spark.login", next=url_for("vow.home", portal=portal))
    return render_template("vow_home.html", **context)
