"""The demo's own web server: a stand-in for the portal's backend, and pages to look at.

    /portal/                      the demo portal page (agent/portal/index.html)
    /portal/syncwatch-banner.js   the embeddable banner snippet
    /portal/api/owners            the demo's owners (for the page's owner switch)
    /portal/api/banner?owner=ID   forwards to the daemon's /api/v1/users/ID/banner with the
                                  token, passing If-None-Match / ETag / 304 through
    /portal/api/recheck?owner=ID&account=ACC   (POST) forwards the recheck
    /portal/reconnect?account=ACC the page the banner's Reconnect button opens
    /demo/status[/ACC]            account status documents (the daemon's, with the token)
    /demo/emails[.json]           what the SMTP sink caught

The browser never sees the API token: only this backend holds it. A real portal takes the
owner from its login session, never from the query string as this demo does.
"""

from __future__ import annotations

import html
import json
from collections.abc import Mapping
from email.message import EmailMessage
from pathlib import Path
from typing import Any

from aiohttp import web

from agent.demo.env import DemoEnv
from agent.demo.scenario import ACCOUNTS, account

PORTAL_DIR = Path(__file__).resolve().parent.parent / "portal"
_PASS_HEADERS = ("ETag", "Cache-Control", "Retry-After")

ENV_KEY = web.AppKey("env", DemoEnv)


def _forward(status: int, headers: Mapping[str, str], body: bytes) -> web.Response:
    if status == 0:
        return web.json_response({"error": "syncwatch API unreachable"}, status=502)
    out = {k: headers[k] for k in _PASS_HEADERS if k in headers}
    if status == 304:
        return web.Response(status=304, headers=out)
    return web.Response(status=status, body=body, content_type="application/json", headers=out)


def _owner(request: web.Request) -> str:
    owner = request.query.get("owner", "")
    if not any(a.owner_id == owner for a in ACCOUNTS):
        raise web.HTTPNotFound(
            text=json.dumps({"error": "unknown owner"}), content_type="application/json"
        )
    return owner


async def banner(request: web.Request) -> web.Response:
    env = request.app[ENV_KEY]
    owner = _owner(request)
    headers = {}
    if inm := request.headers.get("If-None-Match"):
        headers["If-None-Match"] = inm
    return _forward(*await env.daemon.get(f"/api/v1/users/{owner}/banner", headers))


async def recheck(request: web.Request) -> web.Response:
    env = request.app[ENV_KEY]
    owner = _owner(request)
    a = account(request.query.get("account", ""))
    if a is None or a.owner_id != owner:  # the owner may recheck only their own accounts
        return web.json_response({"error": "unknown account"}, status=404)
    return _forward(*await env.daemon.post(f"/api/v1/accounts/{a.id}/recheck"))


async def owners(_: web.Request) -> web.Response:
    return web.json_response(
        [
            {"owner": a.owner_id, "name": a.name.title(), "account": a.id, "story": a.story}
            for a in ACCOUNTS
        ]
    )


async def status(request: web.Request) -> web.Response:
    env = request.app[ENV_KEY]
    if acc := request.match_info.get("account"):
        return _forward(*await env.daemon.get(f"/api/v1/accounts/{acc}/status"))
    docs: dict[str, Any] = {}
    for a in ACCOUNTS:
        code, _, body = await env.daemon.get(f"/api/v1/accounts/{a.id}/status")
        docs[a.id] = json.loads(body) if code == 200 else {"error": code}
    return web.json_response(docs)


def _text(msg: EmailMessage) -> str:
    part = msg.get_body(preferencelist=("plain", "html"))
    return part.get_content() if part is not None else ""


def email_docs(env: DemoEnv) -> list[dict[str, str]]:
    with env.sink.lock:
        msgs = list(env.sink.messages)
    return [
        {
            "to": str(m["To"] or ""),
            "from": str(m["From"] or ""),
            "subject": str(m["Subject"] or ""),
            "date": str(m["Date"] or ""),
            "text": _text(m),
        }
        for m in msgs
    ]


async def emails_json(request: web.Request) -> web.Response:
    return web.json_response(email_docs(request.app[ENV_KEY]))


async def emails_page(request: web.Request) -> web.Response:
    docs = email_docs(request.app[ENV_KEY])
    items = (
        "".join(
            f"<article><h2>{html.escape(d['subject'])}</h2>"
            f"<p class=meta>To {html.escape(d['to'])} &middot; {html.escape(d['date'])}</p>"
            f"<pre>{html.escape(d['text'])}</pre></article>"
            for d in reversed(docs)
        )
        or "<p>No email yet. The SMTP sink shows here what the agent sends to owners.</p>"
    )
    page = (
        "<!doctype html><meta charset=utf-8><meta http-equiv=refresh content=5>"
        "<title>syncwatch demo: emails</title><style>body{font:15px system-ui;max-width:50em;"
        "margin:2em auto}article{border:1px solid #ccc;border-radius:6px;padding:0 1em;"
        "margin:1em 0}.meta{color:#555}pre{white-space:pre-wrap}</style>"
        f"<h1>Emails caught by the SMTP sink ({len(docs)})</h1>{items}"
    )
    return web.Response(text=page, content_type="text/html")


async def reconnect_page(request: web.Request) -> web.Response:
    a = account(request.query.get("account", ""))
    if a is None:
        raise web.HTTPNotFound(text="unknown account")
    page = (
        "<!doctype html><meta charset=utf-8><title>Reconnect</title>"
        "<style>body{font:15px system-ui;max-width:40em;margin:2em auto}</style>"
        f"<h1>Reconnect {html.escape(a.address)}</h1>"
        "<p>In the real portal the owner re-enters the password or signs in with the provider "
        "here. In this demo, <b>Reconnect</b> repairs the account on the local servers, then "
        "the portal page calls <code>recheck()</code> and the banner goes away.</p>"
        f"<form method=post><button>Reconnect {html.escape(a.name.title())}</button></form>"
    )
    return web.Response(text=page, content_type="text/html")


async def reconnect(request: web.Request) -> web.Response:
    env = request.app[ENV_KEY]
    a = account(request.query.get("account", ""))
    if a is None:
        raise web.HTTPNotFound(text="unknown account")
    await env.fix_account(a.name)
    raise web.HTTPSeeOther(f"/portal/?owner={a.owner_id}&reconnected={a.id}")


async def portal_file(request: web.Request) -> web.FileResponse:
    name = request.match_info.get("name") or "index.html"
    if name not in {"index.html", "syncwatch-banner.js"}:
        raise web.HTTPNotFound()
    return web.FileResponse(PORTAL_DIR / name, headers={"Cache-Control": "no-cache"})


async def root(_: web.Request) -> web.Response:
    raise web.HTTPFound("/portal/")


def make_web_app(env: DemoEnv) -> web.Application:
    app = web.Application()
    app[ENV_KEY] = env
    app.router.add_get("/", root)
    app.router.add_get("/portal/api/banner", banner)
    app.router.add_post("/portal/api/recheck", recheck)
    app.router.add_get("/portal/api/owners", owners)
    app.router.add_get("/portal/reconnect", reconnect_page)
    app.router.add_post("/portal/reconnect", reconnect)
    app.router.add_get("/portal/", portal_file)
    app.router.add_get("/portal/{name}", portal_file)
    app.router.add_get("/demo/status", status)
    app.router.add_get("/demo/status/{account}", status)
    app.router.add_get("/demo/emails", emails_page)
    app.router.add_get("/demo/emails.json", emails_json)
    return app
