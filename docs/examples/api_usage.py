"""Views that call the Spark API through spark_api."""

from flask import Blueprint, abort, jsonify, request

from flask_spark import SparkAPIError, spark_api, spark_login_required

bp = Blueprint("portal", __name__)


@bp.get("/account")
@spark_login_required
def account():
    me = spark_api.get("/my/account")[0]  # get() returns D.Results, a list
    return {"name": me["Name"], "office": me["Office"]}


@bp.get("/listings")
@spark_login_required
def listings():
    # Every match, page after page (25 a page), as one iterator.
    found = spark_api.paginate(
        "/listings",
        _filter="City Eq 'Fargo'",
        _orderby="-ListPrice",
    )
    return jsonify([item["StandardFields"]["ListingId"] for item in found])


@bp.get("/listings/count")
@spark_login_required
def listing_count():
    # The platform counts (_pagination=count): no listing is sent.
    return {"total": spark_api.count("/listings", _filter="City Eq 'Fargo'")}


@bp.get("/listings/<listing_id>")
@spark_login_required
def listing(listing_id):
    try:
        return spark_api.get(f"/listings/{listing_id}")[0]
    except SparkAPIError as exc:
        if exc.status == 404:
            abort(404)
        raise


@bp.post("/contacts")
@spark_login_required
def add_contact():
    # The body is sent as {"D": {...}}; POST is never retried.
    created = spark_api.post("/contacts", {"DisplayName": request.form["name"]})
    return {"uri": created[0]["ResourceUri"]}, 201
