"""The agent portal's pages: a home page with "Sign in with Flexmls", the dashboard with a
listing search, and a listing's page with its photos."""

from __future__ import annotations

from flask import Blueprint, current_app, redirect, render_template, request, url_for
from werkzeug.wrappers import Response

from flask_spark import spark_api, spark_login_required

from .pages import (
    Search,
    listing_detail,
    listings_page,
    my_account,
    page_number,
    past_the_last_page,
)

bp = Blueprint("agent", __name__)


@bp.get("/")
def home() -> Response | str:
    """Signed in: straight to the dashboard. Otherwise the "Sign in with Flexmls" button.

    Flask-Spark lands here after a sign-out and after a sign-in without ``next``
    (``SPARK_LOGIN_REDIRECT="/"``).
    """
    if spark_api.authenticated:
        return redirect(url_for("agent.dashboard"))
    portals = []
    mount = current_app.config.get("VOW_MOUNT")
    if mount:
        portals = [
            (name, f"{request.script_root}{mount}/{name}/")
            for name in current_app.config.get("VOW_PORTALS", ())
        ]
    return render_template(
        "home.html", portals=portals, callback_mismatch=_demo_callback_mismatch()
    )


@bp.get("/dashboard")
@spark_login_required  # not signed in: off to /login?next=/dashboard?page=N and back
def dashboard() -> Response | str:
    """The agent's account and a listing search: every listing of the MLS the key may
    show (``/listings``), or with ``?mine=1`` the agent's own (``/my/listings``)."""
    mine = request.args.get("mine") == "1"
    search = Search.from_args(request.args)
    listings = listings_page(page_number(), search, path="/my/listings" if mine else "/listings")
    beyond = past_the_last_page(listings, **({"mine": 1} if mine else {}))
    if beyond is not None:
        return beyond
    return render_template(
        "dashboard.html",
        account=my_account(),
        listings=listings,
        mine=mine,
        list_args={"mine": 1} if mine else {},
        show_sign_out=True,
    )


@bp.get("/listings/<listing_id>")
@spark_login_required
def listing(listing_id: str) -> str:
    """A listing's page: its details and photos."""
    return render_template(
        "listing.html",
        listing=listing_detail(listing_id),
        back_url=url_for(".dashboard"),
        show_sign_out=True,
    )


def _demo_callback_mismatch() -> str | None:
    """In demo mode, this page's callback URL when the simulator was not told about it
    (the portal is served on another port than ``PORT``), so the home page can say so."""
    simulator = current_app.extensions.get("example_simulator")
    if simulator is None:
        return None
    callback = url_for("spark.callback", _external=True)
    if callback in simulator.redirect_uris:
        return None
    return f"{request.host_url.rstrip('/')} (PORT={current_app.config['PORT']})"
