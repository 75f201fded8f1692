"""``python -m flask_spark.testing``: run the Spark platform simulator in the foreground."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from ..config import is_loopback_host
from .platform import SparkPlatform
from .server import SimulatorServer, serve

DEFAULT_REDIRECT_URIS = ("http://127.0.0.1:5000/callback", "http://localhost:5000/callback")


def build_parser() -> argparse.ArgumentParser:
    """The command line's parser."""
    parser = argparse.ArgumentParser(
        prog="python -m flask_spark.testing",
        description="Run a simulated FBS Spark platform (OAuth 2 and data API) on loopback.",
    )
    parser.add_argument("--host", default="127.0.0.1", help="loopback address (127.0.0.1)")
    parser.add_argument("--port", type=int, default=5001, help="port (5001; 0 for any free)")
    parser.add_argument(
        "--tls", action="store_true", help="serve HTTPS with a throwaway CA (needs trustme)"
    )
    parser.add_argument("--client-id", default="flask-spark-test")
    parser.add_argument("--client-secret", default="flask-spark-secret")
    parser.add_argument(
        "--redirect-uri",
        action="append",
        dest="redirect_uris",
        metavar="URI",
        help="a redirect URI to accept, exactly (repeatable; default: "
        + ", ".join(DEFAULT_REDIRECT_URIS)
        + ")",
    )
    parser.add_argument(
        "--auto-approve",
        action="store_true",
        help="redirect back with a code at once instead of showing a consent page",
    )
    parser.add_argument(
        "--token-lifetime",
        type=int,
        default=86400,
        metavar="SECONDS",
        help="access token lifetime (86400)",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run until Ctrl-C (or SIGTERM); returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if not is_loopback_host(args.host):
        parser.error(f"--host must be a loopback address, not {args.host!r}")
    if args.token_lifetime < 1:
        parser.error("--token-lifetime must be at least 1")
    uris = tuple(args.redirect_uris or DEFAULT_REDIRECT_URIS)
    platform = SparkPlatform(
        args.client_id,
        args.client_secret,
        uris,
        auto_approve=args.auto_approve,
        token_lifetime=args.token_lifetime,
    )

    def describe(server: SimulatorServer) -> str:
        ca = f"; CA certificate: {server.ca_file}" if server.ca_file else ""
        return (
            f"Spark platform simulator listening on {server.url}{ca}; "
            f"client_id={args.client_id} client_secret={args.client_secret} "
            f"redirect_uris={' '.join(uris)} (Ctrl-C to stop)"
        )

    return serve(platform, describe, tls=args.tls, host=args.host, port=args.port)


if __name__ == "__main__":
    sys.exit(main())
