"""A faithful, offline simulator of the FBS Spark platform for testing Flexmls sign-in.

:class:`SparkPlatform` is a plain WSGI application: the OAuth 2 authorization and grant
endpoints and a small data API with the ``{"D": ...}`` envelope, plus a thread-safe control
API (expire tokens, inject faults, read counters and recorded requests).
:class:`SimulatorServer` serves it on a loopback port over real HTTPS with a throwaway CA.
``python -m flask_spark.testing`` runs one in the foreground, and the pytest plugin
(:mod:`flask_spark.testing.pytest_plugin`) provides the ``spark_platform`` fixture;
:func:`sign_in` walks a test client through a sign-in.
"""

from __future__ import annotations

from .data import ACCOUNTS, LISTINGS, consumers
from .faults import Fault
from .oauth import GrantInfo
from .platform import SparkPlatform
from .records import RecordedRequest, Stats
from .server import SimulatorServer
from .signin import sign_in

__all__ = [
    "ACCOUNTS",
    "LISTINGS",
    "Fault",
    "GrantInfo",
    "RecordedRequest",
    "SimulatorServer",
    "SparkPlatform",
    "Stats",
    "consumers",
    "sign_in",
]
