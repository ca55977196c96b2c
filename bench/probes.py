"""Section 1: IMAPS probe throughput and CPU against a local Dovecot with thousands of
passwd-file users, in Dovecot's default one-process-per-login mode and with its processes
reused (which raises the server's ceiling and exposes the agent's own cost).

Every client runs in a process of its own, so its CPU time is its own:
- ceiling: a dedicated login-only client (raw asyncio TLS, LOGIN, LOGOUT; 16 at once);
- agent: the daemon (App: scheduler, real IMAP probe, state, store, metrics) with one
  account per Dovecot user, due constantly, at its default concurrency (64, 8 per host);
- bare TLS: connect + TLS handshake (verified, one shared SSLContext), 8 at once: the floor
  of a probe's CPU;
- a minimal asyncio client doing exactly the agent probe's exchange (capabilities from the
  greeting, LOGIN, then SELECT INBOX, GETQUOTAROOT, NOOP, LOGOUT pipelined), 8 at once:
  what the server allows a client that must do these steps, and their least client CPU;
- aioimaplib alone and stdlib imaplib in 8 threads, doing the same steps the way each
  library does them (CAPABILITY, LOGIN, SELECT INBOX, GETQUOTAROOT, NOOP, LOGOUT, one
  round trip each), 8 at once;
- prometheus-blackbox-exporter's tcp prober (TLS + `* OK` banner), driven 8 at once over
  HTTP by a separate process; its CPU is read from /proc.
"""

from __future__ import annotations

import argparse
import asyncio
import imaplib
import itertools
import json
import ssl
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from bench.report import Figure
from bench.util import (
    cpu_seconds,
    free_port,
    run_child,
    tree_cpu_seconds,
    workdir,
)

SECTION = "probes"
HOST = "127.0.0.1"
PASSWORD = "bench-pw-1"
TURNS = 2  # each client measured in this many turns, in ABBA order
WIDTH = 8  # the agent's default per-host concurrency; the baselines use the same width


def _ctx(ca: str) -> ssl.SSLContext:
    ctx = ssl.create_default_context()
    ctx.load_verify_locations(cafile=ca)
    return ctx


class _Users:
    def __init__(self, n: int) -> None:
        self._it = itertools.cycle(range(n))

    def next(self) -> str:
        return f"user{next(self._it)}"


async def _read_until(reader: asyncio.StreamReader, tag: bytes) -> bytes:
    while True:
        line = await reader.readline()
        if not line:
            raise ConnectionError("closed")
        if line.startswith(tag + b" "):
            return line


async def _session(port: int, ctx: ssl.SSLContext, users: _Users, rest: bytes) -> bool:
    """TLS, greeting, LOGIN, then `rest` (tagged b, c, ...; the last one LOGOUT) in one
    write; ok when LOGIN and the reply to b are OK."""
    reader, writer = await asyncio.open_connection(HOST, port, ssl=ctx, server_hostname=HOST)
    try:
        await reader.readline()
        writer.write(f"a LOGIN {users.next()} {PASSWORD}\r\n".encode())
        ok = (await _read_until(reader, b"a")).startswith(b"a OK")
        writer.write(rest)
        ok &= (await _read_until(reader, b"b")).startswith(b"b OK")
        last = rest.rstrip().rsplit(b"\r\n", 1)[-1].split(b" ", 1)[0]
        if last != b"b":
            await _read_until(reader, last)
        return ok
    finally:
        writer.close()


async def _login_only(port: int, ctx: ssl.SSLContext, users: _Users) -> bool:
    return await _session(port, ctx, users, b"b LOGOUT\r\n")


async def _minimal(port: int, ctx: ssl.SSLContext, users: _Users) -> bool:
    """The agent probe's exchange with nothing around it: capabilities from the greeting,
    LOGIN, then SELECT, GETQUOTAROOT, NOOP and LOGOUT in one write."""
    rest = b"b SELECT INBOX\r\nc GETQUOTAROOT INBOX\r\nd NOOP\r\ne LOGOUT\r\n"
    return await _session(port, ctx, users, rest)


