"""The demo's world: local Dovecot, Radicale and SMTP sink, the accounts on them, and the
real daemon (`syncwatch run`) as a subprocess talking to them.

    env = DemoEnv(Path(tmp), speed=1.0, portal_base="http://127.0.0.1:8480")
    await env.start()
    await env.break_account("alice"); await env.fix_account("alice")
    await env.daemon.post("/api/v1/accounts/acc-alice/recheck")
    await env.stop()          # every process it started is gone when this returns
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path

import aiohttp
import yaml
from multidict import CIMultiDict

from agent.demo.scenario import ACCOUNTS, DemoAccount, Fault, Timing, account, daemon_config
from agent.localservers.dovecot import Dovecot
from agent.localservers.pki import make_local_pki
from agent.localservers.radicale import Radicale
from agent.localservers.smtp_sink import SmtpSink

log = logging.getLogger(__name__)

__all__ = ["DaemonClient", "DemoEnv", "DemoError", "free_port"]


class DemoError(RuntimeError):
    pass


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def _next_second() -> None:
    """Dovecot re-reads its passwd-file at most once per wall-clock second: a change is
    visible to logins only from the next second on."""
    now = time.time()
    await asyncio.sleep(math.floor(now) + 1.05 - now)


class DaemonClient:
    """The daemon's HTTP API with the bearer token (the token never leaves this object)."""

    def __init__(self, base: str, token: str) -> None:
        self.base = base
        self._token = token
        self._session: aiohttp.ClientSession | None = None

    def _s(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30))
        return self._session

    async def request(
        self, method: str, path: str, headers: Mapping[str, str] | None = None
    ) -> tuple[int, CIMultiDict[str], bytes]:
        """(status, headers, body); status 0 when the daemon cannot be reached."""
        h = {"Authorization": f"Bearer {self._token}", **(headers or {})}
        try:
            async with self._s().request(method, self.base + path, headers=h) as r:
                return r.status, CIMultiDict(r.headers), await r.read()
        except (aiohttp.ClientError, OSError, TimeoutError):
            return 0, CIMultiDict(), b""

    async def get(
        self, path: str, headers: Mapping[str, str] | None = None
    ) -> tuple[int, CIMultiDict[str], bytes]:
        return await self.request("GET", path, headers)

    async def post(self, path: str) -> tuple[int, CIMultiDict[str], bytes]:
        return await self.request("POST", path)

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None


