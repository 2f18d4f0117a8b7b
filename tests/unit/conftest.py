"""Unit tests run without a network: a test that opens a socket fails loudly (pytest-socket)."""

import pytest


@pytest.fixture(autouse=True)
def _no_network(socket_disabled):
    yield
