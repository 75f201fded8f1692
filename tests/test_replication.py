"""Bulk copies from the replication host: ``spark_api.replicate`` pages with ``_skiptoken``
at the largest page allowed, resumes from the last record it yielded, and code 1021 on the
normal host says where to go."""

from __future__ import annotations

from typing import Any

import pytest
from flask import Flask

from flask_spark import ConfigurationError, SparkAPIError, spark_api
from flask_spark.config import DEFAULT_REPLICATION_URL, load_config
from flask_spark.testing import LISTINGS, SparkPlatform

from .conftest import AppFactory, Browser, add_probe, in_request

pytestmark = pytest.mark.usefixtures("no_secret_in_logs")


@pytest.fixture
def app(make_app: AppFactory, spark_platform: SparkPlatform) -> Flask:
    return add_probe(make_app(SPARK_REPLICATION_URL=spark_platform.replication_url))


@pytest.fixture
def browser(app: Flask, browser_for: Any) -> Browser:
    browser: Browser = browser_for(app)
    assert browser.sign_in().status_code == 303
    return browser


def _pages(platform: SparkPlatform) -> list[dict[str, str]]:
    return [r.query for r in platform.requests_for("data") if r.path.startswith("/replication/")]


def test_every_listing_in_id_order_from_the_replication_host(
    app: Flask, browser: Browser, spark_platform: SparkPlatform
) -> None:
    ids = in_request(app, browser, lambda: [r["Id"] for r in spark_api.replicate("/listings")])
    assert ids == sorted(item["Id"] for item in LISTINGS)
    assert _pages(spark_platform) == [{"_limit": "1000"}]


def test_pages_of_a_thousand_with_skiptoken(
    app: Flask, browser: Browser, spark_platform: SparkPlatform
) -> None:
    spark_platform.replication_records = 2500

    def copy() -> tuple[list[str], int]:
        run = spark_api.replicate("/listings")
        return [record["Id"] for record in run], run.calls

    ids, calls = in_request(app, browser, copy)
    assert len(ids) == len(set(ids)) == 2500
    assert ids == sorted(ids)
    assert calls == 3
    pages = _pages(spark_platform)
    assert [p.get("_skiptoken") for p in pages] == [None, ids[999], ids[1999]]
    assert {p["_limit"] for p in pages} == {"1000"}


def test_a_copy_resumes_from_the_last_record_it_yielded(
    app: Flask, browser: Browser, spark_platform: SparkPlatform
) -> None:
    spark_platform.replication_records = 2500

    def interrupted() -> tuple[list[str], str | None]:
        run = spark_api.replicate("/listings")
        first = [record["Id"] for _, record in zip(range(1200), run, strict=False)]
        return first, run.skiptoken

    first, token = in_request(app, browser, interrupted)
    assert token == first[-1]
    rest = in_request(
        app, browser, lambda: [r["Id"] for r in spark_api.replicate("/listings", _skiptoken=token)]
    )
    assert first + rest == sorted(set(first + rest))
    assert len(first + rest) == 2500


def test_code_1021_on_the_normal_host_names_replication(
    app: Flask, browser: Browser, spark_platform: SparkPlatform
) -> None:
    spark_platform.replication_only = True

    def normal() -> SparkAPIError:
        with pytest.raises(SparkAPIError) as info:
            spark_api.get("/listings")
        return info.value

    error = in_request(app, browser, normal)
    assert error.code == 1021
    assert error.status == 403
    assert "replicate()" in str(error)
    copied = in_request(app, browser, lambda: len(list(spark_api.replicate("/listings"))))
    assert copied == len(LISTINGS)


def test_the_replication_url_is_checked_like_the_others() -> None:
    base = {"SPARK_CLIENT_ID": "id", "SPARK_CLIENT_SECRET": "secret"}
    assert load_config(base).replication_url == DEFAULT_REPLICATION_URL
    with pytest.raises(ConfigurationError, match="SPARK_REPLICATION_URL"):
        load_config({**base, "SPARK_REPLICATION_URL": "http://replication.example"})
