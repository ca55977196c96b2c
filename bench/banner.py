"""Section 4: GET /api/v1/users/{id}/banner under load, by wrk from another process,
beside a minimal aiohttp handler returning the same JSON body (fixed) in the same run.

The agent serves 10,000 accounts (IMAP + SMTP, one in 21 failing), every service probed,
with its scheduler running (instant probes); wrk rotates over 1,000 owners, about a tenth of
them with a banner to show. Both servers are one process on one core; wrk uses one thread.
Both run for the whole section and are measured in short turns after a warm-up of each,
in the order agent, baseline, baseline, agent, ... (the figure is the median of the turns),
so a change in the machine's speed during the run hits both alike.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import signal
import statistics
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from bench.report import Figure
from bench.util import config_for, free_port, instant_prober, synthetic_accounts, workdir

SECTION = "banner"
TOKEN = "bench-api-token-0123456789"
OWNERS = 1000
_LUA = """
local i = 0
request = function()
  i = (i + 1) %% %d
  return wrk.format(nil, string.format("/api/v1/users/owner-%%07d/banner", i))
end
"""


async def _serve_agent(port: int, n: int) -> None:
    from agent.app import App, Options

    accounts = synthetic_accounts(n)
    # one account in 21 fails, spread over the providers (no burst hold)
    failing = frozenset(a.id for a in accounts[::21])
    prober = instant_prober(failing)
    d = workdir("banner-agent")
    app = App(
        config_for(d, accounts, listen=f"127.0.0.1:{port}", api_token=TOKEN), Options(prober=prober)
    )
    await app.start()
    for a in accounts:
        for s in a.services():
            app.monitor.apply(a, await prober(a, s))
    await _until_term("agent")
    await app.stop()


async def _serve_baseline(port: int, body_file: Path) -> None:
    from aiohttp import web

    body = body_file.read_bytes()

    async def banner(_: web.Request) -> web.Response:
        return web.Response(body=body, content_type="application/json")

    app = web.Application()
    app.router.add_get("/api/v1/users/{owner_id}/banner", banner)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    await _until_term("baseline")
    await runner.cleanup()


async def _until_term(name: str) -> None:
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    print(f"{name} ready", flush=True)
    await stop.wait()


def _start(args: list[str]) -> subprocess.Popen[str]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "bench.banner", *args], stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if "ready" not in line:
        proc.kill()
        raise RuntimeError(f"server did not start: {line!r}")
    return proc


def _stop(proc: subprocess.Popen[str]) -> None:
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(15)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


_UNITS = {"us": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0}


def _wrk(url: str, conns: int, seconds: float, script: Path) -> dict[str, float]:
    out = subprocess.run(
        [
            "wrk",
            "-t1",
            f"-c{conns}",
            f"-d{seconds:g}s",
            "--latency",
            "--timeout",
            "5s",
            "-H",
            f"Authorization: Bearer {TOKEN}",
            "-s",
            str(script),
            url,
        ],
        capture_output=True,
        text=True,
        timeout=seconds + 60,
        check=True,
    ).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    lat = {}
    for p, v, unit in re.findall(r"^\s+(50|99)%\s+([\d.]+)(us|ms|s|m)\s*$", out, re.M):
        lat[p] = float(v) * _UNITS[unit]
    non2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    errors = re.search(r"Socket errors:.*", out)
    return {
        "rps": rps,
        "p50": lat["50"],
        "p99": lat["99"],
        "non2xx": float(non2xx.group(1)) if non2xx else 0.0,
        "socket_errors": 1.0 if errors else 0.0,
    }


def run(quick: bool) -> list[Figure]:
    n = 2_000 if quick else 10_000
    seconds = 1.0 if quick else 2.0
    reps = 1 if quick else 6
    d = workdir("banner")
    script = d / "rotate.lua"
    script.write_text(_LUA % min(OWNERS, n // 2))
    aport, bport = free_port(), free_port()
    urls = {"agent": f"http://127.0.0.1:{aport}", "baseline": f"http://127.0.0.1:{bport}"}
    samples: dict[tuple[str, int], list[dict[str, float]]] = {}
    agent = _start(["--serve", "agent", "--port", str(aport), "--n", str(n)])
    base: subprocess.Popen[str] | None = None
    try:
        req = urllib.request.Request(  # noqa: S310 (loopback)
            f"{urls['agent']}/api/v1/users/owner-0000000/banner",
            headers={"Authorization": f"Bearer {TOKEN}"},
        )
        with urllib.request.urlopen(req, timeout=10) as r:  # noqa: S310 (loopback)
            body = r.read()
        assert json.loads(body)["show"] is True, body
        (d / "body.json").write_bytes(body)
        base = _start(["--serve", "baseline", "--port", str(bport), "--body", str(d / "body.json")])
        for who in ("agent", "baseline"):  # warm-up, not counted
            _wrk(urls[who], 100, seconds / 2, script)
        # both servers up for the whole run, measured in short turns, in the order agent,
        # baseline, baseline, agent, ...: a drift of the machine's speed during the run
        # hits both alike, and the figure is the median of each one's turns
        for conns in (10, 100):
            for rep in range(reps):
                for who in ("agent", "baseline")[:: 1 if rep % 2 == 0 else -1]:
                    got = _wrk(urls[who], conns, seconds, script)
                    samples.setdefault((who, conns), []).append(got)
    finally:
        _stop(agent)
        if base is not None:
            _stop(base)
    results = {
        k: {m: statistics.median(s[m] for s in runs) for m in runs[0]}
        for k, runs in samples.items()
    }
    for k, v in results.items():
        print(f"  banner {k}: {json.dumps(v)}", file=sys.stderr, flush=True)
    figs: list[Figure] = []
    for conns in (10, 100):
        a, b = results[("agent", conns)], results[("baseline", conns)]
        note = f"{len(body)} B body; wrk 1 thread; median of {reps} turns of {seconds:g} s"
        if a["non2xx"] or a["socket_errors"]:
            note += f"; {int(a['non2xx'])} non-2xx, socket errors seen"
        figs.append(
            Figure(
                SECTION,
                f"banner requests/s, {conns} connections",
                a["rps"],
                "/s",
                "aiohttp handler, fixed JSON body",
                b["rps"],
                "ratio >= 0.80",
                a["rps"] >= 0.8 * b["rps"],
                note=note,
            )
        )
        figs.append(
            Figure(
                SECTION,
                f"banner latency p99, {conns} connections",
                a["p99"] * 1e3,
                "ms",
                "aiohttp handler, fixed JSON body",
                b["p99"] * 1e3,
                "<= 10 ms" if conns == 10 else "",
                (a["p99"] <= 0.010) if conns == 10 else None,
                note=f"p50 {a['p50'] * 1e3:.2f} ms vs {b['p50'] * 1e3:.2f} ms",
            )
        )
    return figs


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--serve", choices=["agent", "baseline"], required=True)
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--n", type=int, default=10_000)
    p.add_argument("--body", type=Path)
    a = p.parse_args()
    if a.serve == "agent":
        asyncio.run(_serve_agent(a.port, a.n))
    else:
        assert a.body is not None
        asyncio.run(_serve_baseline(a.port, a.body))
    time.sleep(0)


if __name__ == "__main__":
    main()
