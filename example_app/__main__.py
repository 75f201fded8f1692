"""``python -m example_app``: serve the example portal and print the URL to open.

Werkzeug's threaded server, fine for trying the portal out; for production run it under
gunicorn (see :mod:`example_app`).
"""

from __future__ import annotations

import argparse
import signal
import sys
from collections.abc import Callable, Iterable, Sequence
from types import FrameType
from typing import Any

from werkzeug.serving import make_server

from . import DEFAULT_PORT, close_app, create_app


def _not_yet(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    """Stands in for the portal between binding the port and creating the app."""
    raise RuntimeError("the portal is still starting")  # pragma: no cover


def main(argv: Sequence[str] | None = None) -> int:
    """Serve until Ctrl-C or SIGTERM; returns the exit status."""
    parser = argparse.ArgumentParser(
        prog="python -m example_app", description="Run the Flask-Spark example portal."
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (127.0.0.1)")
    parser.add_argument(
        "--port", type=int, default=DEFAULT_PORT, help=f"port ({DEFAULT_PORT}; 0 for any free)"
    )
    args = parser.parse_args(argv)

    # Listen first, so the app knows its real port (demo mode registers its callback URLs
    # for it) and nothing is started if the port is taken.
    try:
        server = make_server(args.host, args.port, _not_yet, threaded=True)
    except SystemExit:  # werkzeug has printed why (port in use...)
        return 1
    try:
        app = create_app({"PORT": server.port})
    except RuntimeError as exc:  # the demo simulator's port is taken, and the like
        server.server_close()
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except BaseException:
        server.server_close()
        raise
    server.app = app

    def on_sigterm(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_sigterm)
    host = "127.0.0.1" if args.host in {"0.0.0.0", "::"} else args.host  # noqa: S104
    if ":" in host:
        host = f"[{host}]"
    print(f"Flask-Spark example portal: open http://{host}:{server.port}/", flush=True)
    if app.config["EXAMPLE_DEMO"]:
        print(
            "Demo mode: the built-in Spark simulator stands in for Flexmls (made-up accounts)",
            flush=True,
        )
    print("Press Ctrl-C to stop.", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
        close_app(app)
    return 0


if __name__ == "__main__":
    sys.exit(main())
