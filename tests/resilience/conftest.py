"""The gateway's test doubles of the backends (tests/gateway/conftest.py)."""

from tests.gateway.conftest import mesh  # noqa: F401 (a fixture, used by name)
