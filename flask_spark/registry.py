"""Where an app keeps its Spark instances, and which one serves a request."""

from __future__ import annotations

from typing import cast

from flask import Flask, current_app, g, has_request_context, request

from .config import DEFAULT_INSTANCE
from .instance import Instance

#: ``app.extensions`` key of every instance, by name (the default one's is also
#: ``app.extensions["spark"]``).
INSTANCES = "spark.instances"


def instances(app: Flask | None = None) -> dict[str, Instance]:
    """Every instance on ``app`` (the current app), by name."""
    target = app or current_app
    return cast("dict[str, Instance]", target.extensions.get(INSTANCES, {}))


def add_instance(app: Flask, instance: Instance) -> None:
    """Keep ``instance`` on ``app`` (the default one also as ``app.extensions["spark"]``)."""
    app.extensions.setdefault(INSTANCES, {})[instance.name] = instance
    if instance.name == DEFAULT_INSTANCE:
        app.extensions["spark"] = instance


def instance_named(app: Flask | None = None, name: str | None = None) -> Instance:
    """Instance ``name`` of ``app`` (the current app): the default one, or with
    ``name=None`` the only one there is.

    :raises RuntimeError: there is no such instance.
    """
    found = instances(app)
    if name is None:
        if DEFAULT_INSTANCE in found or len(found) != 1:
            name = DEFAULT_INSTANCE
        else:
            (name,) = found
    try:
        return found[name]
    except KeyError:
        if not found:
            message = (
                "Flask-Spark is not set up on this app: call Spark(app) or spark.init_app(app)"
            )
        else:
            message = f"no Spark instance named {name!r} on this app (there are {sorted(found)})"
        raise RuntimeError(message) from None


def serving_instance() -> Instance:
    """The instance that serves the current request: the one whose blueprint holds the
    view, else the one with the longest URL prefix over the path, else the default (or the
    only) instance. Outside a request, the default (or only) instance.

    :raises RuntimeError: several instances, no default, and none serves this request.
    """
    if not has_request_context():
        return instance_named()
    cached = g.get("_spark_serving")
    if cached is not None:
        return cast(Instance, cached)
    found = instances()
    chosen: Instance | None = None
    if len(found) == 1:
        (chosen,) = found.values()
    else:
        chosen = next((found[bp] for bp in request.blueprints if bp in found), None)
        if chosen is None:
            under = [instance for instance in found.values() if instance.serves(request.path)]
            under.sort(key=lambda instance: len(instance.url_prefix or ""), reverse=True)
            chosen = under[0] if under else found.get(DEFAULT_INSTANCE)
    if chosen is None:
        raise RuntimeError(
            "no Spark instance serves this request (and there is no default one): name "
            "one, as spark.api or spark.account"
        )
    g._spark_serving = chosen
    return chosen


__all__ = ["INSTANCES", "add_instance", "instance_named", "instances", "serving_instance"]
