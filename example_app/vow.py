"""The consumer VOW portals, served by the same app as the agent portal.

The agent portal signs in with an IDX (or private) key through the default
:class:`~flask_spark.Spark`; consumers sign in to an agent's VOW portal with a VOW key,
through a second instance, ``Spark(app, name="vow", url_prefix="/portal/<portal>")``,
whose keys are read as ``SPARK_VOW_CLIENT_ID`` and so on. One browser session can be
signed in to both at once; each keeps its own grants.

The ``vow`` instance's routes are ``/portal/<portal>/login`` and
``/portal/<portal>/callback``, and its portal loader reads the portal from the URL, so each
portal signs in on ``/auth/vow/<portal>`` and keeps its own tokens. Every view below
``/portal/<portal>/`` is served by that instance: :data:`~flask_spark.spark_api` there is
the consumer's client.
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Flask, abort, current_app, render_template, request, url_for
from werkzeug.wrappers import Response

from flask_spark import Spark, spark_account, spark_api, spark_login_required
from flask_spark.sparkql import field

from .pages import Search, listing_detail, listings_page, page_number, past_the_last_page

#: Where the portals are served.
VOW_MOUNT = "/portal"

bp = Blueprint("portals", __name__, url_prefix=VOW_MOUNT)


def add_vow_portals(app: Flask) -> Spark:
    """Serve the VOW portals from ``app``: the ``vow`` instance and the portals' pages.
    In demo mode the simulator accepts the agent portal's key for the portals too."""
    if app.config["EXAMPLE_DEMO"]:
        app.config.update(
            SPARK_VOW_CLIENT_ID=app.config["SPARK_CLIENT_ID"],
            SPARK_VOW_CLIENT_SECRET=app.config["SPARK_CLIENT_SECRET"],
        )
    elif not app.config.get("SPARK_VOW_CLIENT_SECRET"):
        raise RuntimeError("SPARK_VOW_CLIENT_SECRET is required with SPARK_VOW_CLIENT_ID")
    app.config.update(
        SPARK_VOW_ROLE="vow",
        # Flask-Spark lands here after a consumer signs out: the list of portals.
        SPARK_VOW_LOGIN_REDIRECT=f"{VOW_MOUNT}/",
    )
    vow = Spark(app, name="vow", url_prefix=f"{VOW_MOUNT}/<portal>", portal_loader=portal_from_url)
    app.register_blueprint(bp)
    app.config["VOW_MOUNT"] = VOW_MOUNT
    app.config["VOW_PORTALS"] = tuple(app.config.get("VOW_PORTALS") or ())
    return vow


def portal_site() -> tuple[str, str]:
    """The header of a page: the portal's name and home, or the list of portals."""
    portal = portal_from_url()
    if portal is None:
        return "Home search portals", url_for("portals.index")
    return f"{portal.title()} Home Search", url_for("portals.home", portal=portal)


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
def home(portal: str) -> Response | str:
    """A portal's home: "Sign in with Flexmls", or a greeting for the consumer signed in
    (:data:`~flask_spark.spark_account`, no API call) and a search of the listings of the
    agent whose portal it is."""
    context: dict[str, Any] = {"portal": portal}
    if spark_account:
        search = Search.from_args(request.args)
        owner = portal_owner(portal)
        listings = listings_page(
            page_number(), search, within=field("ListAgentId") == owner if owner else None
        )
        beyond = past_the_last_page(listings, portal=portal)
        if beyond is not None:
            return beyond
        context.update(
            consumer=spark_account.name, listings=listings, list_args={}, show_sign_out=True
        )
    else:
        context["login_url"] = url_for(
            "vow.login", portal=portal, next=url_for(".home", portal=portal)
        )
    return render_template("vow_home.html", **context)


@bp.get("/<portal>/listings/<listing_id>")
@spark_login_required  # to this portal's own sign-in
def listing(portal: str, listing_id: str) -> str:
    """A listing's page in the portal: its details and photos."""
    return render_template(
        "listing.html",
        listing=listing_detail(listing_id),
        back_url=url_for(".home", portal=portal),
        portal=portal,
        show_sign_out=True,
    )


def portal_owner(portal: str) -> str | None:
    """The account ``Id`` of the agent whose portal it is (``/v1/portal``'s ``OwnerId``),
    read once per portal; ``None`` if the platform does not say."""
    owners: dict[str, str | None] = current_app.extensions.setdefault("example_portal_owners", {})
    if portal not in owners:
        results = spark_api.get("/portal")
        found = results[0].get("OwnerId") if results and isinstance(results[0], dict) else None
        owners[portal] = found if isinstance(found, str) else None
    return owners[portal]
