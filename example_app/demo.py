"""Demo mode: the built-in Spark platform simulator, started on loopback over plain HTTP.

Every process that serves this portal from the same instance folder must talk to the *same*
simulator, because the simulator keeps the grants it issued in memory: a sign-in handled by
one gunicorn worker has to work in the others. So the first process takes an exclusive lock
on ``<instance folder>/simulator.lock`` and starts the simulator on a fixed port
(``SIMULATOR_PORT``); every other process finds the lock taken and simply uses that port.
The operating system drops the lock when its holder exits, so a restarted worker takes over.

This is demo plumbing: a portal that talks to the real Flexmls needs none of it.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterable
from typing import IO

from flask_spark.testing import SimulatorServer, SparkPlatform

#: The demo's client key; the simulator accepts it, the real platform does not.
DEMO_CLIENT_ID = "flask-spark-example"
DEMO_CLIENT_SECRET = "flask-spark-example-secret"  # noqa: S105 - the simulator's demo key


def callback_urls(port: int, paths: Iterable[str]) -> list[str]:
    """The portal's callback URLs on ``port``, for both ``127.0.0.1`` and ``localhost``.

    A browser keeps cookies per host name, so a sign-in started on one must come back to
    the same one: both are registered, and each sign-in names the one it started on.
    """
    return [f"http://{host}:{port}{path}" for path in paths for host in ("127.0.0.1", "localhost")]


class DemoSimulator:
    """The simulator this portal signs in against in demo mode.

    :ivar url: where it listens, e.g. ``http://127.0.0.1:5001``.
    :ivar platform: the :class:`SparkPlatform` when this process started it (tests use
        it to expire tokens and read counters); ``None`` when another process runs it.
    :ivar redirect_uris: the callback URLs it accepts.
    """

    def __init__(
        self,
        url: str,
        redirect_uris: list[str],
        platform: SparkPlatform | None = None,
        server: SimulatorServer | None = None,
        lock: IO[bytes] | None = None,
    ) -> None:
        self.url = url
        self.redirect_uris = redirect_uris
        self.platform = platform
        self._server = server
        self._lock = lock

    @property
    def owner(self) -> bool:
        """Whether this process runs the simulator."""
        return self._server is not None

    @classmethod
    def start_or_join(
        cls, instance_path: str, port: int, redirect_uris: list[str]
    ) -> DemoSimulator:
        """Start the simulator on ``127.0.0.1:port``, or use the one another process of
        this instance folder already runs there.

        :param port: ``0`` picks a free port; only one process can then use it.
        :raises RuntimeError: the port is taken by another program.
        """
        lock = _try_lock(os.path.join(instance_path, "simulator.lock"))
        if lock is None:
            if port == 0:
                raise RuntimeError(
                    "Another process of this portal runs the demo simulator on a random "
                    "port; set SIMULATOR_PORT to share it."
                )
            return cls(f"http://127.0.0.1:{port}", redirect_uris)
        platform = SparkPlatform(
            DEMO_CLIENT_ID,
            DEMO_CLIENT_SECRET,
            redirect_uris,
            auto_approve=False,  # show the consent page: the user clicks Approve
        )
        server = SimulatorServer(platform, tls=False, host="127.0.0.1", port=port)
        try:
            server.start()
        except OSError:
            lock.close()
            raise RuntimeError(
                f"The demo Spark simulator cannot listen on 127.0.0.1:{port}: another "
                "program uses that port. Run the portal on another port (python -m "
                "example_app --port N: the simulator takes N + 1), or set SIMULATOR_PORT "
                "to a free port."
            ) from None
        simulator = cls(server.url, redirect_uris, platform, server, lock)
        threading.Thread(
            target=_stop_after_main_thread,
            args=(simulator,),
            name="demo-simulator-exit",
            daemon=True,
        ).start()
        return simulator

    def stop(self) -> None:
        """Stop the simulator if this process runs it, and release the lock."""
        if self._server is not None:
            self._server.stop()
            self._server = None
        if self._lock is not None:
            self._lock.close()
            self._lock = None


def _stop_after_main_thread(simulator: DemoSimulator) -> None:
    """Stop the simulator once the main thread has finished (a gunicorn worker exiting).

    The simulator keeps a thread per browser connection and waits for them when the
    process exits, so an idle keep-alive connection from a browser would otherwise keep
    an exiting worker alive until gunicorn kills it. Python stops the main thread before
    it waits for the other threads, so this runs in time.
    """
    threading.main_thread().join()
    simulator.stop()


def _try_lock(path: str) -> IO[bytes] | None:
    """An open file holding an exclusive lock on ``path``, or ``None`` if another process
    (or another app of this process) holds it."""
    handle = open(path, "a+b")  # noqa: SIM115 - kept open for as long as the lock is held
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows: no gunicorn, one process per folder
        return handle
    try:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        handle.close()
        return None
    return handle
