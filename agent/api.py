"""HTTP: /metrics, health and readiness, reload, and the portal's /api/v1.

The /api/v1 routes are for the portal's backend, never for browsers: a bearer token from
the config is required (compared in constant time); responses carry an ETag and honour
If-None-Match, since the portal polls. The handlers know nothing of probes or storage:
they call a Backend.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Sequence
from typing import Any, Protocol

from aiohttp import web

from agent.metrics import CONTENT_TYPE
from agent.openapi import OPENAPI
from agent.secret import Secret


class RecheckLimited(Exception):
    def __init__(self, retry_after: float) -> None:
        super().__init__(f"recheck limited; retry after {retry_after:.0f}s")
        self.retry_after = retry_after


class Backend(Protocol):
    def ready(self) -> bool: ...

    def api_tokens(self) -> Sequence[Secret]: ...

    async def metrics_chunks(self) -> list[bytes]: ...

    async def reload(self) -> tuple[bool, str]: ...

    def status_json(self, account_id: str) -> Rendered | None: ...

    def banner_json(self, owner_id: str) -> Rendered: ...

    async def recheck_json(self, account_id: str) -> Rendered | None:
        """Fresh status after probing now; None for an unknown account; raises
        RecheckLimited when asked too often."""
        ...

    def release_burst(self, provider: str) -> int: ...


class Rendered:
    """A JSON document rendered once, with its ETag: the portal polls, and most polls of
    an unchanged document cost a dictionary lookup and a 304."""

    __slots__ = ("body", "etag", "headers")

    def __init__(self, doc: Any) -> None:
        self.body = json.dumps(doc, separators=(",", ":"), sort_keys=True).encode()
        self.etag = '"' + hashlib.sha256(self.body).hexdigest()[:32] + '"'
        self.headers = {
            "ETag": self.etag,
            "Cache-Control": "no-cache",
            "Content-Type": "application/json",
        }


def _send(request: web.Request, doc: Rendered) -> web.Response:
    inm = request.headers.get("If-None-Match")
    if inm is not None and doc.etag in _etags(inm):
        return web.Response(status=304, headers={"ETag": doc.etag, "Cache-Control": "no-cache"})
    return web.Response(body=doc.body, headers=doc.headers)


def _etags(raw: str) -> set[str]:
    return {t.strip().removeprefix("W/") for t in raw.split(",") if t.strip()}


def _error(status: int, message: str, headers: dict[str, str] | None = None) -> web.Response:
    return web.json_response({"error": message}, status=status, headers=headers)


_UNAUTHORIZED = {"WWW-Authenticate": "Bearer"}


def make_app(backend: Backend, *, api: bool = True, admin: bool = True) -> web.Application:
    """The aiohttp application. With api.listen set, the daemon builds two: one with the
    admin routes (metrics, health, reload) and one with /api/v1."""

    def authorized(request: web.Request) -> bool:
        scheme, _, token = request.headers.get("Authorization", "").partition(" ")
        return scheme.lower() == "bearer" and _token_ok(token.strip(), backend.api_tokens())

    def denied() -> web.Response:
        return _error(401, "missing or invalid bearer token", _UNAUTHORIZED)

    app = web.Application()

    async def metrics(request: web.Request) -> web.StreamResponse:
        chunks = await backend.metrics_chunks()
        resp = web.StreamResponse(headers={"Content-Type": CONTENT_TYPE})
        resp.content_length = sum(map(len, chunks))
        await resp.prepare(request)
        if request.method != "HEAD":
            for chunk in chunks:
                await resp.write(chunk)
        await resp.write_eof()
        return resp

    async def healthy(_: web.Request) -> web.Response:
        return web.Response(text="Healthy\n")

    async def ready(_: web.Request) -> web.Response:
        if backend.ready():
            return web.Response(text="Ready\n")
        return web.Response(status=503, text="Not ready\n")

    async def reload(_: web.Request) -> web.Response:
        ok, message = await backend.reload()
        return web.json_response({"ok": ok, "message": message}, status=200 if ok else 500)

    # /api/v1 routes answer only a bearer token from api.tokens (checked first in each)
    async def status(request: web.Request) -> web.StreamResponse:
        if not authorized(request):
            return denied()
        doc = backend.status_json(request.match_info["account_id"])
        if doc is None:
            return _error(404, "unknown account")
        return _send(request, doc)

    async def banner(request: web.Request) -> web.StreamResponse:
        if not authorized(request):
            return denied()
        return _send(request, backend.banner_json(request.match_info["owner_id"]))

    async def recheck(request: web.Request) -> web.StreamResponse:
        if not authorized(request):
            return denied()
        try:
            doc = await backend.recheck_json(request.match_info["account_id"])
        except RecheckLimited as e:
            return _error(
                429,
                "recheck asked too often for this account",
                {"Retry-After": str(max(1, int(e.retry_after + 0.999)))},
            )
        if doc is None:
            return _error(404, "unknown account")
        return _send(request, doc)

    async def release(request: web.Request) -> web.StreamResponse:
        if not authorized(request):
            return denied()
        n = backend.release_burst(request.match_info["provider"])
        return web.json_response({"released": n})

    async def openapi(_: web.Request) -> web.Response:
        return web.json_response(OPENAPI)

    if admin:
        app.router.add_get("/metrics", metrics)
        app.router.add_get("/-/healthy", healthy)
        app.router.add_get("/-/ready", ready)
        app.router.add_post("/-/reload", reload)
    if api:
        app.router.add_get("/api/v1/openapi.json", openapi)
        app.router.add_get("/api/v1/accounts/{account_id}/status", status)
        app.router.add_post("/api/v1/accounts/{account_id}/recheck", recheck)
        app.router.add_get("/api/v1/users/{owner_id}/banner", banner)
        app.router.add_post("/api/v1/bursts/{provider}/release", release)
    return app


def _token_ok(given: str, tokens: Sequence[Secret]) -> bool:
    ok = False
    raw = given.encode()
    for t in tokens:
        # compare_digest on every token: no early exit that would leak which one matched
        ok |= hmac.compare_digest(raw, t.reveal().encode())
    return ok and bool(given)
