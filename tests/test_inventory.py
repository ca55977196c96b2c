"""The HTTP inventory: the portal serves its connected accounts as JSON; the daemon polls it
with ETag, re-fetches one account on recheck, and drops accounts that disappear.

The portal is a small aiohttp server (real HTTP on a socket); the mail server is a real
Dovecot; the daemon runs in-process (App) so its state can be read directly.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from aiohttp import web

from agent.api import RecheckLimited
from agent.app import App
from agent.config.load import load_config
from agent.localservers.dovecot import Dovecot
from agent.model import Service, State
from tests.conftest import free_port
from tests.servers.tls import TestPKI

TOKEN = "inventory-token-5e3c"


class Portal:
    """What the portal's backend serves: GET /accounts (ETag) and GET /accounts/{id}."""

    def __init__(self) -> None:
        self.accounts: dict[str, dict[str, Any]] = {}
        self.list_requests = 0
        self.not_modified = 0
        self.single_requests: list[str] = []
        self.port = free_port()
        self._runner: web.AppRunner | None = None

    def _authorized(self, request: web.Request) -> bool:
        return request.headers.get("Authorization") == f"Bearer {TOKEN}"

    async def _list(self, request: web.Request) -> web.Response:
        if not self._authorized(request):
            return web.Response(status=401)
        self.list_requests += 1
        body = json.dumps({"accounts": list(self.accounts.values())}, sort_keys=True)
        etag = '"' + hashlib.sha256(body.encode()).hexdigest()[:16] + '"'
        if request.headers.get("If-None-Match") == etag:
            self.not_modified += 1
            return web.Response(status=304, headers={"ETag": etag})
        return web.Response(text=body, content_type="application/json", headers={"ETag": etag})

    async def _one(self, request: web.Request) -> web.Response:
        if not self._authorized(request):
            return web.Response(status=401)
        account_id = request.match_info["id"]
        self.single_requests.append(account_id)
        if account_id not in self.accounts:
            return web.Response(status=404)
        return web.json_response(self.accounts[account_id])

    async def start(self) -> None:
        app = web.Application()
        app.router.add_get("/accounts", self._list)
        app.router.add_get("/accounts/{id}", self._one)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()


def _account(
    dovecot: Dovecot, pki: TestPKI, account_id: str, user: str, pw: str, v: int
) -> dict[str, Any]:
    return {
        "id": account_id,
        "version": str(v),
        "owner": {"id": f"u-{user}", "email": f"{user}@example.com"},
        "provider": "dovecot",
        "imap": {
            "host": "127.0.0.1",
            "port": dovecot.imaps_port,
            "security": "tls",
            "username": user,
            "password": pw,
            "tls_ca_file": str(pki.ca),
            "timeout": "5s",
        },
    }


@pytest.fixture
async def portal() -> AsyncIterator[Portal]:
    p = Portal()
    await p.start()
    yield p
    await p.stop()


async def _until(cond: Callable[[], bool], what: str, timeout: float = 20.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not cond():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)


