"""Section 3: /metrics with every account's series (`metrics.per_account: all`), after
every service of 10,000 and 100,000 accounts (IMAP + SMTP, 1% failing) was probed once.

Render time is `App.metrics_text()` in process (median of 5), and a GET /metrics over
loopback by curl from another process (median of 3). Baselines, same run: at 10,000 the
same per-account series kept as prometheus-client Gauges and rendered by
`generate_latest` (what the pre-rendered series replace); at 100,000 the agent's own
render at 10,000 (the ratio then says how render time scales).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

from bench.report import Figure
from bench.util import config_for, free_port, instant_prober, run_child, synthetic_accounts

SECTION = "metrics"
TARGET = 1.0  # seconds at 100,000 accounts


async def _curl(url: str) -> tuple[float, int]:
    t0 = time.perf_counter()
    proc = await asyncio.create_subprocess_exec(
        "curl",
        "-s",
        "-o",
        "/dev/null",
        "-w",
        "%{size_download}",
        url,
        stdout=asyncio.subprocess.PIPE,
    )
    out, _ = await proc.communicate()
    return time.perf_counter() - t0, int(out or 0)


def _naive(accounts: list, app: object) -> float:  # type: ignore[type-arg]
    """The same per-account series as prometheus-client Gauges; seconds to render."""
    from prometheus_client import CollectorRegistry, Gauge, generate_latest

    from agent.metrics import ACCOUNT_FAMILIES
    from agent.model import State

    r = CollectorRegistry()
    labels = ["account_id", "service", "provider"]
    up, disc, last, ok, fails = (
        Gauge(name, help_, labels + (["cause"] if i == 1 else []), registry=r)
        for i, (name, help_) in enumerate(ACCOUNT_FAMILIES)
    )
    for a in accounts:
        for s, h in app.monitor.healths(a.id).items():  # type: ignore[attr-defined]
            lv = (a.id, s.value, a.provider)
            up.labels(*lv).set(1 if h.state is State.OK else 0)
            if h.state is State.DISCONNECTED and h.cause is not None:
                disc.labels(*lv, h.cause.value).set(1)
            last.labels(*lv).set(h.last_probe_at or 0)
            if h.last_success_at is not None:
                ok.labels(*lv).set(h.last_success_at)
            fails.labels(*lv).set(h.consecutive_failures)
    times = []
    for _ in range(3):
        t0 = time.perf_counter()
        generate_latest(r)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


async def _child(n: int, naive: bool) -> dict[str, object]:
    from agent.app import App, Options

    accounts = synthetic_accounts(n)
    failing = frozenset(a.id for a in accounts[::101])
    d = Path(tempfile.mkdtemp(prefix="syncwatch-bench-metrics-"))
    port = free_port()
    prober = instant_prober(failing)
    app = App(config_for(d, accounts, listen=f"127.0.0.1:{port}"), Options(prober=prober))
    await app.start()
    await app.scheduler.stop()
    for a in accounts:
        for s in a.services():
            app.monitor.apply(a, await prober(a, s))
    times = []
    size = 0
    for _ in range(5):
        t0 = time.perf_counter()
        size = len(app.metrics_text())
        times.append(time.perf_counter() - t0)
    http = [await _curl(f"http://127.0.0.1:{port}/metrics") for _ in range(3)]
    await app.stop()
    out: dict[str, object] = {
        "n": n,
        "render": statistics.median(times),
        "size": size,
        "http": statistics.median(t for t, _ in http),
        "http_size": http[-1][1],
    }
    if naive:
        out["naive"] = _naive(accounts, app)
    return out


def run(quick: bool) -> list[Figure]:
    small, big = (1_000, 3_000) if quick else (10_000, 100_000)
    rs = run_child(["bench.metrics", "--child", str(small), "--naive"], timeout=300)
    rb = run_child(["bench.metrics", "--child", str(big)], timeout=400)
    for r in (rs, rb):
        print(f"  metrics: {json.dumps(r)}", file=sys.stderr, flush=True)
    f_s = {k: float(v) for k, v in rs.items()}  # type: ignore[arg-type]
    f_b = {k: float(v) for k, v in rb.items()}  # type: ignore[arg-type]
    ls, lb = f"{small:,} accounts", f"{big:,} accounts"
    return [
        Figure(
            SECTION,
            f"render time, {ls}",
            f_s["render"],
            "s",
            "prometheus-client Gauges, same series",
            f_s["naive"],
        ),
        Figure(
            SECTION,
            f"render time, {lb}",
            f_b["render"],
            "s",
            f"agent render, {ls}",
            f_s["render"],
            "<= 1 s",
            f_b["render"] <= TARGET,
        ),
        Figure(
            SECTION,
            f"GET /metrics by curl, {ls}",
            f_s["http"],
            "s",
            f"render time, {ls}",
            f_s["render"],
        ),
        Figure(
            SECTION,
            f"GET /metrics by curl, {lb}",
            f_b["http"],
            "s",
            f"render time, {lb}",
            f_b["render"],
            "<= 1 s",
            f_b["http"] <= TARGET,
        ),
        Figure(
            SECTION,
            f"body size, {lb}",
            f_b["size"] / 1e6,
            "MB",
            f"body size, {ls}",
            f_s["size"] / 1e6,
        ),
    ]


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--child", type=int, required=True)
    p.add_argument("--naive", action="store_true")
    a = p.parse_args()
    print(json.dumps(asyncio.run(_child(a.child, a.naive))))


if __name__ == "__main__":
    main()
