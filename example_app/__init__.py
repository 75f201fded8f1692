"""The Flask-Spark example portal: real estate agents sign in with Flexmls, search the
MLS's listings and their own (:mod:`example_app.agent`), and open a listing's page with
its photos; their clients sign in to the agents' VOW portals (:mod:`example_app.vow`).

Start it with one command, then open the URL it prints::

    python -m example_app                    # http://127.0.0.1:5000/  (--port N for another)

The same code runs under Flask's development server and under gunicorn::

    flask --app example_app run --debug      # port 5000; for another: FLASK_RUN_PORT=N
    gunicorn --bind 127.0.0.1:5000 --workers 3 'example_app:create_app()'
    PORT=8000 gunicorn --bind 127.0.0.1:8000 --workers 3 'example_app:create_app()'

**Demo mode** (the default, when ``SPARK_CLIENT_ID`` is not set): the portal starts the
built-in Spark platform simulator (:mod:`flask_spark.testing`) on ``127.0.0.1``, over
plain HTTP, on ``SIMULATOR_PORT`` (``PORT`` + 1), and signs in against it. Its consent
page lets you pick a demo user and click Approve or Deny. Under gunicorn every worker uses
the one simulator that the first worker started (see :mod:`example_app.demo`); the
simulator registers the portal's callback URLs on ``PORT`` for both ``127.0.0.1`` and
``localhost``, so ``PORT`` must be the port the portal is served on. Sessions are kept in
files in the instance folder, and a random secret key is written there too.

**Real platform**: set your key in the environment or in a ``.env`` file (read with
python-dotenv when it is installed)::

    SPARK_CLIENT_ID=...            SPARK_CLIENT_SECRET=...
    SPARK_REDIRECT_URI=https://portal.example.com/callback   (optional)
    SPARK_ROLE=idx | private | vow SPARK_PORTAL=...  (SPARK_PORTAL with SPARK_ROLE=vow)
    SPARK_AUTH_FLOW=oauth2 | openid  (how agents sign in; VOW portals always use oauth2)
    SECRET_KEY=...                 REDIS_URL=redis://localhost:6379/0  (else file sessions)
    SESSION_COOKIE_SECURE=1        (when served over HTTPS)

**VOW portals**: consumers sign in to an agent's VOW portal with a VOW key, through a
second :class:`~flask_spark.Spark` of the same app, named ``vow`` (:mod:`example_app.vow`):
``/portal/<portal>/`` is a portal's home page, and one browser can be signed in to the
agent portal and to portals at once. Demo mode serves the portals ``redriver`` and
``prairie``; for the real platform set ``SPARK_VOW_CLIENT_ID``,
``SPARK_VOW_CLIENT_SECRET`` and optionally ``VOW_PORTALS`` (comma-separated), and
register ``https://<your host>/portal/<portal>/callback`` for each portal with the key.

Other settings: ``PORT`` (5000), ``SIMULATOR_PORT``, ``INSTANCE_PATH`` (where the secret
key, the sessions and the simulator lock live; ``instance/`` beside this package).
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Mapping
from typing import Any

from cachelib import FileSystemCache
from flask import Flask, request, url_for
from flask_session import Session

from flask_spark import Spark

from .agent import bp as agent_bp
from .demo import DEMO_CLIENT_ID, DEMO_CLIENT_SECRET, DemoSimulator, callback_urls
from .pages import install_pages
from .vow import VOW_MOUNT, add_vow_portals, only_known_portals, portal_site

__all__ = ["close_app", "create_app"]

#: Environment variables passed to Flask-Spark as they are (strings).
SPARK_KEYS = (
    "SPARK_CLIENT_ID",
    "SPARK_CLIENT_SECRET",
    "SPARK_REDIRECT_URI",
    "SPARK_ROLE",
    "SPARK_PORTAL",
    "SPARK_AUTH_FLOW",
    "SPARK_PLATFORM_URL",
    "SPARK_API_URL",
    "SPARK_CA_CERTS",
    "SPARK_USER_AGENT",
    "SPARK_VOW_CLIENT_ID",
    "SPARK_VOW_CLIENT_SECRET",
)
#: The example's own string settings.
STRING_KEYS = ("SECRET_KEY", "REDIS_URL", "INSTANCE_PATH")
BOOL_KEYS = ("SPARK_ALLOW_HTTP_LOOPBACK", "SESSION_COOKIE_SECURE")
INT_KEYS = ("PORT", "SIMULATOR_PORT")

DEFAULT_PORT = 5000
#: The demo VOW portals (served under /portal/<name>/).
DEMO_PORTALS = ("redriver", "prairie")


def settings_from_env(environ: Mapping[str, str]) -> dict[str, Any]:
    """The settings found in ``environ``, as Flask config keys and Python values."""
    settings: dict[str, Any] = {}
    for key in (*SPARK_KEYS, *STRING_KEYS):
        if environ.get(key):
            settings[key] = environ[key]
    for key in BOOL_KEYS:
        if environ.get(key):
            settings[key] = environ[key].strip().lower() in {"1", "true", "yes", "on"}
    for key in INT_KEYS:
        if environ.get(key):
            settings[key] = int(environ[key])
    # `flask run` reads its port from FLASK_RUN_PORT: use it when PORT is not set.
    if "PORT" not in settings and environ.get("FLASK_RUN_PORT"):
        settings["PORT"] = int(environ["FLASK_RUN_PORT"])
    if environ.get("VOW_PORTALS"):
        settings["VOW_PORTALS"] = tuple(
            name.strip() for name in environ["VOW_PORTALS"].split(",") if name.strip()
        )
    return settings


def _load_dotenv() -> None:
    """Read ``.env`` from the current directory (or above) into ``os.environ``, without
    overriding what is already set, when python-dotenv is installed."""
    try:
        import dotenv
    except ImportError:  # pragma: no cover - python-dotenv is optional
        return
    path = dotenv.find_dotenv(".env", usecwd=True)
    if path:
        dotenv.load_dotenv(path, encoding="utf-8")


def create_app(
    config: Mapping[str, Any] | None = None, *, environ: Mapping[str, str] | None = None
) -> Flask:
    """Build the agent portal (with the VOW portals under ``/portal``).

    :param config: settings that win over the environment (``PORT``, ``SPARK_...``).
    :param environ: where settings are read from; ``os.environ`` (after loading ``.env``)
        by default. Tests pass ``{}`` to ignore the machine's environment.
    """
    if environ is None:
        _load_dotenv()
        environ = os.environ
    settings = settings_from_env(environ)
    settings.update(config or {})
    instance_path = settings.pop("INSTANCE_PATH", None)
    app = Flask(__name__, instance_path=os.path.abspath(instance_path) if instance_path else None)
    os.makedirs(app.instance_path, exist_ok=True)
    app.config.update(PORT=DEFAULT_PORT, SPARK_LOGIN_REDIRECT="/", SESSION_COOKIE_SAMESITE="Lax")
    app.config.update(settings)
    app.config.setdefault("SIMULATOR_PORT", app.config["PORT"] + 1)
    if not app.config.get("SECRET_KEY"):
        app.config["SECRET_KEY"] = instance_secret_key(app.instance_path)

    # Demo mode: no key configured, so sign in against the built-in simulator.
    demo = not app.config.get("SPARK_CLIENT_ID")
    app.config["EXAMPLE_DEMO"] = demo
    simulator: DemoSimulator | None = None
    if demo:
        app.config.setdefault("VOW_PORTALS", DEMO_PORTALS)
        paths = ["/callback", *(f"{VOW_MOUNT}/{p}/callback" for p in app.config["VOW_PORTALS"])]
        simulator = DemoSimulator.start_or_join(
            app.instance_path,
            app.config["SIMULATOR_PORT"],
            callback_urls(app.config["PORT"], paths),
        )
        app.config.update(demo_spark_config(simulator))
        if simulator.owner:
            app.logger.warning(
                "Demo mode: started the built-in Spark simulator at %s; no real Flexmls "
                "account is used (set SPARK_CLIENT_ID and SPARK_CLIENT_SECRET for that)",
                simulator.url,
            )
        else:
            app.logger.warning(
                "Demo mode: using the built-in Spark simulator another process of this "
                "portal started at %s",
                simulator.url,
            )
        app.extensions["example_simulator"] = simulator

    try:
        use_server_side_sessions(app, cookie_name="session", folder="sessions")
        # The app's Spark instances, kept to close them (close_app).
        sparks: list[Spark] = app.extensions.setdefault("example_sparks", [])
        sparks.append(Spark(app))
        app.register_blueprint(agent_bp)
        if demo or app.config.get("SPARK_VOW_CLIENT_ID"):
            sparks.append(add_vow_portals(app))
            app.before_request(only_known_portals)
        install_pages(app, site_of_request)
    except BaseException:
        close_app(app)
        raise
    return app


def site_of_request() -> tuple[str, str, str]:
    """The site a page belongs to (a VOW portal's pages are those the ``vow`` instance or
    the ``portals`` blueprint serve): its name, home and sign-out URLs."""
    if request.blueprint in ("portals", "vow"):
        name, home = portal_site()
        portal = (request.view_args or {}).get("portal")
        return name, home, url_for("vow.logout", portal=portal) if portal else home
    return "Agent Portal", url_for("agent.home"), url_for("spark.logout")


def demo_spark_config(simulator: DemoSimulator) -> dict[str, Any]:
    """The ``SPARK_`` keys that point Flask-Spark at the demo simulator."""
    return {
        "SPARK_CLIENT_ID": DEMO_CLIENT_ID,
        "SPARK_CLIENT_SECRET": DEMO_CLIENT_SECRET,
        "SPARK_PLATFORM_URL": simulator.url,
        "SPARK_API_URL": simulator.url,
        # The simulator speaks plain HTTP on loopback; Flask-Spark refuses http otherwise.
        "SPARK_ALLOW_HTTP_LOOPBACK": True,
        "SPARK_USER_AGENT": "Flask-Spark example portal",
    }


def use_server_side_sessions(app: Flask, *, cookie_name: str, folder: str) -> None:
    """Flask-Session, which Flask-Spark needs: it keeps tokens server-side, beside the
    session. Redis when ``REDIS_URL`` is set (several hosts), else files in the instance
    folder (one host, any number of processes)."""
    redis_url = app.config.get("REDIS_URL")
    if redis_url:
        import redis

        app.config.update(SESSION_TYPE="redis", SESSION_REDIS=redis.Redis.from_url(redis_url))
    else:
        # SESSION_TYPE="filesystem" is deprecated in Flask-Session; cachelib's
        # FileSystemCache is its replacement. threshold=0: it never prunes live sessions
        # (its default of 500 signs users out once more than 500 sessions exist).
        cache = FileSystemCache(os.path.join(app.instance_path, folder), threshold=0)
        app.config.update(SESSION_TYPE="cachelib", SESSION_CACHELIB=cache)
    app.config.update(SESSION_COOKIE_NAME=cookie_name, SESSION_KEY_PREFIX=f"{cookie_name}:")
    Session(app)


def instance_secret_key(instance_path: str) -> str:
    """A random secret key kept in ``<instance folder>/secret_key``, made on first use.

    Every process of the portal must sign sessions with the same key, so the first one to
    create the file wins (``os.link`` fails if it exists) and the others read it.
    """
    path = os.path.join(instance_path, "secret_key")
    if not os.path.exists(path):
        draft = f"{path}.{os.getpid()}.tmp"
        fd = os.open(draft, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(secrets.token_hex(32))
        try:
            os.link(draft, path)
        except FileExistsError:
            pass
        finally:
            os.unlink(draft)
    with open(path) as handle:
        return handle.read().strip()


def close_app(app: Flask) -> None:
    """Release what :func:`create_app` opened: the demo simulator (if this process runs
    it), Flask-Spark's HTTP connections and the Redis connections."""
    for spark in app.extensions.get("example_sparks", []):
        spark.close(app)
    client = app.config.get("SESSION_REDIS")
    if client is not None:
        client.close()
    simulator = app.extensions.get("example_simulator")
    if simulator is not None:
        simulator.stop()
