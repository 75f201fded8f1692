"""What the agent portal and the VOW portals share: the demo banner, friendly pages for
Flexmls errors, notices, and one page of the listings table."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from flask import Flask, flash, redirect, render_template, request, url_for
from werkzeug.wrappers import Response

from flask_spark import ReauthenticationRequired, SparkAPIError, logged_out, spark_api

#: Listings per page of the table.
PAGE_SIZE = 10


def install_pages(app: Flask, site: Callable[[], tuple[str, str, str]]) -> None:
    """Register the shared template globals, error handlers and notices on ``app``.

    :param site: the name of the site of this request (the agent portal or a VOW portal),
        the URL of its home page and of its sign-out, for the header of every page
        (Flask-Spark's error pages too, which extend ``base.html`` here).
    """

    @app.context_processor
    def page_globals() -> dict[str, Any]:
        site_name, home_url, sign_out_url = site()
        return {
            "demo_mode": app.config["EXAMPLE_DEMO"],
            "site_name": site_name,
            "home_url": home_url,
            "sign_out_url": sign_out_url,
        }

    app.add_template_filter(money)
    app.register_error_handler(ReauthenticationRequired, sign_in_again)
    app.register_error_handler(SparkAPIError, api_error)
    logged_out.connect(signed_out, sender=app)


def sign_in_again(error: ReauthenticationRequired) -> Response:
    """Flexmls ended the sign-in (its refresh token was refused): go through the sign-in
    of the same portal (the error names its Spark instance) and come back to this page.

    Flask-Spark's own handler does the same without the notice.
    """
    flash("Your Flexmls session had ended, so you were asked to sign in again.")
    here = request.script_root + request.full_path.rstrip("?")
    return redirect(url_for(f"{error.instance or 'spark'}.login", next=here))


def api_error(error: SparkAPIError) -> tuple[str, int]:
    """The Spark API refused a call (rate limits and outages have their own 503 page)."""
    html = render_template(
        "spark/error.html",
        title="Flexmls could not answer",
        message="Flexmls could not answer this request. Please try again later.",
        description=error.message,
        login_url=None,
    )
    return html, 502


def signed_out(sender: Flask, **extra: Any) -> None:
    """``logged_out`` signal: say so on the page the sign-out lands on."""
    flash("You have signed out of Flexmls.")


def money(value: Any) -> str:
    """``$325,000`` for a number; anything else (Spark masks some fields) as it is."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return f"${value:,.0f}"
    return str(value)


def listings_page(page: int) -> dict[str, Any]:
    """One page of ``/listings``: its rows, the page number and the page count.

    ``_pagination=1`` makes the API answer with ``D.Pagination`` (``TotalPages``...), so
    ``spark_api.request`` is used: ``spark_api.get`` returns only ``D.Results``.
    """
    response = spark_api.request(
        "GET", "/listings", params={"_pagination": 1, "_page": page, "_limit": PAGE_SIZE}
    )
    info = response.pagination or {}
    total_pages = info.get("TotalPages")
    if not isinstance(total_pages, int) or total_pages < 1:
        total_pages = 1
    first = max(1, min(page - 3, total_pages - 6))
    return {
        "rows": [item.get("StandardFields", {}) for item in response.results],
        "page": page,
        "total_pages": total_pages,
        "total_rows": info.get("TotalRows"),
        "page_numbers": range(first, min(total_pages, first + 6) + 1),
    }


def page_number() -> int:
    """The ``?page=`` of the request, at least 1."""
    return max(1, request.args.get("page", 1, type=int) or 1)


def primary(items: Any) -> dict[str, Any]:
    """The ``Primary`` entry of an account's ``Emails``/``Phones``/``Websites``, else the
    first, else an empty dict."""
    if not isinstance(items, list) or not items:
        return {}
    for item in items:
        if isinstance(item, dict) and item.get("Primary"):
            return item
    return items[0] if isinstance(items[0], dict) else {}


def my_account() -> dict[str, Any]:
    """The signed-in user's ``/my/account``, with its primary email, phone and website."""
    results = spark_api.get("/my/account")
    account: dict[str, Any] = results[0] if results and isinstance(results[0], dict) else {}
    return {
        **account,
        "email": primary(account.get("Emails")).get("Address"),
        "phone": primary(account.get("Phones")).get("Number"),
        "website": primary(account.get("Websites")).get("Uri"),
    }
