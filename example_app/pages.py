"""What the agent portal and the VOW portals share: the demo banner, friendly pages for
Flexmls and HTTP errors, notices, the listing search (a page of results, built with
:mod:`flask_spark.sparkql`) and a listing with its photos."""

from __future__ import annotations

import dataclasses
import re
import string
from collections.abc import Callable, Mapping
from typing import Any

from flask import Flask, abort, flash, redirect, render_template, request, url_for
from werkzeug.exceptions import HTTPException
from werkzeug.wrappers import Response

from flask_spark import (
    ReauthenticationRequired,
    SparkAPIError,
    logged_out,
    spark_account,
    spark_api,
)
from flask_spark.sparkql import Expression, all_of, field

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
    for status in HTTP_PAGES:
        app.register_error_handler(status, http_error)
    app.before_request(refuse_long_urls)
    logged_out.connect(signed_out, sender=app)


#: The portal's own pages for HTTP errors (instead of Werkzeug's plain ones): the
#: title and what to tell the visitor.
HTTP_PAGES = {
    404: (
        "Page not found",
        "There is no page at this address. It may have moved, or the link may be mistyped.",
    ),
    405: ("This page cannot do that", "This page does not take that kind of request."),
    414: (
        "This address is too long",
        "The address is longer than the portal takes. Please go back and try a shorter search.",
    ),
    500: (
        "Something went wrong",
        "The portal could not show this page. Please try again in a moment.",
    ),
}
#: The longest request target (path and query) the portal takes, as many front ends do.
MAX_URL_LENGTH = 8000


def refuse_long_urls() -> None:
    """Refuse request targets longer than :data:`MAX_URL_LENGTH` with the 414 page."""
    if len(request.full_path) > MAX_URL_LENGTH:
        abort(414)


def http_error(error: HTTPException) -> tuple[str, int]:
    """The styled page of a 404, 405, 414 or 500; a 500's cause is logged by Flask, never
    shown."""
    status = error.code if isinstance(error, HTTPException) and error.code else 500
    title, message = HTTP_PAGES.get(status, HTTP_PAGES[500])
    html = render_template(
        "spark/error.html", title=title, message=message, description=None, login_url=None
    )
    return html, status


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
    flash("You have signed out. This portal no longer has access to your Flexmls account.")


