"""SparkQL built from Python: every value quoted and escaped, so no input changes the
query's structure; checked against the simulator's parser, and over HTTPS."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from flask_spark import SparkAPIError, spark_api
from flask_spark.sparkql import all_of, any_of, field, literal
from flask_spark.testing import LISTINGS, SparkPlatform
from flask_spark.testing.sparkql import Condition, Join, Not, SparkQLError, parse

from .conftest import AppFactory, Browser

HOSTILE = "Fargo' Or ListPrice Gt '0"


def test_the_classic_injection_stays_one_value() -> None:
    query = field("City") == HOSTILE
    assert str(query) == "City Eq 'Fargo\\' Or ListPrice Gt \\'0'"
    assert parse(str(query)) == Condition("City", "Eq", (HOSTILE,))


@pytest.mark.parametrize(
    ("value", "text"),
    [
        ("O'Brien", "'O\\'Brien'"),
        ("back\\slash", "'back\\\\slash'"),
        (250000, "250000"),
        (-3, "-3"),
        (2.5, "2.5"),
        (1e-7, "0.0000001"),
        (Decimal("199999.99"), "199999.99"),
        (True, "true"),
        (False, "false"),
        (None, "null"),
        (dt.date(2026, 1, 31), "2026-01-31"),
        (dt.datetime(2026, 1, 31, 8, 30, tzinfo=dt.UTC), "2026-01-31T08:30:00+00:00"),
    ],
)
def test_values_are_written_as_sparkql_literals(value: Any, text: str) -> None:
    assert literal(value) == text
    assert parse(f"X Eq {text}") == Condition("X", "Eq", (_read_back(value),))


def _read_back(value: Any) -> Any:
    if isinstance(value, Decimal):
        return float(value)
    if isinstance(value, dt.date | dt.datetime):
        return value.isoformat()
    return value


def test_operators_lists_ranges_and_grouping() -> None:
    city, price, beds = field("City"), field("ListPrice"), field("BedsTotal")
    query = (city == ["Fargo", "Moorhead"]) & (price.between(100000, 300000) | ~(beds < 3))
    assert str(query) == (
        "City Eq 'Fargo','Moorhead' And (ListPrice Bt 100000,300000 Or Not (BedsTotal Lt 3))"
    )
    assert parse(str(query)) == Join(
        "And",
        (
            Condition("City", "Eq", ("Fargo", "Moorhead")),
            Join(
                "Or",
                (
                    Condition("ListPrice", "Bt", (100000, 300000)),
                    Not(Condition("BedsTotal", "Lt", (3,))),
                ),
            ),
        ),
    )
    ops = [city != "x", price > 1, price >= 1, price < 1, price <= 1, city.eq("y")]
    assert [str(q).split()[1] for q in ops] == ["Ne", "Gt", "Ge", "Lt", "Le", "Eq"]
    assert str(all_of([city == "a", beds > 1, price < 5])) == (
        "City Eq 'a' And BedsTotal Gt 1 And ListPrice Lt 5"
    )
    assert str(any_of([city == "a", city == "b"])) == "City Eq 'a' Or City Eq 'b'"
    assert all_of([]) is None
    assert any_of([]) is None


@pytest.mark.parametrize(
    "bad",
    ["City Eq", "City Name Eq 'x'", "City' Or 1", "", "1City", "City;", "A.B.", "Cíty"],
)
def test_field_names_are_names_only(bad: str) -> None:
    with pytest.raises(ValueError, match="field name"):
        field(bad)


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), object(), b"bytes", []])
def test_values_sparkql_cannot_write_are_refused(bad: Any) -> None:
    with pytest.raises((TypeError, ValueError)):
        field("City").eq(bad)


def test_expressions_combine_only_with_expressions() -> None:
    with pytest.raises(TypeError):
        (field("City") == "a") & "ListPrice Gt 0"  # type: ignore[operator]


@settings(max_examples=300, deadline=None)
@given(st.text(), st.integers(), st.lists(st.text(), min_size=1, max_size=4))
@pytest.mark.slow
def test_no_input_changes_the_structure(text: str, number: int, texts: list[str]) -> None:
    query = (field("City") == text) & (field("ListPrice") > number) | field("MlsStatus").ne(texts)
    assert parse(str(query)) == Join(
        "Or",
        (
            Join(
                "And",
                (Condition("City", "Eq", (text,)), Condition("ListPrice", "Gt", (number,))),
            ),
            Condition("MlsStatus", "Ne", tuple(texts)),
        ),
    )


@pytest.mark.parametrize(
    ("bad", "code"),
    [
        ("City Eq 'Fargo", 1040),
        ("City Eq 'a' And", 1040),
        ("City Like 'a'", 1040),
        ("(City Eq 'a'", 1040),
        ("ListPrice Bt 1", 2001),
        ("ListPrice Gt 1,2", 2001),
    ],
)
def test_the_simulator_refuses_bad_filters(bad: str, code: int) -> None:
    with pytest.raises(SparkQLError) as info:
        parse(bad)
    assert info.value.code == code


def test_a_built_filter_over_https(
    make_app: AppFactory, browser_for: Any, spark_platform: SparkPlatform
) -> None:
    app = make_app()
    found: list[Any] = []

    @app.get("/search")
    def search() -> Any:
        city = field("City") == "Fargo"
        found.append(spark_api.get("/listings", _filter=city & (field("ListPrice") >= 200000)))
        found.append(spark_api.get("/listings", _filter=field("City") == HOSTILE))
        with pytest.raises(SparkAPIError) as refused:
            spark_api.get("/listings", _filter="City Like 'F'")
        found.append(refused.value)
        return "ok"

    browser: Browser = browser_for(app)
    assert browser.sign_in().status_code == 303
    assert browser.client.get("/search").status_code == 200
    wanted = [
        item["Id"]
        for item in LISTINGS
        if item["StandardFields"]["City"] == "Fargo"
        and item["StandardFields"]["ListPrice"] >= 200000
    ][:10]
    assert [item["Id"] for item in found[0]] == wanted
    assert wanted
    assert found[1] == []  # the hostile city is just a city nobody lists in
    assert getattr(found[2], "code", None) == 1040