async def _tls_only(port: int, ctx: ssl.SSLContext, users: _Users) -> bool:
    _, writer = await asyncio.open_connection(HOST, port, ssl=ctx, server_hostname=HOST)
    writer.close()
    return True


async def _aioimaplib(port: int, ctx: ssl.SSLContext, users: _Users) -> bool:
    from aioimaplib import aioimaplib

    c = aioimaplib.IMAP4_SSL(host=HOST, port=port, ssl_context=ctx, timeout=10)
    try:
        await c.wait_hello_from_server()
        ok = (await c.login(users.next(), PASSWORD)).result == "OK"
        ok &= (await c.select("INBOX")).result == "OK"
        await c.getquotaroot("INBOX")
        await c.noop()
        await c.logout()
        return ok
    finally:
        if c.protocol is not None and c.protocol.transport is not None:
            c.protocol.transport.close()


def _imaplib(port: int, ctx: ssl.SSLContext, user: str) -> bool:
    with imaplib.IMAP4_SSL(HOST, port, ssl_context=ctx, timeout=10) as c:
        c.capability()
        ok = c.login(user, PASSWORD)[0] == "OK"
        ok &= c.select("INBOX")[0] == "OK"
        c.getquotaroot("INBOX")
        c.noop()
        c.logout()
        return ok


async def _blackbox(url: str) -> bool:

    assert _SESSION is not None
    async with _SESSION.get(url) as r:
        return "probe_success 1" in await r.text()


_SESSION = None


class _Window:
    """A client's measured window: its seconds, its CPU (this process's, or another's such
    as the blackbox exporter's) and the server's CPU over the same seconds; warm-up and
    teardown are left out of all three."""

    def __init__(self, server_pid: int, cpu_pid: int = 0) -> None:
        self._server_pid, self._cpu_pid = server_pid, cpu_pid
        self._srv0 = tree_cpu_seconds(server_pid)
        self.t0 = time.monotonic()
        self._cpu0 = self._cpu()

    def _cpu(self) -> float:
        return cpu_seconds(self._cpu_pid) if self._cpu_pid else time.process_time()

    def close(self) -> dict[str, float]:
        took, cpu = time.monotonic() - self.t0, self._cpu() - self._cpu0
        srv = tree_cpu_seconds(self._server_pid) - self._srv0
        return {"seconds": took, "cpu": cpu, "server_cpu": srv}


async def _drive(
    kind: str,
    port: int,
    ca: str,
    users: int,
    seconds: float,
    width: int,
    target: str,
    server_pid: int,
    cpu_pid: int,
) -> dict[str, float]:
    global _SESSION
    ctx = _ctx(ca)
    u = _Users(users)
    counts = {"ok": 0, "err": 0}
    if kind == "blackbox":
        import aiohttp

        _SESSION = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=width))
        url = f"http://{HOST}:{port}/probe?module=imaps_banner&target={target}"
    loop = asyncio.get_running_loop()
    pool = ThreadPoolExecutor(width) if kind == "imaplib" else None
    fns = {"ceiling": _login_only, "tls": _tls_only, "aioimaplib": _aioimaplib, "minimal": _minimal}

    async def one() -> bool:
        if kind == "imaplib":
            return await loop.run_in_executor(pool, _imaplib, port, ctx, u.next())
        if kind == "blackbox":
            return await _blackbox(url)
        return await fns[kind](port, ctx, u)

    async def worker(until: float) -> None:
        while time.monotonic() < until:
            try:
                ok = await asyncio.wait_for(one(), 15)
            except Exception:
                ok = False
            counts["ok" if ok else "err"] += 1

    if kind == "warm":  # every user once: Dovecot creates each mailbox before the runs

        async def each(i: int) -> None:
            async with sem:
                await _aioimaplib(port, ctx, u)

        sem = asyncio.Semaphore(width)
        await asyncio.gather(*(each(i) for i in range(users)))
        return {"probes": users, "ok": users, "seconds": 1.0, "cpu": 0.0, "server_cpu": 0.0}
    warm = min(1.0, seconds / 4)
    await asyncio.gather(*(worker(time.monotonic() + warm) for _ in range(width)))
    counts = {"ok": 0, "err": 0}
    window = _Window(server_pid, cpu_pid)
    await asyncio.gather(*(worker(window.t0 + seconds) for _ in range(width)))
    measured = window.close()
    if pool is not None:
        pool.shutdown()
    if _SESSION is not None:
        await _SESSION.close()
    return {"probes": counts["ok"] + counts["err"], "ok": counts["ok"], **measured}