def money(value: Any) -> str:
    """``$325,000`` for a number; anything else (Spark masks some fields) as it is."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return f"${value:,.0f}"
    return str(value)


#: The columns the listings table sorts by: ``?sort=price`` low to high, ``?sort=-price``
#: high to low; the ``_orderby`` field of each.
SORTS = {
    "mls": "ListingId",
    "city": "City",
    "price": "ListPrice",
    "beds": "BedsTotal",
    "baths": "BathsTotal",
}
#: The highest price or bed count a search takes (anything above is ignored).
_MOST = 10**9
#: A Spark listing ``Id``: 26 digits.
_LISTING_ID = re.compile(r"[0-9]{26}")


def _whole_number(args: Mapping[str, str], name: str) -> int | None:
    raw = args.get(name, "").replace(",", "").replace("$", "").strip()
    if not raw.isascii() or not raw.isdigit() or int(raw) > _MOST:
        return None
    return int(raw)


@dataclasses.dataclass(frozen=True)
class Search:
    """A listing search from the query string: ``city``, ``min_price``, ``max_price``,
    ``min_beds`` and ``sort``. What cannot be read (``min_price=abc``) is left out."""

    city: str = ""
    min_price: int | None = None
    max_price: int | None = None
    min_beds: int | None = None
    sort: str = ""

    @classmethod
    def from_args(cls, args: Mapping[str, str]) -> Search:
        sort = args.get("sort", "")
        return cls(
            # "west fargo" finds "West Fargo": cities are stored capitalized.
            city=string.capwords(args.get("city", "").strip()[:64]),
            min_price=_whole_number(args, "min_price"),
            max_price=_whole_number(args, "max_price"),
            min_beds=_whole_number(args, "min_beds"),
            sort=sort if sort.removeprefix("-") in SORTS else "",
        )

    def query(self) -> Expression | None:
        """The SparkQL ``_filter``, built with :mod:`flask_spark.sparkql` so what a
        visitor types only ever becomes a quoted value."""
        parts: list[Expression] = []
        if self.city:
            parts.append(field("City") == self.city)
        price = field("ListPrice")
        if self.min_price is not None and self.max_price is not None:
            low, high = sorted((self.min_price, self.max_price))
            parts.append(price.between(low, high))
        elif self.min_price is not None:
            parts.append(price >= self.min_price)
        elif self.max_price is not None:
            parts.append(price <= self.max_price)
        if self.min_beds:
            parts.append(field("BedsTotal") >= self.min_beds)
        return all_of(parts)

    def args(self, **changes: Any) -> dict[str, Any]:
        """The search as query-string arguments (for page and sort links), with
        ``changes``; empty ones left out."""
        values = {**dataclasses.asdict(self), **changes}
        return {key: value for key, value in values.items() if value not in ("", None)}

    def sort_args(self, key: str, **changes: Any) -> dict[str, Any]:
        """The arguments of a column header's link: sort by ``key``, or the other way round
        when it already is; back to page 1."""
        return self.args(**changes, sort=f"-{key}" if self.sort == key else key)

    @property
    def active(self) -> bool:
        """Whether anything narrows the listings."""
        return self.query() is not None


def listings_page(
    page: int,
    search: Search | None = None,
    *,
    path: str = "/listings",
    within: Expression | None = None,
) -> dict[str, Any]:
    """One page of listings: its rows, the page number and the page count.

    :param path: ``/listings`` (every listing the key may show) or ``/my/listings``.
    :param within: a filter the search is narrowed inside (a portal's agent).

    ``_pagination=1`` makes the API answer with ``D.Pagination`` (``TotalPages``...), so
    ``spark_api.request`` is used: ``spark_api.get`` returns only ``D.Results``.
    """
    search = search or Search()
    params: dict[str, Any] = {"_pagination": 1, "_page": page, "_limit": PAGE_SIZE}
    query = all_of(part for part in (within, search.query()) if part is not None)
    if query is not None:
        params["_filter"] = query
    if search.sort:
        order = SORTS[search.sort.removeprefix("-")]
        params["_orderby"] = f"-{order}" if search.sort.startswith("-") else order
    response = spark_api.request("GET", path, params=params)
    info = response.pagination or {}
    total_pages = info.get("TotalPages")
    if not isinstance(total_pages, int) or total_pages < 1:
        total_pages = 1
    first = max(1, min(page - 3, total_pages - 6))
    return {
        "rows": [
            {"Id": item.get("Id"), **item.get("StandardFields", {})} for item in response.results
        ],
        "page": page,
        "total_pages": total_pages,
        "total_rows": info.get("TotalRows"),
        "page_numbers": range(first, min(total_pages, first + 6) + 1),
        "search": search,
    }


def past_the_last_page(listings: Mapping[str, Any], **view_args: Any) -> Response | None:
    """``?page=999`` of 6 pages: a redirect to the last page (same search), else ``None``."""
    if listings["page"] <= listings["total_pages"]:
        return None
    search: Search = listings["search"]
    endpoint = request.endpoint or ""
    return redirect(url_for(endpoint, **search.args(page=listings["total_pages"], **view_args)))


def listing_detail(listing_id: str) -> dict[str, Any]:
    """One listing with its photos (``/listings/<Id>?_expand=Photos``): its
    ``StandardFields``, and ``Photos`` primary first; 404 when there is no such listing."""
    if not _LISTING_ID.fullmatch(listing_id):
        abort(404)
    try:
        results = spark_api.get(f"/listings/{listing_id}", _expand="Photos")
    except SparkAPIError as error:
        if error.status == 404:
            abort(404)
        raise
    if not results or not isinstance(results[0], dict):
        abort(404)
    fields = dict(results[0].get("StandardFields") or {})
    photos = [p for p in fields.pop("Photos", None) or [] if isinstance(p, dict)]
    photos.sort(key=lambda photo: not photo.get("Primary"))
    return {"Id": results[0].get("Id"), **fields, "photos": photos}


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
    """The signed-in user's account, with its primary email, phone and website: the
    ``/my/account`` record Flask-Spark stored at sign-in (:data:`~flask_spark.spark_account`),
    so no API call."""
    account: dict[str, Any] = dict(spark_account.raw) if spark_account else {}
    return {
        **account,
        "email": primary(account.get("Emails")).get("Address"),
        "phone": primary(account.get("Phones")).get("Number"),
        "website": primary(account.get("Websites")).get("Uri"),
    }
