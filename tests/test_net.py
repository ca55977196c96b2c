"""The system resolver: IP literals need no lookup; names are looked up once per TTL."""

from __future__ import annotations

import asyncio
import socket
from typing import Any

import pytest

from agent.net import ResolveError, SystemResolver


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def lookups(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Count the loop's getaddrinfo calls (the real one still answers)."""
    calls: list[str] = []
    loop_cls = type(asyncio.get_event_loop_policy().new_event_loop())
    real = loop_cls.getaddrinfo

    async def counting(self: Any, host: str, *a: Any, **kw: Any) -> Any:
        calls.append(host)
        return await real(self, host, *a, **kw)

    monkeypatch.setattr(loop_cls, "getaddrinfo", counting)
    return calls


async def test_an_ip_address_is_its_own_answer(lookups: list[str]) -> None:
    r = SystemResolver()
    assert await r.resolve("127.0.0.1", 993) == ["127.0.0.1"]
    assert await r.resolve("::1", 993) == ["::1"]
    assert lookups == []


async def test_a_name_is_looked_up_once_per_ttl(lookups: list[str]) -> None:
    clock = Clock()
    r = SystemResolver(ttl=30, clock=clock)
    first = await r.resolve("localhost", 993)
    assert "127.0.0.1" in first or "::1" in first
    assert await r.resolve("localhost", 465) == first
    assert lookups == ["localhost"]
    clock.now += 31
    assert await r.resolve("localhost", 993) == first
    assert lookups == ["localhost", "localhost"]


async def test_a_failed_lookup_is_not_kept(monkeypatch: pytest.MonkeyPatch) -> None:
    r = SystemResolver(ttl=30, clock=Clock())
    answers: list[Any] = [
        socket.gaierror(socket.EAI_AGAIN, "Temporary failure in name resolution"),
        [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("192.0.2.7", 993))],
    ]

    async def scripted(*a: Any, **kw: Any) -> Any:
        answer = answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer

    monkeypatch.setattr(asyncio.get_running_loop(), "getaddrinfo", scripted)
    with pytest.raises(ResolveError) as info:
        await r.resolve("mail.example.com", 993)
    assert info.value.temporary is True
    assert await r.resolve("mail.example.com", 993) == ["192.0.2.7"]
    assert answers == []