async def _agent(
    port: int, ca: str, users: int, seconds: float, server_pid: int
) -> dict[str, float]:
    """The daemon probing one account per Dovecot user, all due constantly."""
    import tempfile

    from agent.app import App, Options
    from agent.config.types import ScheduleSettings
    from agent.model import ProbeResult, Service
    from agent.net import SystemResolver
    from agent.probes import probe_service
    from bench.util import config_for, synthetic_accounts

    accounts = synthetic_accounts(
        users, host=HOST, port=port, smtp=False, ca_file=Path(ca), password=PASSWORD
    )
    d = Path(tempfile.mkdtemp(prefix="syncwatch-bench-agent-"))
    counts = {"ok": 0, "err": 0}
    resolver = SystemResolver()
    sample: list[str] = []

    async def prober(account: object, service: Service) -> ProbeResult:
        r = await probe_service(account, service, resolver=resolver)  # type: ignore[arg-type]
        counts["ok" if r.ok else "err"] += 1
        if not r.ok and len(sample) < 3 and r.failure is not None:
            sample.append(f"{r.failure.cause.value}: {r.failure.detail}")
        return r

    # 2,000 probes due a second whatever the number of users (interval 1 s with the full
    # run's 2,000, 0.1 s with --quick's 200): far more than the server takes, so the
    # scheduler never idles and the rate is never capped by the accounts' interval
    sched = ScheduleSettings(interval=users / 2000)
    app = App(
        config_for(d, accounts, listen=f"{HOST}:{free_port()}", schedule=sched),
        Options(prober=prober),
    )
    await app.start()
    await asyncio.sleep(min(2.0, seconds / 3))
    window = _Window(server_pid)
    base = dict(counts)
    await asyncio.sleep(seconds)
    measured = window.close()
    got = {k: counts[k] - base[k] for k in counts}
    await app.stop()
    if sample:
        print(f"agent probe failures, e.g. {sample}", file=sys.stderr)
    return {"probes": got["ok"] + got["err"], "ok": got["ok"], **measured}


# --- orchestration (the section's own process) -----------------------------------------


def _blackbox_exporter(dir: Path, ca: Path) -> tuple[subprocess.Popen[bytes], int]:
    conf = dir / "blackbox.yml"
    conf.write_text(
        "modules:\n"
        "  imaps_banner:\n"
        "    prober: tcp\n"
        "    timeout: 5s\n"
        "    tcp:\n"
        "      tls: true\n"
        "      tls_config:\n"
        f"        ca_file: {ca}\n"
        "      query_response:\n"
        '        - expect: "^\\\\* OK"\n'
    )
    port = free_port()
    proc = subprocess.Popen(
        [
            "prometheus-blackbox-exporter",
            f"--config.file={conf}",
            f"--web.listen-address={HOST}:{port}",
        ],
        stdout=subprocess.DEVNULL,
        stderr=(dir / "blackbox.log").open("wb"),
    )
    import socket

    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            socket.create_connection((HOST, port), 0.2).close()
            break
        except OSError:
            time.sleep(0.05)
    return proc, port


