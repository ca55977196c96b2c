"""Section 2: one process holding 10,000 and 100,000 accounts (IMAP + SMTP each) at the
default 5-minute interval, with a probe that answers at once, so what is measured is the
scheduler, the state, the store writes and the metrics bookkeeping.

Each size runs in a fresh process: RSS per account = (RSS after start - RSS before the
accounts were built) / N. Baselines, same process: the inventory alone (the Account objects
the config loader would produce: their memory and build time) and, for lag, a bare asyncio
loop firing one `call_at` timer per probe at the same due times.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import sys
import tempfile
import time
from pathlib import Path

from bench.report import Figure
from bench.util import (
    config_for,
    free_port,
    instant_prober,
    percentile,
    rss_bytes,
    run_child,
    synthetic_accounts,
)

SECTION = "scale"
INTERVAL = 300.0
RSS_TARGET = 3 * 1024  # bytes per account
LAG_TARGET = 1.0  # seconds, p99


async def _child(n: int, window: float, base_window: float) -> dict[str, object]:
    from agent.app import App, Options
    from agent.config.types import ScheduleSettings
    from agent.timing import phase

    gc.collect()
    rss0 = rss_bytes()
    t0 = time.perf_counter()
    accounts = synthetic_accounts(n)
    t_build = time.perf_counter() - t0
    gc.collect()
    rss1 = rss_bytes()

    d = Path(tempfile.mkdtemp(prefix="syncwatch-bench-scale-"))
    config = config_for(
        d,
        accounts,
        listen=f"127.0.0.1:{free_port()}",
        schedule=ScheduleSettings(interval=INTERVAL),
    )
    prober = instant_prober()
    t0 = time.perf_counter()
    app = App(config, Options(prober=prober))
    lags: list[float] = []
    metric_observe = app.scheduler.stats.lag_observer

    def observe(lag: float) -> None:
        lags.append(lag)
        metric_observe(lag)

    app.scheduler.stats.lag_observer = observe
    await app.start()
    t_start = time.perf_counter() - t0
    gc.collect()
    rss2 = rss_bytes()

    # Loop stalls: a 10 ms ticker notes how late it wakes.
    stalls: list[float] = []

    async def ticker() -> None:
        loop = asyncio.get_running_loop()
        while True:
            t = loop.time()
            await asyncio.sleep(0.01)
            stalls.append(loop.time() - t - 0.01)

    tick = asyncio.create_task(ticker())
    cpu0 = time.process_time()
    await asyncio.sleep(window)
    cpu_window = time.process_time() - cpu0
    tick.cancel()
    probed = len(lags)
    await app.scheduler.stop()

    # Steady state: every service probed once (all per-account series exist).
    t0 = time.perf_counter()
    for account in accounts:
        for service, h in list(app.monitor.healths(account.id).items()):
            if h.last_probe_at is None:
                app.monitor.apply(account, await prober(account, service))
    t_fill = time.perf_counter() - t0
    gc.collect()
    rss3 = rss_bytes()
    await app.stop()

    # Baseline lag: one bare call_at timer per due probe, same due times, same rate.
    loop = asyncio.get_running_loop()
    base: list[float] = []
    now = time.time()
    end = now + base_window

    def fire(at: float) -> None:
        base.append(max(0.0, time.time() - at))

    for account in accounts:
        for service in account.services():
            ph = phase(account.id, service, INTERVAL)
            at = ph + (now - now % INTERVAL)
            while at < now:
                at += INTERVAL
            if at < end:
                loop.call_at(loop.time() + (at - time.time()), fire, at)
    cpu0 = time.process_time()
    await asyncio.sleep(base_window + 0.5)
    base_cpu = (time.process_time() - cpu0) / max(len(base), 1)

    services = sum(len(a.services()) for a in accounts)
    return {
        "n": n,
        "services": services,
        "window": window,
        "base_window": base_window,
        "rss_inventory": (rss1 - rss0) / n,
        "rss_started": (rss2 - rss0) / n,
        "rss_steady": (rss3 - rss0) / n,
        "t_build": t_build,
        "t_start": t_start,
        "t_fill": t_fill,
        "probes": probed,
        "rate": probed / window,
        "cpu_per_probe": cpu_window / max(probed, 1),
        "lag_p50": percentile(lags, 50),
        "lag_p99": percentile(lags, 99),
        "lag_max": max(lags, default=float("nan")),
        "stall_max": max(stalls, default=float("nan")),
        "stall_p99": percentile(stalls, 99),
        "base_p50": percentile(base, 50),
        "base_p99": percentile(base, 99),
        "base_n": len(base),
        "base_cpu": base_cpu,
    }


def run(quick: bool) -> list[Figure]:
    sizes = (
        [(1_000, 3.0, 2.0), (5_000, 3.0, 2.0)]
        if quick
        else [
            (10_000, 40.0, 10.0),
            (100_000, 75.0, 10.0),
        ]
    )
    figures: list[Figure] = []
    for n, window, base_window in sizes:
        r = run_child(
            [
                "bench.scale",
                "--child",
                str(n),
                "--window",
                str(window),
                "--base-window",
                str(base_window),
            ],
            timeout=window + base_window + 400,
        )
        print(f"  scale n={n}: {json.dumps(r)}", file=sys.stderr, flush=True)
        label = f"{n:,} accounts"
        note = (
            f"{r['services']} services, interval {INTERVAL:g}s, window {window:g}s, "
            f"{r['probes']} probes at {float(r['rate']):.0f}/s"  # type: ignore[arg-type]
        )
        f = {k: float(v) for k, v in r.items() if isinstance(v, int | float)}
        figures += [
            Figure(
                SECTION,
                f"RSS per account after start, {label}",
                f["rss_started"],
                "B",
                "inventory alone (Account objects)",
                f["rss_inventory"],
                "<= 3072 B",
                f["rss_started"] <= RSS_TARGET,
            ),
            Figure(
                SECTION,
                f"RSS per account, all services probed, {label}",
                f["rss_steady"],
                "B",
                "inventory alone (Account objects)",
                f["rss_inventory"],
                "<= 3072 B",
                f["rss_steady"] <= RSS_TARGET,
                note="every per-account metric series and health row present",
            ),
            Figure(
                SECTION,
                f"start-up time, {label}",
                f["t_start"],
                "s",
                "building the Account objects",
                f["t_build"],
            ),
            Figure(
                SECTION,
                f"schedule lag p50, {label}",
                f["lag_p50"],
                "s",
                "bare asyncio call_at timers, same due times",
                f["base_p50"],
                note=note,
            ),
            Figure(
                SECTION,
                f"schedule lag p99, {label}",
                f["lag_p99"],
                "s",
                "bare asyncio call_at timers, same due times",
                f["base_p99"],
                "<= 1 s",
                f["lag_p99"] <= LAG_TARGET,
                note=f"max {f['lag_max']:.3f}s; longest loop stall {f['stall_max']:.3f}s",
            ),
            Figure(
                SECTION,
                f"CPU per scheduled probe (instant probe), {label}",
                f["cpu_per_probe"] * 1e6,
                "us",
                "bare call_at timer callback",
                f["base_cpu"] * 1e6,
                note="scheduler + state machine + store write + metrics, per probe",
            ),
        ]
    return figures


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--child", type=int, required=True)
    p.add_argument("--window", type=float, required=True)
    p.add_argument("--base-window", type=float, required=True)
    a = p.parse_args()
    print(json.dumps(asyncio.run(_child(a.child, a.window, a.base_window))))


if __name__ == "__main__":
    main()