@pytest.mark.slow
async def test_http_inventory_polls_rechecks_and_forgets(
    tmp_path: Path, dovecot: Dovecot, pki: TestPKI, portal: Portal
) -> None:
    portal.accounts["acc-a"] = _account(dovecot, pki, "acc-a", "alice", "alice-pw", 1)
    portal.accounts["acc-b"] = _account(dovecot, pki, "acc-b", "bob", "bob-pw", 1)
    cfg = tmp_path / "agent.yaml"
    cfg.write_text(
        yaml.safe_dump(
            {
                "schedule": {
                    "interval": "1h",
                    "confirm_interval": "1s",
                    "jitter": False,
                    "recheck_min_interval": "30s",
                },
                "store": {"path": str(tmp_path / "state.sqlite3")},
                "http": {"listen": f"127.0.0.1:{free_port()}"},
                "api": {"tokens": ["t"]},
                "inventory": {
                    "http": {
                        "url": f"http://127.0.0.1:{portal.port}/accounts",
                        "token": TOKEN,
                        "poll_interval": "0.2s",
                    }
                },
            }
        )
    )
    app = App(load_config(cfg))
    await app.start()
    try:
        # new accounts are probed on their slot; an hour's interval means: not yet. A
        # recheck (what the portal calls after a reconnect) probes now.
        assert set(app.monitor.accounts) == {"acc-a", "acc-b"}
        doc = await app.recheck("acc-a")
        assert doc is not None and doc["state"] == "ok"
        assert portal.single_requests == ["acc-a"]
        assert (await app.recheck("acc-b")) is not None

        # polling with ETag: unchanged inventory answers 304 and changes nothing
        await _until(lambda: portal.not_modified >= 2, "304 polls")

        # the user changes their password at the provider and reconnects in the portal:
        # the portal has the new credentials; the next poll sees them and probes at once
        dovecot.set_password("alice", "new-pw")
        portal.accounts["acc-a"] = _account(dovecot, pki, "acc-a", "alice", "new-pw", 2)
        await _until(
            lambda: (
                app.monitor.accounts["acc-a"].imap is not None
                and app.monitor.accounts["acc-a"].imap.password is not None
                and app.monitor.accounts["acc-a"].imap.password.reveal() == "new-pw"
            ),
            "new credentials installed",
        )

        def probed_with_new_password() -> bool:
            h = app.monitor.healths("acc-a")[Service.IMAP]
            fingerprint = app.monitor.accounts["acc-a"].credential_fingerprint(Service.IMAP)
            return h.credential == fingerprint and h.state is State.OK

        await _until(probed_with_new_password, "probed with the new password")

        # recheck is limited per account
        with pytest.raises(RecheckLimited) as limited:
            await app.recheck("acc-a")
        assert 0 < limited.value.retry_after <= 30

        # an account the portal no longer has disappears: status, metrics, banner
        metrics = app.metrics_text().decode()
        assert 'account_id="acc-b"' in metrics
        del portal.accounts["acc-b"]
        await _until(lambda: "acc-b" not in app.monitor.accounts, "acc-b removed")
        assert app.account_status("acc-b") is None
        assert 'account_id="acc-b"' not in app.metrics_text().decode()
        assert "bob@example.com" not in app.metrics_text().decode()
        assert app.monitor.healths("acc-a")
        assert all(h.state is State.OK for h in app.monitor.healths("acc-a").values())
    finally:
        await app.stop()


async def test_yaml_inventory_rereads_only_when_a_file_it_read_changed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import agent.inventory as inventory

    (tmp_path / "secrets").mkdir()
    secret = tmp_path / "secrets" / "pw"
    secret.write_text("first-pw\n")
    (tmp_path / "accounts.yaml").write_text(
        "- id: acc-1\n  owner: {id: u-1, email: a@example.com}\n"
        "  imap: {host: imap.example.com, username: a, password: {file: secrets/pw}}\n"
    )
    cfg = tmp_path / "agent.yaml"
    cfg.write_text("accounts_file: accounts.yaml\n")
    reads = 0
    real = inventory.load_config

    def counting(*args: Any, **kw: Any) -> Any:
        nonlocal reads
        reads += 1
        return real(*args, **kw)

    monkeypatch.setattr(inventory, "load_config", counting)
    inv = inventory.YamlInventory(cfg)

    def password(a: Any) -> str:
        return str(a.imap.password.reveal())

    assert password(await inv.fetch("acc-1")) == "first-pw"
    assert password(await inv.fetch("acc-1")) == "first-pw"  # learns the files it read
    assert password(await inv.fetch("acc-1")) == "first-pw"
    assert reads == 2  # the third answer came from the cache

    secret.write_text("second-pw\n")  # the portal saved new credentials
    assert password(await inv.fetch("acc-1")) == "second-pw"
    assert reads == 3