def _client(
    kind: str,
    port: int,
    ca: Path,
    users: int,
    seconds: float,
    width: int,
    server_pid: int,
    target: str = "",
    cpu_pid: int = 0,
) -> dict[str, float]:
    args = [
        "bench.probes",
        "--client",
        kind,
        "--port",
        str(port),
        "--ca",
        str(ca),
        "--users",
        str(users),
        "--seconds",
        str(seconds),
        "--width",
        str(width),
        "--server-pid",
        str(server_pid),
        "--cpu-pid",
        str(cpu_pid),
    ]
    if target:
        args += ["--target", target]
    r = run_child(args, timeout=seconds + 120)
    return {k: float(v) for k, v in r.items()}  # type: ignore[arg-type]


def run(quick: bool) -> list[Figure]:
    from agent.localservers.dovecot import Dovecot
    from tests.servers.tls import make_pki

    users = 200 if quick else 2000
    seconds = 2.0 if quick else 8.0
    base = workdir("probes")
    pki = make_pki(base / "pki")
    results: dict[str, dict[str, dict[str, float]]] = {}
    for mode, reuse in (("default", False), ("reused", True)):
        dv = Dovecot(
            base / f"dovecot-{mode}",
            pki.good.cert,
            pki.good.key,
            submission=False,
            reuse_processes=reuse,
        )
        dv.add_many_users(users, "user", PASSWORD)
        dv.start()
        bb: tuple[subprocess.Popen[bytes], int] | None = None
        try:
            assert dv._proc is not None
            pid = dv._proc.pid
            _client("warm", dv.imaps_port, pki.ca, users, seconds, 16, pid)
            kinds = ["ceiling", "agent", "minimal"] + (
                ["tls", "aioimaplib", "imaplib", "blackbox"] if reuse else []
            )
            if reuse:
                bb = _blackbox_exporter(base, pki.ca)
            res: dict[str, dict[str, float]] = {}
            # TURNS turns, every other one in reverse order (ceiling, agent, minimal, ...,
            # then ..., minimal, agent, ceiling): a steady drift of the machine's speed
            # during the section weighs on every client alike
            for turn in range(TURNS):
                for kind in kinds if turn % 2 == 0 else kinds[::-1]:
                    r = _measure(kind, dv.imaps_port, pid, pki.ca, users, seconds / TURNS, bb)
                    print(f"  probes {mode} {kind}: {json.dumps(r)}", file=sys.stderr, flush=True)
                    acc = res.setdefault(kind, dict.fromkeys(r, 0.0))
                    for k, v in r.items():
                        acc[k] += v
            for r in res.values():
                r["rate"] = r["probes"] / r["seconds"]
                r["cpu_per"] = r["cpu"] / max(r["probes"], 1)
            results[mode] = res
        finally:
            if bb is not None:
                bb[0].terminate()
                bb[0].wait(10)
            dv.stop()
    return _figures(results)


def _measure(
    kind: str,
    port: int,
    server_pid: int,
    ca: Path,
    users: int,
    seconds: float,
    bb: tuple[subprocess.Popen[bytes], int] | None,
) -> dict[str, float]:
    """One run of one client against Dovecot at `port`: its probes, seconds, CPU, and
    Dovecot's CPU meanwhile."""
    if kind == "blackbox":  # the driver measures the exporter's CPU, not its own
        assert bb is not None
        proc, bport = bb
        target = f"{HOST}:{port}"
        return _client(kind, bport, ca, users, seconds, WIDTH, server_pid, target, proc.pid)
    width = 16 if kind == "ceiling" else WIDTH
    return _client(kind, port, ca, users, seconds, width, server_pid)


