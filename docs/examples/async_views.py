"""An async view behind the sign-in (Flask's async extra: pip install 'flask[async]')."""

from flask import Blueprint, jsonify

from flask_spark import spark_api, spark_login_required

bp = Blueprint("reports", __name__)


@bp.get("/reports/mine")
@spark_login_required
async def my_listings_report():
    # spark_api is synchronous: Flask runs this coroutine to its end for this request
    # alone (asgiref's async_to_sync), so the call holds up this request only, as in
    # any other view; the request's context, spark_api and spark_account included, is
    # the same inside it.
    listings = spark_api.get("/my/listings", _limit=25)
    return jsonify(count=len(listings))
