"""More of the Spark API a portal uses, over HTTPS against the simulator: compressed
answers, queries too long for a URL, request ids, PATCH and counts."""

from __future__ import annotations

import logging
from typing import Any

import pytest
from flask import Flask

from flask_spark import SparkAPIError, spark_api
from flask_spark.testing import LISTINGS, Fault, SparkPlatform

from .conftest import AppFactory, Browser, add_probe, in_request

pytestmark = pytest.mark.usefixtures("no_secret_in_logs")


@pytest.fixture
def app(make_app: AppFactory) -> Flask:
    return add_probe(make_app())


@pytest.fixture
def browser(app: Flask, browser_for: Any) -> Browser:
    browser: Browser = browser_for(app)
    assert browser.sign_in().status_code == 303
    return browser


def test_answers_come_compressed_and_are_read_as_json(
    app: Flask, browser: Browser, spark_platform: SparkPlatform
) -> None:
    listings = in_request(app, browser, lambda: spark_api.get("/listings", _limit=25))
    assert len(listings) == 25
    [call] = [r for r in spark_platform.requests_for("data") if r.path == "/v1/listings"]
    assert "gzip" in call.headers["Accept-Encoding"]
    assert call.response_encoding == "gzip"
    assert call.response_bytes < call.response_plain_bytes * 0.3


def test_a_query_too_long_for_a_url_goes_as_a_post_with_the_override(
    app: Flask, browser: Browser, spark_platform: SparkPlatform
) -> None:
    elsewhere = " And ".join(f"City Ne 'Town{n:04d}'" for n in range(400))
    spark_filter = f"{elsewhere} And City Eq 'Fargo'"
    assert len(spark_filter) > 8000  # longer than the simulator takes in a URL (414)
    found = in_request(
        app, browser, lambda: spark_api.get("/listings", _filter=spark_filter, _limit=25)
    )
    fargo = [item for item in LISTINGS if item["StandardFields"]["City"] == "Fargo"]
    assert len(found) == min(25, len(fargo))
    [call] = [r for r in spark_platform.requests_for("data") if r.path == "/v1/listings"]
    assert call.method == "POST"
    assert call.headers["X-HTTP-Method-Override"] == "GET"
    assert call.query == {}  # everything in the body


def test_short_queries_stay_gets(
    app: Flask, browser: Browser, spark_platform: SparkPlatform
) -> None:
    in_request(app, browser, lambda: spark_api.get("/listings", _filter="City Eq 'Fargo'"))
    [call] = [r for r in spark_platform.requests_for("data") if r.path == "/v1/listings"]
    assert call.method == "GET"
    assert "X-HTTP-Method-Override" not in call.headers


def test_every_answer_and_error_carries_its_request_id(
    app: Flask,
    browser: Browser,
    spark_platform: SparkPlatform,
    caplog: pytest.LogCaptureFixture,
) -> None:
    response = in_request(app, browser, lambda: spark_api.request("GET", "/system"))
    [call] = [r for r in spark_platform.requests_for("data") if r.path == "/v1/system"]
    assert response.request_id == call.request_id
    assert call.request_id

    spark_platform.add_fault(Fault("data", "status", status=409))
    caplog.set_level(logging.WARNING, logger="flask_spark")

    def failing() -> SparkAPIError:
        with pytest.raises(SparkAPIError) as info:
            spark_api.get("/listings")
        return info.value

    error = in_request(app, browser, failing)
    [failed] = [r for r in spark_platform.requests_for("data") if r.status == 409]
    assert error.request_id == failed.request_id
    assert failed.request_id in str(error)
    [line] = [r.getMessage() for r in caplog.records if "request id" in r.getMessage()]
    assert failed.request_id in line
    assert "GET /v1/listings" in line
    assert "409" in line


def test_patch_and_count(app: Flask, browser: Browser, spark_platform: SparkPlatform) -> None:
    def work() -> tuple[int, int, list[Any]]:
        before = spark_api.count("/contacts")
        [created] = spark_api.post("/contacts", {"DisplayName": "Ann Buyer"})
        contact_id = created["ResourceUri"].rsplit("/", 1)[-1]
        spark_api.patch(f"/contacts/{contact_id}", {"DisplayName": "Ann B. Buyer"})
        after = spark_api.count("/contacts")
        return before, after, spark_api.get(f"/contacts/{contact_id}")

    before, after, [contact] = in_request(app, browser, work)
    assert after == before + 1
    assert contact["DisplayName"] == "Ann B. Buyer"
    assert [r.method for r in spark_platform.requests_for("data")].count("PATCH") == 1
    total = in_request(app, browser, lambda: spark_api.count("/listings"))
    assert total == len(LISTINGS)


def test_listing_photos_come_with_expand_and_are_served(
    app: Flask, browser: Browser, spark_platform: SparkPlatform, http: Any
) -> None:
    page = in_request(app, browser, lambda: spark_api.get("/listings", _expand="Photos"))
    assert page
    for listing in page:
        found = listing["StandardFields"]["Photos"]
        assert 3 <= len(found) <= 7
        assert [p["Primary"] for p in found].count(True) == 1
    first = page[0]["StandardFields"]["Photos"][0]
    image = http.request("GET", first["Uri640"])
    assert image.status == 200
    assert image.headers["Content-Type"] == "image/svg+xml"
    assert b'width="640"' in image.data
    assert http.request("GET", first["Uri640"].replace("/640", "/999")).status == 404
    [one] = in_request(
        app, browser, lambda: spark_api.get(f"/listings/{page[0]['Id']}", _expand="Photos")
    )
    assert one["StandardFields"]["Photos"] == page[0]["StandardFields"]["Photos"]
    plain = in_request(app, browser, lambda: spark_api.get("/listings"))
    assert "Photos" not in plain[0]["StandardFields"]


def test_a_page_with_photos_travels_at_under_a_third_of_its_size(
    app: Flask, browser: Browser, spark_platform: SparkPlatform
) -> None:
    in_request(app, browser, lambda: spark_api.get("/listings", _expand="Photos", _limit=25))
    [call] = [r for r in spark_platform.requests_for("data") if r.path == "/v1/listings"]
    assert call.response_encoding == "gzip"
    assert call.response_bytes <= 0.3 * call.response_plain_bytes
