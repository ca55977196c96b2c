"""Bounded HTTP for probes and the OAuth token endpoint, over aiohttp.

What a server cannot make this layer do:
- read more than `max_body` bytes of a body (read in chunks; the connection is closed
  at the cap), more than `error_body` bytes of an error body, header lines or fields
  longer than `max_line`, or more than `max_headers` headers;
- follow a redirect to another origin (scheme, host, port), or more than
  `max_redirects` of them: credentials only ever go to the configured origin, so a
  server can never point us at a private, loopback or link-local address of its choosing;
- skip TLS verification: verify is on unless `tls.verify` is false; `tls.ca_file`
  replaces the system trust store;
- bypass the injected `agent.net.Resolver` (IP literals aside), use a proxy from the
  environment, or keep cookies.

Transport failures become `ProbeError(Evidence)` with the shared network vocabulary
(agent.probes.errors); HTTP statuses come back as `HttpResponse` so the caller decides.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import ssl
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import TracebackType

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult
from yarl import URL

from agent.config.types import TlsSettings
from agent.model import Evidence
from agent.net import ResolveError, Resolver
from agent.probes.base import ProbeError
from agent.probes.errors import network_kind
from agent.probes.tls import client_context
from agent.secret import Redactor

log = logging.getLogger(__name__)

# Response headers kept in Evidence (lower-case).
KEPT_HEADERS = (
    "www-authenticate",
    "retry-after",
    "content-type",
    "location",
    "content-length",
    "dav",
    "server",
)
REDIRECTS = frozenset({301, 302, 303, 307, 308})


@dataclass(frozen=True)
class HttpLimits:
    max_body: int = 2 * 1024 * 1024
    max_line: int = 16 * 1024
    max_headers: int = 100
    max_redirects: int = 3
    error_body: int = 4096  # bytes of a >= 400 body kept as evidence


@dataclass(frozen=True)
class HttpResponse:
    status: int
    reason: str
    url: str  # after redirects
    body: bytes
    headers: Mapping[str, str] = field(default_factory=dict)  # KEPT_HEADERS, lower-case

    def text(self, limit: int = 4096) -> str:
        return self.body[:limit].decode("utf-8", errors="replace")


def ssl_context(tls: TlsSettings) -> ssl.SSLContext:
    """The shared client context for these settings (agent.probes.tls)."""
    return client_context(tls)


def same_origin(a: URL, b: URL) -> bool:
    return (a.scheme, (a.host or "").lower(), a.port) == (b.scheme, (b.host or "").lower(), b.port)


class _ResolverAdapter(AbstractResolver):
    """agent.net.Resolver as an aiohttp resolver."""

    def __init__(self, resolver: Resolver) -> None:
        self._resolver = resolver

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        out: list[ResolveResult] = []
        for addr in await self._resolver.resolve(host, port):
            fam = socket.AF_INET6 if ":" in addr else socket.AF_INET
            if family not in (socket.AF_UNSPEC, fam):
                continue
            out.append(
                ResolveResult(
                    hostname=host,
                    host=addr,
                    port=port,
                    family=fam,
                    proto=0,
                    flags=socket.AI_NUMERICHOST,
                )
            )
        if not out:
            raise ResolveError(host, False, "no address of a usable family")
        return out

    async def close(self) -> None:
        return None


LogFn = Callable[[str, str], None]


class GuardedHttp:
    """One short-lived HTTP client for one probe (or one token request).

    Use as `async with GuardedHttp(...) as http: resp = await http.request(...)`.
    `abort()` (sync) tears down every connection; register it with `ctx.on_abort`.
    """

    def __init__(
        self,
        *,
        protocol: str,
        resolver: Resolver,
        tls: TlsSettings | None = None,
        timeout: float = 20.0,
        limits: HttpLimits = HttpLimits(),
        redact: Redactor | None = None,
        log_line: LogFn | None = None,
    ) -> None:
        self.protocol = protocol
        self.limits = limits
        self.redact = redact or Redactor()
        self._log_line = log_line
        self._tls = tls or TlsSettings()
        self._resolver = resolver
        self._timeout = timeout
        self._session: aiohttp.ClientSession | None = None
        self._connector: aiohttp.TCPConnector | None = None
        self._closing: asyncio.Future[None] | None = None

    async def __aenter__(self) -> GuardedHttp:
        self._connector = aiohttp.TCPConnector(
            resolver=_ResolverAdapter(self._resolver),
            ssl=ssl_context(self._tls),
            force_close=True,
            use_dns_cache=False,
            limit=4,
        )
        self._session = aiohttp.ClientSession(
            connector=self._connector,
            timeout=aiohttp.ClientTimeout(total=self._timeout),
            cookie_jar=aiohttp.DummyCookieJar(),
            trust_env=False,
            auto_decompress=False,
            max_line_size=self.limits.max_line,
            max_field_size=self.limits.max_line,
            max_headers=self.limits.max_headers,
        )
        return self

    async def __aexit__(
        self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    def abort(self) -> None:
        connector, self._connector = self._connector, None
        if connector is not None and not connector.closed:
            self._closing = asyncio.ensure_future(connector.close(abort_ssl=True))

    def _log(self, direction: str, line: str) -> None:
        if self._log_line is not None:
            self._log_line(direction, line)

    async def request(
        self,
        method: str,
        url: str,
        *,
        stage: str,
        headers: Mapping[str, str] | None = None,
        data: bytes | str | Mapping[str, str] | None = None,
        follow_redirects: bool = True,
        middlewares: tuple[aiohttp.ClientMiddlewareType, ...] = (),
    ) -> HttpResponse:
        """Send one request, following same-origin redirects. Raises ProbeError for
        transport failures, an over-long body, and refused redirects."""
        assert self._session is not None, "use GuardedHttp as an async context manager"
        start = URL(url)
        current = start
        hdrs = {"Accept-Encoding": "identity", "User-Agent": "syncwatch"}
        hdrs.update(headers or {})
        for hop in range(self.limits.max_redirects + 1):
            resp = await self._one(method, current, stage, hdrs, data, middlewares)
            if not follow_redirects or resp.status not in REDIRECTS:
                return resp
            location = resp.headers.get("location", "")
            target = current.join(URL(location)) if location else None
            if target is None or not same_origin(start, target):
                raise ProbeError(
                    self.evidence(
                        resp, stage, note=f"redirect to another origin refused: {location[:300]}"
                    )
                )
            if hop == self.limits.max_redirects:
                raise ProbeError(
                    self.evidence(
                        resp, stage, note=f"more than {self.limits.max_redirects} redirects"
                    )
                )
            self._log("*", f"following same-origin redirect to {target.path}")
            current = target
        raise AssertionError("unreachable")

    async def _one(
        self,
        method: str,
        url: URL,
        stage: str,
        headers: Mapping[str, str],
        data: bytes | str | Mapping[str, str] | None,
        middlewares: tuple[aiohttp.ClientMiddlewareType, ...],
    ) -> HttpResponse:
        assert self._session is not None
        self._log("C", f"{method} {url.with_query(None)}")
        try:
            async with self._session.request(
                method,
                url,
                headers=headers,
                data=data,
                allow_redirects=False,
                middlewares=middlewares,
            ) as resp:
                kept = {
                    k: self.redact(resp.headers.get(k, ""))[:1000]
                    for k in KEPT_HEADERS
                    if k in resp.headers
                }
                self._log("S", f"{resp.status} {resp.reason or ''}")
                body = await self._read(resp, stage, kept)
                return HttpResponse(resp.status, resp.reason or "", str(url), body, kept)
        except ProbeError:
            raise
        except Exception as exc:
            raise ProbeError(self.transport_evidence(stage, exc)) from None

    async def _read(self, resp: aiohttp.ClientResponse, stage: str, kept: dict[str, str]) -> bytes:
        cap = self.limits.max_body if resp.status < 400 else self.limits.error_body
        declared = resp.content_length
        buf = bytearray()
        if declared is None or declared <= self.limits.max_body or resp.status >= 400:
            async for chunk in resp.content.iter_chunked(64 * 1024):
                buf += chunk
                if len(buf) > cap:
                    break
        if len(buf) <= cap and (declared is None or declared <= cap or resp.status >= 400):
            return bytes(buf)
        if resp.status >= 400:
            resp.close()
            return bytes(buf[:cap])
        resp.close()  # do not drain the rest: drop the connection
        raise ProbeError(
            Evidence(
                protocol=self.protocol,
                stage=stage,
                network="too_large",
                code=resp.status,
                text=f"response body larger than {cap} bytes",
                headers=kept,
            )
        )

    def evidence(self, resp: HttpResponse, stage: str, note: str = "") -> Evidence:
        """Evidence for an HTTP answer: status, body (capped, redacted), kept headers."""
        text = self.redact(resp.text(self.limits.error_body))
        if note:
            text = f"{note}\n{text}" if text else note
        return Evidence(
            protocol=self.protocol,
            stage=stage,
            code=resp.status,
            text=text,
            headers=dict(resp.headers),
        )

    def transport_evidence(self, stage: str, exc: BaseException) -> Evidence:
        kind, cause = _transport_kind(exc)
        if kind in ("tls_cert", "tls_handshake"):
            stage = "tls"
        text = f"{type(cause).__name__}: {cause}"
        if isinstance(cause, ssl.SSLCertVerificationError) and cause.verify_message:
            text = f"certificate verify failed: {cause.verify_message}"
        return Evidence(
            protocol=self.protocol,
            stage=stage,
            network=kind,
            exception=self.redact(text)[:500],
        )


def _transport_kind(exc: BaseException) -> tuple[str | None, BaseException]:
    """(network kind, the exception that explains it) for what aiohttp raised."""
    if isinstance(exc, aiohttp.ClientConnectorCertificateError):
        return "tls_cert", exc.certificate_error
    if isinstance(exc, aiohttp.ClientConnectorSSLError | aiohttp.ClientSSLError):
        return "tls_handshake", exc
    if isinstance(exc, aiohttp.ClientConnectorError):
        inner = exc.os_error
        return network_kind(inner) or "refused", inner
    if isinstance(exc, aiohttp.ServerDisconnectedError | aiohttp.ClientPayloadError):
        return "eof", exc
    if isinstance(exc, asyncio.TimeoutError | aiohttp.ServerTimeoutError):
        return "timeout", exc
    if isinstance(exc, aiohttp.ClientResponseError):
        msg = str(exc.message)
        if "Got more than" in msg or "Too many headers" in msg or "too long" in msg.lower():
            return "too_large", exc
        return None, exc
    if isinstance(exc, ssl.SSLCertVerificationError):
        return "tls_cert", exc
    return network_kind(exc), exc
