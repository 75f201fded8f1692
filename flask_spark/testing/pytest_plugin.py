"""Pytest fixtures for testing a Flask-Spark portal against the simulator.

Registered through the ``pytest11`` entry point ``flask_spark``, so installing
Flask-Spark makes them available:

- ``spark_simulator_server`` (session scope): one :class:`SimulatorServer` over HTTPS
  for the whole run.
- ``spark_platform``: that server's :class:`SparkPlatform`, :meth:`~SparkPlatform.reset`
  for each test; its ``url``, ``platform_url``, ``api_url`` and ``ca_file`` are set.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from .platform import SparkPlatform
from .server import SimulatorServer

__all__ = ["spark_platform", "spark_simulator_server"]


@pytest.fixture(scope="session")
def spark_simulator_server() -> Iterator[SimulatorServer]:
    """One simulator over real HTTPS (a throwaway CA) for the whole test session."""
    with SimulatorServer(SparkPlatform(), tls=True) as server:
        yield server


@pytest.fixture
def spark_platform(spark_simulator_server: SimulatorServer) -> SparkPlatform:
    """The session simulator's platform, reset to its defaults for this test."""
    platform = spark_simulator_server.platform
    platform.reset()
    return platform
