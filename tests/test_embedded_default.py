"""The embedded default on real gunicorn workers: file sessions (never pruned) and the
SQLite grant store in the instance folder. Nothing a crowd does signs anyone out, and a
restart of every worker keeps everyone signed in."""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TypeVar

import pytest
import urllib3

from flask_spark.testing import ACCOUNTS, SparkPlatform

from .conftest import secret_values
from .gunicorn_server import GunicornServer, portal_env
from .http_browser import CookieBrowser
from .redis_server import RedisServer

pytestmark = pytest.mark.slow

USERS = 2000
ANONYMOUS_LOGINS = 5000
T = TypeVar("T")


def in_parallel(count: int, work: Callable[[int], T]) -> list[T]:
    with ThreadPoolExecutor(max_workers=16) as pool:
        return list(pool.map(work, range(count)))


def test_a_crowd_and_a_restart_sign_nobody_out(
    spark_platform: SparkPlatform,
    redis_server: RedisServer,
    http: urllib3.PoolManager,
    tmp_path: Path,
) -> None:
    # 2,000 sign-ins in a minute or two are more than an IDX key may make (1,500 calls in
    # five minutes); the simulator sets no limit here, and neither does the portal.
    env = portal_env(spark_platform, redis_server, SPARK_RATE_LIMIT=None)
    env["PORTAL_CACHE_DIR"] = str(tmp_path / "sessions")
    env["PORTAL_INSTANCE_DIR"] = str(tmp_path / "instance")
    server = GunicornServer(env, workers=3, threads=8)
    spark_platform.register_client(
        spark_platform.client_id, spark_platform.client_secret, (f"{server.url}/callback",)
    )
    server.start()
    try:
        users = [CookieBrowser(http) for _ in range(USERS)]

        def sign_in(index: int) -> None:
            users[index].sign_in(server.url, user=ACCOUNTS[index % len(ACCOUNTS)]["Id"])

        in_parallel(USERS, sign_in)

        def anonymous_login(_: int) -> int:
            return CookieBrowser(http).get(server.url + "/login").status

        assert set(in_parallel(ANONYMOUS_LOGINS, anonymous_login)) == {302}

        def still_signed_in(index: int) -> tuple[bool, int]:
            expected = ACCOUNTS[index % len(ACCOUNTS)]["Id"]
            who = users[index].whoami(server.url)
            return who == expected, users[index].get(server.url + "/account").status

        results = in_parallel(USERS, still_signed_in)
        assert sum(ok for ok, _ in results) == USERS
        assert [status for _, status in results].count(200) == USERS

        server.stop()  # every worker, and the master, go away
        server.start()
        results = in_parallel(USERS, still_signed_in)
        assert sum(ok for ok, _ in results) == USERS
        assert [status for _, status in results].count(200) == USERS
        assert (tmp_path / "instance" / "spark-grants.sqlite3").stat().st_mode & 0o077 == 0
    finally:
        server.stop()
    assert not [v for v in secret_values(spark_platform) if v in server.log.read_text()]