class _Forwarder:
    """A TCP port that forwards to another while "up": erin's IMAP server. Down, nothing
    listens on the port and a connection is refused, like a provider whose server is down."""

    def __init__(self, port: int, target: int) -> None:
        self.port, self.target = port, target
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def up(self) -> bool:
        return self._server is not None

    async def start(self) -> None:
        if self._server is None:
            self._server = await asyncio.start_server(self._handle, "127.0.0.1", self.port)

    async def stop(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.close()
            await server.wait_closed()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_r, up_w = await asyncio.open_connection("127.0.0.1", self.target)
        except OSError:
            writer.close()
            return

        async def pipe(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
            try:
                while data := await r.read(65536):
                    w.write(data)
                    await w.drain()
            except (OSError, asyncio.CancelledError):
                pass
            finally:
                with contextlib.suppress(OSError):
                    w.close()

        await asyncio.gather(pipe(reader, up_w), pipe(up_r, writer))


class DemoEnv:
    def __init__(self, dir: Path, *, speed: float, portal_base: str) -> None:
        self.dir = dir
        self.speed = speed
        self.timing = Timing.for_speed(speed)
        self.portal_base = portal_base
        self.daemon_port = free_port()
        self.daemon = DaemonClient(
            f"http://127.0.0.1:{self.daemon_port}", secrets.token_urlsafe(24)
        )
        self.token_file = dir / "api-token"
        self.config_path = dir / "agent.yaml"
        self.daemon_log = dir / "daemon.log"
        self.sink = SmtpSink()
        self.dovecot: Dovecot | None = None
        self.radicale: Radicale | None = None
        self.erin: _Forwarder | None = None
        self.broken: dict[str, bool] = {a.name: a.broken_at_start for a in ACCOUNTS}
        self._proc: subprocess.Popen[bytes] | None = None

    # ---------------------------------------------------------------- lifecycle

    async def start(self) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        self.dir.chmod(0o755)
        pki = make_local_pki(self.dir / "pki")
        self.sink.start()
        self.dovecot = Dovecot(self.dir / "dovecot", pki.cert, pki.key)
        self.dovecot.start()
        self.radicale = Radicale(self.dir / "radicale")
        for a in ACCOUNTS:
            self.dovecot.add_user(a.name, a.password)
            self.radicale.add_user(a.name, a.password)
            self.radicale.make_calendar(a.name, "work")
        self.radicale.start()
        self.erin = _Forwarder(free_port(), self.dovecot.imaps_port)
        for a in ACCOUNTS:
            await self._apply(a, broken=a.broken_at_start)
        await _next_second()

        self.token_file.write_text(self.daemon._token + "\n")
        self.token_file.chmod(0o600)
        config = daemon_config(
            timing=self.timing,
            daemon_listen=f"127.0.0.1:{self.daemon_port}",
            token=self.daemon._token,
            store_path=str(self.dir / "state.sqlite3"),
            portal_base=self.portal_base,
            mail_relay_url=self.sink.apprise_url("syncwatch@example.com"),
            ca_file=str(pki.ca),
            imaps_port=self.dovecot.imaps_port,
            submission_port=self.dovecot.submission_port,
            erin_imap_port=self.erin.port,
            caldav_url=self.radicale.url,
        )
        self.config_path.write_text(yaml.safe_dump(config, sort_keys=False))
        self.config_path.chmod(0o600)
        await self._start_daemon()

    async def _start_daemon(self, wait: float = 30.0) -> None:
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        with self.daemon_log.open("ab") as out:
            self._proc = subprocess.Popen(  # noqa: S603, ASYNC220 - our interpreter; returns at once
                [
                    sys.executable,
                    "-m",
                    "agent",
                    "--log-level",
                    "info",
                    "run",
                    "--config",
                    str(self.config_path),
                ],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                env=env,
                # its own session: a Ctrl-C in the terminal reaches the demo, which stops
                # the daemon in order (SIGTERM, wait) instead of both racing
                start_new_session=True,
            )
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise DemoError(
                    f"the daemon exited ({self._proc.returncode}); see {self.daemon_log}"
                )
            status, _, _ = await self.daemon.get("/-/ready")
            if status == 200:
                return
            await asyncio.sleep(0.1)
        raise DemoError(f"the daemon was not ready within {wait:.0f}s; see {self.daemon_log}")

    @property
    def daemon_pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    def daemon_exited(self) -> int | None:
        return self._proc.poll() if self._proc is not None else None

    async def stop(self) -> None:
        """Stop everything started, in reverse order; safe to call twice or after a
        failed start."""
        proc, self._proc = self._proc, None
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                await asyncio.to_thread(proc.wait, 20)
            except subprocess.TimeoutExpired:
                proc.kill()
                await asyncio.to_thread(proc.wait, 10)
        await self.daemon.close()
        if self.erin is not None:
            await self.erin.stop()
        if self.radicale is not None:
            self.radicale.stop()
        if self.dovecot is not None:
            self.dovecot.stop()
        self.sink.stop()

    # ---------------------------------------------------------------- faults

    async def break_account(self, name: str) -> DemoAccount:
        return await self._set(name, broken=True)

    async def fix_account(self, name: str) -> DemoAccount:
        return await self._set(name, broken=False)

    async def _set(self, name: str, *, broken: bool) -> DemoAccount:
        a = account(name)
        if a is None:
            raise DemoError(
                f"no demo account {name!r}: one of {', '.join(x.name for x in ACCOUNTS)}"
            )
        await self._apply(a, broken=broken)
        if a.fault in (Fault.PASSWORD, Fault.NOLOGIN):
            await _next_second()
        return a

    async def _apply(self, a: DemoAccount, *, broken: bool) -> None:
        assert self.dovecot is not None and self.radicale is not None and self.erin is not None
        self.broken[a.name] = broken
        if a.fault is Fault.PASSWORD:
            self.dovecot.set_password(a.name, f"{a.name}-new-pw" if broken else a.password)
        elif a.fault is Fault.NOLOGIN:
            reason = "This account has been disabled. Contact your administrator."
            self.dovecot.set_nologin(a.name, reason if broken else None)
        elif a.fault is Fault.READ_ONLY:
            self.radicale.make_calendar(a.name, "work", read_only=broken)
        elif broken:
            await self.erin.stop()
        else:
            await self.erin.start()
