"""Name resolution behind an interface, so tests never depend on outside DNS."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Mapping
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
    async def resolve(self, host: str, port: int) -> list[str]:
        loop = asyncio.get_running_loop()
        try:
            infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except socket.gaierror as e:
            temporary = e.errno in (socket.EAI_AGAIN, getattr(socket, "EAI_SYSTEM", -11))
            raise ResolveError(host, temporary, e.strerror or str(e)) from None
        out: list[str] = []
        for info in infos:
            addr = str(info[4][0])
            if addr not in out:
                out.append(addr)
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
