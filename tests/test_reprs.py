"""No ``repr`` or ``str`` of any Flask-Spark object a view can reach holds an issued value.

Error trackers record the local variables of a failing frame by their ``repr``: the walk
below starts where a view starts (the per-app state, ``spark_api``, ``spark_account``,
this request's ``g``) and follows every attribute, item and slot of every Flask-Spark
object it meets, after sign-ins, refreshes, failures and a sign-out have filled them.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from flask import Flask, g, jsonify

from flask_spark import spark_account, spark_api, spark_login_required
from flask_spark.errors import SparkError
from flask_spark.testing import Fault, SparkPlatform

from .conftest import AppFactory, Browser, secret_values
from .store_fixtures import clean_store_url

TOKEN_KEY = "repr-test-token-key-0123456789abcdefghij"
SECRET_KEY = "repr-test-secret-key-0123456789"


def _ours(value: Any) -> bool:
    return type(value).__module__.startswith("flask_spark")


def _children(value: Any) -> Iterator[Any]:
    if isinstance(value, dict):
        yield from value.keys()
        yield from value.values()
    elif isinstance(value, list | tuple | set | frozenset):
        yield from value
    elif _ours(value) or isinstance(value, BaseException):
        yield from getattr(value, "__dict__", {}).values()
        for cls in type(value).__mro__:
            for name in getattr(cls, "__slots__", ()):
                if hasattr(value, name):
                    yield getattr(value, name)


def reachable(*roots: Any, depth: int = 8) -> Iterator[Any]:
    """Every Flask-Spark object and exception under ``roots``, through attributes, slots
    and containers (whose own ``repr`` is not Flask-Spark's to choose: a secret has to be
    kept somewhere, behind the ``repr`` of the object that holds it)."""
    seen: set[int] = set()
    todo = [(root, 0) for root in roots]
    while todo:
        value, level = todo.pop()
        if id(value) in seen or level > depth:
            continue
        seen.add(id(value))
        if _ours(value) or isinstance(value, BaseException):
            yield value
        if _ours(value) or isinstance(value, BaseException | dict | list | tuple | set):
            todo.extend((child, level + 1) for child in _children(value))


def test_no_repr_a_view_can_reach_holds_an_issued_value(
    make_app: AppFactory, browser_for: Any, spark_platform: SparkPlatform
) -> None:
    app: Flask = make_app(SPARK_TOKEN_KEYS=[TOKEN_KEY], SECRET_KEY=SECRET_KEY)
    seen: list[str] = []
    kinds: set[str] = set()
    failures: list[BaseException] = []

    @app.get("/inspect")
    @spark_login_required
    def inspect() -> Any:
        spark_api.get("/my/account")
        spark_platform.add_fault(Fault("data", "status", status=409))
        try:
            spark_api.get("/listings")
        except SparkError as exc:
            failures.append(exc)
        roots = [app.extensions["spark"], spark_api._get_current_object(), g.__dict__]
        roots += [spark_account._get_current_object(), *failures]
        for value in reachable(*roots):
            kinds.add(type(value).__name__)
            seen.append(repr(value))
            seen.append(str(value))
        return jsonify(sorted(kinds))

    browser: Browser = browser_for(app)
    assert browser.sign_in().status_code == 303
    spark_platform.expire_all()  # a refresh inside the view
    answer = browser.client.get("/inspect")
    assert answer.status_code == 200
    met = {"Instance", "SparkConfig", "TokenManager", "SealedStore", "Sealer", "Transport"}
    met |= {"GrantClient", "SparkClient", "Grant", "GrantKey", "SparkAccount", "SparkAPIError"}
    assert met <= set(answer.json)

    text = "\n".join(seen)
    issued = secret_values(spark_platform) | {TOKEN_KEY, SECRET_KEY}
    assert spark_platform.stats.refreshes == 1
    assert not [value for value in issued if value in text]


@pytest.mark.slow
def test_no_repr_holds_the_store_password(
    request: pytest.FixtureRequest,
    make_app: AppFactory,
    browser_for: Any,
    spark_platform: SparkPlatform,
) -> None:
    # PostgreSQL here trusts loopback, so any password works, and must never show.
    url = clean_store_url(request, "postgresql").replace(
        "postgres@", "postgres:hunter2-store-password@"
    )
    assert "hunter2-store-password" in url
    app = make_app(SPARK_GRANT_STORE=url)
    browser: Browser = browser_for(app)
    assert browser.sign_in().status_code == 303
    text = "\n".join(repr(v) + str(v) for v in reachable(app.extensions["spark"]))
    assert "hunter2-store-password" not in text
    assert not [v for v in secret_values(spark_platform) if v in text]
