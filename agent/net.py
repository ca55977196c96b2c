"""Name resolution behind an interface, so tests never depend on outside DNS."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Callable, Mapping
from typing import Protocol


class ResolveError(OSError):
    """Name lookup failed. `temporary` distinguishes SERVFAIL/timeout from NXDOMAIN."""

    def __init__(self, host: str, temporary: bool, reason: str) -> None:
        super().__init__(f"cannot resolve {host!r}: {reason}")
        self.host = host
        self.temporary = temporary


class Resolver(Protocol):
    async def resolve(self, host: str, port: int) -> list[str]:
        """Return IP addresses for host (IPv4 and IPv6), or raise ResolveError."""
        ...


class SystemResolver:
    """The system's resolver (getaddrinfo, in the loop's executor).

    An IP address is its own answer, with no thread and no lookup. A name's addresses are
    kept for `ttl` seconds after a successful lookup: a fleet has thousands of accounts on
    each provider host, and one lookup per probe would be that many DNS queries. Failures
    are not kept, so a broken name is seen again on the next probe.
    """

    def __init__(
        self,
        ttl: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
        max_entries: int = 10_000,
    ) -> None:
        self._ttl = ttl
        self._clock = clock
        self._max = max_entries
        self._cache: dict[str, tuple[float, tuple[str, ...]]] = {}

    async def resolve(self, host: str, port: int) -> list[str]:
        if _is_ip(host):
            return [host]
        now = self._clock()
        hit = self._cache.get(host)
        if hit is not None and hit[0] > now:
            return list(hit[1])
        loop = asyncio.get_running_loop()
        try:
            infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except socket.gaierror as e:
            self._cache.pop(host, None)
            temporary = e.errno in (socket.EAI_AGAIN, getattr(socket, "EAI_SYSTEM", -11))
            raise ResolveError(host, temporary, e.strerror or str(e)) from None
        out: list[str] = []
        for info in infos:
            addr = str(info[4][0])
            if addr not in out:
                out.append(addr)
        if self._ttl > 0 and out:
            if len(self._cache) >= self._max:
                self._cache = {h: e for h, e in self._cache.items() if e[0] > now}
                if len(self._cache) >= self._max:
                    self._cache.clear()
            self._cache[host] = (now + self._ttl, tuple(out))
        return out


class StaticResolver:
    """A resolver from a table: host -> addresses, or host -> "nxdomain" | "temporary"."""

    def __init__(self, table: Mapping[str, list[str] | str], fallback: Resolver | None = None):
        self._table = dict(table)
        self._fallback = fallback

    async def resolve(self, host: str, port: int) -> list[str]:
        entry = self._table.get(host)
        if entry is None:
            if _is_ip(host):
                return [host]
            if self._fallback is not None:
                return await self._fallback.resolve(host, port)
            raise ResolveError(host, False, "Name or service not known")
        if entry == "nxdomain":
            raise ResolveError(host, False, "Name or service not known")
        if entry == "temporary":
            raise ResolveError(host, True, "Temporary failure in name resolution")
        assert not isinstance(entry, str)
        return list(entry)


def _is_ip(host: str) -> bool:
    for family in (socket.AF_INET, socket.AF_INET6):
        try:
            socket.inet_pton(family, host)
            return True
        except OSError:
            pass
    return False