def _figures(results: dict[str, dict[str, dict[str, float]]]) -> list[Figure]:
    figs: list[Figure] = []
    for mode in ("default", "reused"):
        res = results[mode]
        ceil = res["ceiling"]["rate"]
        a = res["agent"]
        figs.append(
            Figure(
                SECTION,
                f"agent probes/s, Dovecot {mode} processes",
                a["rate"],
                "/s",
                "login-only client (server ceiling)",
                ceil,
                "ratio >= 0.90",
                a["rate"] >= 0.9 * ceil,
                note=f"{int(a['ok'])} of {int(a['probes'])} probes succeeded",
            )
        )
        m = res["minimal"]
        figs.append(
            Figure(
                SECTION,
                f"minimal asyncio client, the agent's exchange: probes/s ({mode} processes)",
                m["rate"],
                "/s",
                "login-only client (server ceiling)",
                ceil,
                note="what the server allows a client that must do the probe's steps",
            )
        )
    res = results["reused"]
    figs.append(
        Figure(
            SECTION,
            "agent probes/s beside a client doing the same steps (reused processes)",
            res["agent"]["rate"],
            "/s",
            "aioimaplib alone, same steps, same width",
            res["aioimaplib"]["rate"],
            note="the agent's own cost, without the login-only ceiling's lighter work",
        )
    )
    tls = res["tls"]["cpu_per"]
    a = res["agent"]
    figs.append(
        Figure(
            SECTION,
            "agent CPU per probe (reused processes)",
            a["cpu_per"] * 1e3,
            "ms",
            "bare TLS connect+handshake",
            tls * 1e3,
            "ratio <= 1.3",
            a["cpu_per"] <= 1.3 * tls,
        )
    )
    ceil = res["ceiling"]["rate"]
    for kind, label in (
        ("minimal", "minimal asyncio client, the agent's exchange"),
        ("aioimaplib", "aioimaplib alone"),
        ("imaplib", "stdlib imaplib, 8 threads"),
        ("blackbox", "blackbox-exporter TLS+banner"),
        ("tls", "bare TLS handshake"),
    ):
        r = res[kind]
        if kind != "minimal":  # its rate is beside the agent's above
            figs.append(
                Figure(
                    SECTION,
                    f"{label}: probes/s (reused processes)",
                    r["rate"],
                    "/s",
                    "login-only client (server ceiling)",
                    ceil,
                    note=f"{int(r['ok'])} of {int(r['probes'])} ok",
                )
            )
        if kind != "tls":
            figs.append(
                Figure(
                    SECTION,
                    f"{label}: CPU per probe",
                    r["cpu_per"] * 1e3,
                    "ms",
                    "bare TLS connect+handshake",
                    tls * 1e3,
                )
            )
    rows = [
        (mode, kind, label)
        for mode in ("default", "reused")
        for kind, label in (
            ("agent", "agent probe"),
            ("minimal", "minimal-client probe (the agent's exchange)"),
        )
    ]
    for mode, kind, label in rows:
        r = results[mode][kind]
        figs.append(
            Figure(
                SECTION,
                f"Dovecot CPU per {label} ({mode} processes)",
                r["server_cpu"] / max(r["probes"], 1) * 1e3,
                "ms",
                "Dovecot CPU per login-only login",
                results[mode]["ceiling"]["server_cpu"]
                / max(results[mode]["ceiling"]["probes"], 1)
                * 1e3,
            )
        )
    return figs


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--client", required=True)
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--ca", required=True)
    p.add_argument("--users", type=int, required=True)
    p.add_argument("--seconds", type=float, required=True)
    p.add_argument("--width", type=int, default=WIDTH)
    p.add_argument("--target", default="")
    p.add_argument("--server-pid", type=int, required=True)
    p.add_argument("--cpu-pid", type=int, default=0)
    a = p.parse_args()
    if a.client == "agent":
        r = asyncio.run(_agent(a.port, a.ca, a.users, a.seconds, a.server_pid))
    else:
        args = (a.client, a.port, a.ca, a.users, a.seconds, a.width, a.target)
        r = asyncio.run(_drive(*args, a.server_pid, a.cpu_pid))
    print(json.dumps(r))


if __name__ == "__main__":
    threading.stack_size(512 * 1024)
    main()
