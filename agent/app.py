"""Wires the parts into the daemon: store, monitor, scheduler, notifier, metrics, HTTP.

`App.start()` / `App.stop()` for tests; `serve(config_path)` owns signals (SIGTERM
finishes in-flight probes, saves state and exits; SIGHUP reloads).
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import os
import signal
import socket
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aiohttp import web

from agent.api import RecheckLimited, Rendered, make_app
from agent.banner import account_status, owner_banner, reconnect_url
from agent.config.load import ConfigError, load_config
from agent.config.types import Account, Config
from agent.gcpause import paused_gc
from agent.inventory import Inventory, InventoryError, inventory_for
from agent.metrics import Metrics
from agent.model import ProbeResult, Service, ServiceHealth
from agent.monitor import Monitor
from agent.net import Resolver, SystemResolver
from agent.notify.render import config_problems
from agent.notify.service import Notifier, group_sizes
from agent.probes import probe_service
from agent.probes.oauth import OAuthTokens
from agent.scheduler import Prober, Scheduler
from agent.secret import Secret
from agent.state import Policy
from agent.store.base import Store
from agent.store.sqlite import SqliteStore
from agent.store.tokens import StoreTokens
from agent.views import DocCache, Unhealthy

log = logging.getLogger(__name__)

FLUSH_EVERY = 1.0  # routine health updates reach the store at least this often
# The health of a large fleet is millions of long-lived objects: a full collection of the
# cyclic GC would walk them all and stall the event loop. They hold no cycles (refcounting
# frees them), so they are moved out of the collector's sight now and then (gc.freeze).
FREEZE_EVERY = 60  # flush ticks
NOTIFY_TICK = 5.0  # the notifier plans and delivers at least this often ...
NOTIFY_TICK_MIN = 1.0  # ... and at most this often (a plan reads every incident)


def notify_tick(config: Config) -> float:
    """Seconds between notifier ticks: a quarter of notify.coalesce (the shortest delay the
    notifier owes anyone), bounded, so a short coalesce is honoured without busy-looping."""
    return min(NOTIFY_TICK, max(NOTIFY_TICK_MIN, config.notify.coalesce / 4))


class StartError(Exception):
    """The daemon cannot start (e.g. its port is taken); the message says why."""


@dataclass
class Options:
    clock: Callable[[], float] = time.time
    prober: Prober | None = None  # default: the real probes
    resolver: Resolver | None = None
    environ: Mapping[str, str] | None = None
    worker_id: str = f"{socket.gethostname()}:{os.getpid()}"


class App:
    def __init__(self, config: Config, options: Options | None = None) -> None:
        self.config = config
        self.options = options or Options()
        self._clock = self.options.clock
        self.metrics = Metrics(config.metrics.per_account)
        self.store: Store = SqliteStore.open(config.store.path)
        self.docs = DocCache()
        self.unhealthy = Unhealthy()
        self.group_totals: dict[str, int] = {}
        self.monitor = Monitor(
            self.store,
            Policy.from_settings(config.schedule),
            clock=self._clock,
            listeners=[self.metrics, self.docs, self.unhealthy],
        )
        self.tokens = OAuthTokens(
            StoreTokens(self.store), resolver=self.options.resolver, clock=self._clock
        )
        self.scheduler = Scheduler(
            self.monitor,
            self.options.prober or self._probe,
            clock=self._clock,
            interval=config.schedule.interval,
            concurrency=config.schedule.concurrency,
            per_host=config.schedule.per_host_concurrency,
            jitter=config.schedule.jitter,
        )
        self.scheduler.stats.lag_observer = self.metrics.schedule_lag.observe
        self.metrics.accounts_series.snapshot = self._snapshot
        self.notifier = Notifier.from_config(
            config, self.store, clock=self._clock, worker_id=self.options.worker_id
        )
        self.inventory: Inventory = inventory_for(config, self.options.environ)
        self._recheck_at: dict[str, float] = {}
        self._tasks: list[asyncio.Task[None]] = []
        self._runners: list[web.AppRunner] = []
        self._ready = False
        self._reload_lock = asyncio.Lock()

    # --- probing ------------------------------------------------------------------------
    async def _probe(self, account: Account, service: Service) -> ProbeResult:
        return await probe_service(
            account,
            service,
            resolver=self.options.resolver or SystemResolver(),
            tokens=self.tokens,
        )

    def _snapshot(self) -> list[tuple[Account, dict[Service, ServiceHealth]]]:
        accounts, health = self.monitor.accounts, self.monitor.health
        return [(a, health.get(i, {})) for i, a in accounts.items()]

    def _breakers_open(self) -> int:
        now = self._clock()
        keys = {
            (h.account_id, h.credential)
            for healths in self.monitor.health.values()
            for h in healths.values()
            if h.breaker_until is not None and h.breaker_until > now
        }
        return len(keys)

    # --- lifecycle ----------------------------------------------------------------------
    async def start(self) -> None:
        """Listen first (a taken port stops here, before anything else runs), then load the
        state, install the inventory and start probing. Raises StartError."""
        await self._serve_http()
        self.monitor.load()
        accounts: Sequence[Account] = self.config.accounts
        if self.config.inventory_http is not None:
            accounts = await self._load_inventory() or []
        self._install(accounts)
        self._tasks.append(asyncio.create_task(self.scheduler.run(), name="scheduler"))
        self._tasks.append(asyncio.create_task(self._notify_loop(), name="notifier"))
        self._tasks.append(asyncio.create_task(self._flush_loop(), name="flush"))
        if self.config.inventory_http is not None:
            self._tasks.append(asyncio.create_task(self._inventory_loop(), name="inventory"))
        if not self.config.api.tokens:
            log.warning("api.tokens is empty: every /api/v1 call answers 401")
        self._ready = True
        log.info("syncwatch started accounts=%d listen=%s", len(accounts), self.config.http.listen)

    async def stop(self) -> None:
        self._ready = False
        await self.scheduler.stop()
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._tasks.clear()
        self.monitor.flush()
        for runner in self._runners:
            await runner.cleanup()
        self._runners.clear()
        await self.inventory.close()
        self.store.close()
        log.info("syncwatch stopped")

    async def _serve_http(self) -> None:
        api_listen = self.config.api.listen
        apps = [(self.config.http.listen, make_app(self, api=api_listen is None))]
        if api_listen is not None:
            apps.append((api_listen, make_app(self, admin=False)))
        for listen, app in apps:
            host, _, port = listen.rpartition(":")
            runner = web.AppRunner(app, access_log=None)
            await runner.setup()
            self._runners.append(runner)
            site = web.TCPSite(runner, host.strip("[]") or "127.0.0.1", int(port))
            try:
                await site.start()
            except OSError as e:
                raise StartError(f"cannot listen on {listen}: {e.strerror or e}") from None

    def _install(self, accounts: Sequence[Account]) -> None:
        self.docs.clear()
        changed, removed = self.monitor.set_accounts(accounts)
        for account_id in removed:
            self.scheduler.forget(account_id)
            self.notifier.account_removed(account_id)
        fresh = {a.id for a in changed}
        for account in self.monitor.accounts.values():
            # new accounts and changed credentials are probed at once; the rest keep time
            known = any(h.last_probe_at for h in self.monitor.healths(account.id).values())
            self.scheduler.plan(account, now_=account.id in fresh and known)
        self.group_totals = group_sizes(list(self.monitor.accounts.values()))
        gc.freeze()
        self.metrics.inventory_accounts.set(len(self.monitor.accounts))
        self.metrics.inventory_last_sync.set(self._clock())

    async def _load_inventory(self) -> list[Account] | None:
        try:
            return await self.inventory.load()
        except InventoryError as e:
            self.metrics.inventory_errors.inc()
            log.error("inventory read failed: %s", e)
            return None

    async def _inventory_loop(self) -> None:
        assert self.config.inventory_http is not None
        while True:
            await asyncio.sleep(self.config.inventory_http.poll_interval)
            accounts = await self._load_inventory()
            if accounts is not None:
                self._install(accounts)
            else:
                self.metrics.inventory_last_sync.set(self._clock())

    def _plan_notifications(self, now: float) -> None:
        """Plan for the owners that need it: someone with a service not ok, or an owner
        incident still open. A fleet of 100,000 healthy accounts costs nothing here."""
        owners = {
            self.monitor.accounts[a].owner.id
            for a in self.unhealthy.ids
            if a in self.monitor.accounts
        } | self.notifier.open_owners()
        accounts = [
            self.monitor.accounts[i]
            for owner in owners
            for i in sorted(self.monitor.by_owner.get(owner, ()))
        ]
        self.notifier.plan(now, accounts, self.monitor.health, group_totals=self.group_totals)

    async def _flush_loop(self) -> None:
        ticks = 0
        while True:
            await asyncio.sleep(FLUSH_EVERY)
            try:
                self.monitor.flush()
            except Exception:
                log.exception("health flush failed; retrying")
            ticks += 1
            if ticks % FREEZE_EVERY == 0:
                gc.freeze()

    async def _notify_loop(self) -> None:
        while True:
            try:
                now = self._clock()
                self._plan_notifications(now)
                await self.notifier.deliver(now)
                self._export_notify_stats()
            except Exception:
                log.exception("notifier tick failed")
            await asyncio.sleep(notify_tick(self.config))

    def _export_notify_stats(self) -> None:
        """Copy the notifier's numbers (refreshed by its own plan/deliver) to the metrics;
        no outbox scan of its own."""
        stats = self.notifier.stats
        for (kind, result), n in stats.take_counts().items():
            self.metrics.notifications.labels(kind, result).inc(n)
        self.metrics.outbox_pending.set(stats.outbox_pending)
        self.metrics.outbox_oldest.set(stats.outbox_oldest_pending_age)

    # --- reload -------------------------------------------------------------------------
    async def reload(self) -> tuple[bool, str]:
        async with self._reload_lock:
            try:
                config = await asyncio.to_thread(
                    load_config, self.config.path, environ=self.options.environ
                )
            except ConfigError as e:
                self.metrics.reload_ok.set(0)
                log.error("reload rejected, keeping the running config: %s", e)
                return False, str(e)
            problems = await asyncio.to_thread(config_problems, config)
            if problems:
                # a broken template accepted here would fail every notifier tick
                message = "; ".join(f"{config.path}: {p}" for p in problems)
                self.metrics.reload_ok.set(0)
                log.error("reload rejected, keeping the running config: %s", message)
                return False, message
            if config.store.path != self.config.store.path:
                log.warning("store.path changed: takes effect on restart")
            if (config.http, config.api.listen) != (self.config.http, self.config.api.listen):
                log.warning("listen addresses changed: take effect on restart")
            self.config = config
            self.monitor.policy = Policy.from_settings(config.schedule)
            self.scheduler.interval = config.schedule.interval
            self.scheduler.concurrency = config.schedule.concurrency
            self.scheduler.per_host = config.schedule.per_host_concurrency
            self.metrics.accounts_series.mode = config.metrics.per_account
            self.notifier.update_config(config)
            self.docs.clear()  # reconnect URLs may have changed
            if config.inventory_http is None:
                self._install(config.accounts)
            self.metrics.reload_ok.set(1)
            self.metrics.reload_time.set(time.time())
            log.info("config reloaded accounts=%d", len(self.monitor.accounts))
            return True, f"reloaded: {len(self.monitor.accounts)} accounts"

    # --- Backend for the HTTP API -----------------------------------------------------------
    def ready(self) -> bool:
        return self._ready

    def api_tokens(self) -> Sequence[Secret]:
        return self.config.api.tokens

    def _before_scrape(self) -> None:
        self.metrics.in_flight.set(self.scheduler.in_flight)
        self.metrics.scheduler_last_run.set(self.scheduler.stats.last_run)
        self.metrics.breakers_open = self._breakers_open()
        self.metrics.burst_providers = self.notifier.burst_providers()

    def metrics_text(self) -> bytes:
        self._before_scrape()
        return self.metrics.render()

    async def metrics_chunks(self) -> list[bytes]:
        """/metrics: a copy of the health taken in a thread and rendered there, so a scrape
        of a large fleet does not hold the scheduler up for its whole length."""
        self._before_scrape()
        accounts, health = self.monitor.accounts, self.monitor.health

        def render() -> list[bytes]:
            with paused_gc():
                # list(d.items()) and dict(d) copy in one step each (the GIL is held): a
                # consistent view even while the loop goes on changing the health
                items = [(a, dict(health.get(i, ()))) for i, a in list(accounts.items())]
                return self.metrics.render_chunks(items)

        return await asyncio.to_thread(render)

    def _reconnect_url(self, account: Account) -> str:
        return reconnect_url(self.config.portal.reconnect_url, account)

    def account_status(self, account_id: str) -> dict[str, Any] | None:
        account = self.monitor.accounts.get(account_id)
        if account is None:
            return None
        healths = self.monitor.healths(account_id)
        return account_status(
            account,
            healths,
            reconnect_url=self._reconnect_url(account),
            checked_at=_checked_at(healths.values()),
        )

    def owner_banner(self, owner_id: str) -> dict[str, Any]:
        ids = sorted(self.monitor.by_owner.get(owner_id, ()))
        pairs = [(self.monitor.accounts[i], self.monitor.healths(i)) for i in ids]
        return owner_banner(
            owner_id,
            pairs,
            reconnect_url_for=self._reconnect_url,
            checked_at=_checked_at(h for _, hs in pairs for h in hs.values()),
        )

    # Rendered documents, cached until the health behind them changes (DocCache).
    def status_json(self, account_id: str) -> Rendered | None:
        doc = self.docs.accounts.get(account_id)
        if doc is None:
            status = self.account_status(account_id)
            if status is None:
                return None
            doc = self.docs.accounts[account_id] = Rendered(status)
        return doc

    def banner_json(self, owner_id: str) -> Rendered:
        doc = self.docs.owners.get(owner_id)
        if doc is None:
            doc = Rendered(self.owner_banner(owner_id))
            if owner_id in self.monitor.by_owner:  # never cache what anybody can ask for
                self.docs.owners[owner_id] = doc
        return doc

    async def recheck_json(self, account_id: str) -> Rendered | None:
        status = await self.recheck(account_id)
        return None if status is None else Rendered(status)

    async def recheck(self, account_id: str) -> dict[str, Any] | None:
        now = self._clock()
        last = self._recheck_at.get(account_id)
        limit = self.config.schedule.recheck_min_interval
        if last is not None and now - last < limit:
            self.metrics.rechecks.labels("rate_limited").inc()
            raise RecheckLimited(limit - (now - last))
        try:
            fresh = await self.inventory.fetch(account_id)
        except InventoryError as e:
            log.warning(
                "recheck account=%s: inventory read failed (%s); using the known one", account_id, e
            )
            fresh = self.monitor.accounts.get(account_id)
        if fresh is None:
            if account_id in self.monitor.accounts:
                self.monitor.remove(account_id, now)
                self.scheduler.forget(account_id)
                self.notifier.account_removed(account_id)
            self.metrics.rechecks.labels("not_found").inc()
            return None
        self._recheck_at[account_id] = now
        self.docs.clear()
        self.monitor.upsert(fresh)
        account = self.monitor.accounts[account_id]
        self.monitor.lift_breaker(account)
        results = await self.scheduler.probe_now(account)
        self.metrics.rechecks.labels("ok" if all(r.ok for r in results) else "failing").inc()
        self._plan_notifications(self._clock())
        return self.account_status(account_id)

    def release_burst(self, provider: str) -> int:
        return self.notifier.release_burst(provider)


def _checked_at(healths: Iterable[ServiceHealth]) -> float | None:
    """When the newest of these checks ran; None while none has run yet."""
    times = [h.last_probe_at for h in healths if h.last_probe_at]
    return max(times) if times else None


async def serve(config_path: Path, *, config: Config | None = None) -> int:
    """Run the daemon until SIGTERM/SIGINT. SIGHUP reloads the config."""
    app = App(config or load_config(config_path))
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    loop.add_signal_handler(signal.SIGHUP, lambda: asyncio.ensure_future(app.reload()))
    try:
        await app.start()
    except StartError as e:
        log.error("%s", e)
        await app.stop()
        return 2
    try:
        await stop.wait()
    finally:
        log.info("shutting down: finishing probes in flight")
        await app.stop()
    return 0
