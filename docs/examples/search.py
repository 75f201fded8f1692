"""A listing search whose filter is built from what the visitor typed."""

from flask import Blueprint, jsonify, request

from flask_spark import spark_api, spark_login_required
from flask_spark.sparkql import all_of, field

bp = Blueprint("search", __name__)


@bp.get("/search")
@spark_login_required
def search():
    args = request.args
    parts = []
    if args.get("city"):
        parts.append(field("City") == args["city"])  # quoted and escaped, whatever it holds
    if args.get("min_price", type=int) is not None:
        parts.append(field("ListPrice") >= args.get("min_price", type=int))
    if args.get("beds", type=int) is not None:
        parts.append(field("BedsTotal") >= args.get("beds", type=int))
    query = all_of(parts)  # None when nothing was asked: no _filter at all
    found = spark_api.get("/listings", _filter=query, _orderby="-ListPrice", _limit=25)
    return jsonify(
        filter=None if query is None else str(query),
        ids=[item["StandardFields"]["ListingId"] for item in found],
    )
