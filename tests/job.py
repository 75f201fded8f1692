"""A background job of the test portal, run as its own process:
``python -m tests.job ACCOUNT_ID GO_FILE``. It builds the portal app from the same
environment as the gunicorn workers, waits until ``GO_FILE`` exists, calls the API for
the account with ``spark.client_for`` and prints the account's name."""

from __future__ import annotations

import sys
import time
from pathlib import Path

from tests.portal_app import create_app


def main() -> None:
    account_id, go = sys.argv[1], Path(sys.argv[2])
    app = create_app()
    spark = app.extensions["spark"].extension
    with app.app_context():
        client = spark.client_for(account_id)
        deadline = time.monotonic() + 30
        while not go.exists() and time.monotonic() < deadline:
            time.sleep(0.001)
        print(client.get("/my/account")[0]["Name"])


if __name__ == "__main__":
    main()
