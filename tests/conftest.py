"""Fixtures live in tests/servers/, one module per real server kind."""

import socket

import pytest

pytest_plugins = [
    "tests.servers.tls",
    "tests.servers.dovecot",
    "tests.servers.radicale",
    "tests.servers.replay",
    "tests.servers.smtp_sink",
    "tests.servers.agent",
]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def port() -> int:
    return free_port()
