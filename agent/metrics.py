"""Prometheus metrics. Fleet and agent metrics are prometheus-client collectors; the
per-account series are rendered at scrape time straight from the health, so a scrape of
100,000 accounts is one pass of string concatenation, not 500,000 sample objects, and
nothing is kept per account between scrapes.

Names, types and labels are the contract in README.md (Metrics). No email address ever
becomes a label: accounts are named by their opaque id.
"""

from __future__ import annotations

import platform
import time
from collections import Counter as Tally
from collections.abc import Callable, Iterable, Iterator, Mapping

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    PlatformCollector,
    ProcessCollector,
    disable_created_metrics,
    generate_latest,
)
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from agent import __version__
from agent.config.types import Account
from agent.gcpause import paused_gc
from agent.model import ProbeResult, Service, ServiceHealth, State, Transition
from agent.monitor import HealthListener

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

# No `*_created` series: they double the counters and no rule or dashboard reads them.
disable_created_metrics()  # type: ignore[no-untyped-call]

PROBE_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 30.0)
LAG_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0)

# (name, help) of the per-account families, in the order they are rendered.
ACCOUNT_FAMILIES: tuple[tuple[str, str], ...] = (
    ("syncwatch_account_up", "1 if the service of the account works, 0 while it fails."),
    (
        "syncwatch_account_disconnected",
        "1 while the service is confirmed broken (the banner shows), by cause.",
    ),
    (
        "syncwatch_account_last_probe_timestamp_seconds",
        "When the service was last probed.",
    ),
    (
        "syncwatch_account_last_success_timestamp_seconds",
        "When a probe of the service last succeeded.",
    ),
    (
        "syncwatch_account_consecutive_failures",
        "Failed probes in a row for the service.",
    ),
)


UP, DOWN, PROBED, SUCCEEDED, FAILURES = (name for name, _ in ACCOUNT_FAMILIES)


def _esc(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


Snapshot = Callable[[], Iterable[tuple[Account, Mapping[Service, ServiceHealth]]]]


class AccountSeries:
    """The per-account families, rendered at scrape time straight from the monitor's health
    (one pass, five lists of lines): nothing is kept per account between scrapes."""

    def __init__(self, mode: str = "all", snapshot: Snapshot | None = None) -> None:
        self.mode = mode
        self.snapshot: Snapshot = snapshot or (lambda: ())

    def render(
        self, items: Iterable[tuple[Account, Mapping[Service, ServiceHealth]]] | None = None
    ) -> Iterator[str]:
        up: list[str] = []
        down: list[str] = []
        probed: list[str] = []
        succeeded: list[str] = []
        failures: list[str] = []
        if self.mode != "none":
            only_failing = self.mode == "failing"
            providers: dict[str, str] = {}
            ok = State.OK
            for account, healths in self.snapshot() if items is None else items:
                provider = providers.get(account.provider)
                if provider is None:
                    provider = providers[account.provider] = _esc(account.provider)
                aid = account.id
                if '"' in aid or "\\" in aid or "\n" in aid:
                    aid = _esc(aid)
                for service, h in healths.items():
                    if h.last_probe_at is None or (only_failing and h.state is ok):
                        continue
                    # concatenation, and whole seconds: the cheapest way to 500,000 lines
                    labels = f'{{account_id="{aid}",service="{service.value}",provider="{provider}"'
                    tail = "} "
                    up.append(f"{UP}{labels}{tail}{int(h.state is ok)}\n")
                    if h.state is State.DISCONNECTED and h.cause is not None:
                        down.append(f'{DOWN}{labels},cause="{h.cause.value}"}} 1\n')
                    probed.append(f"{PROBED}{labels}{tail}{int(h.last_probe_at)}\n")
                    if h.last_success_at is not None:
                        succeeded.append(f"{SUCCEEDED}{labels}{tail}{int(h.last_success_at)}\n")
                    failures.append(f"{FAILURES}{labels}{tail}{h.consecutive_failures}\n")
        for (name, help_), lines in zip(
            ACCOUNT_FAMILIES, (up, down, probed, succeeded, failures), strict=True
        ):
            yield f"# HELP {name} {help_}\n# TYPE {name} gauge\n"
            yield "".join(lines)


class Metrics(HealthListener):
    """Every metric the agent exports; a HealthListener of the Monitor."""

    def __init__(self, per_account: str = "all") -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        ProcessCollector(registry=self.registry)
        PlatformCollector(registry=self.registry)
        r = self.registry
        self.accounts_series = AccountSeries(per_account)
        self._fleet: Tally[tuple[str, str, str, str]] = Tally()
        self.probes = Counter(
            "syncwatch_probes",
            "Probes run, by result (success or cause).",
            ["service", "provider", "result"],
            registry=r,
        )
        self.probe_duration = Histogram(
            "syncwatch_probe_duration_seconds",
            "How long probes take.",
            ["service", "provider"],
            buckets=PROBE_BUCKETS,
            registry=r,
        )
        self.transitions = Counter(
            "syncwatch_state_transitions",
            "State changes of account services.",
            ["service", "provider", "from", "to", "cause"],
            registry=r,
        )
        self.rechecks = Counter(
            "syncwatch_rechecks",
            "Rechecks asked by the portal, by result.",
            ["result"],
            registry=r,
        )
        self.schedule_lag = Histogram(
            "syncwatch_schedule_lag_seconds",
            "How late probes start against their due time.",
            buckets=LAG_BUCKETS,
            registry=r,
        )
        self.in_flight = Gauge("syncwatch_probes_in_flight", "Probes running now.", registry=r)
        self.last_probe_finished = Gauge(
            "syncwatch_probes_last_finished_timestamp_seconds",
            "When the last probe finished; the agent's start time until one has.",
            registry=r,
        )
        self._last_finished = time.time()
        self.last_probe_finished.set(self._last_finished)
        self.scheduler_last_run = Gauge(
            "syncwatch_scheduler_last_run_timestamp_seconds",
            "When the scheduler loop last ran.",
            registry=r,
        )
        self.inventory_accounts = Gauge(
            "syncwatch_inventory_accounts", "Accounts in the inventory.", registry=r
        )
        self.inventory_last_sync = Gauge(
            "syncwatch_inventory_last_sync_success_timestamp_seconds",
            "When the inventory was last read successfully.",
            registry=r,
        )
        self.inventory_errors = Counter(
            "syncwatch_inventory_sync_errors", "Failed reads of the inventory.", registry=r
        )
        self.reload_ok = Gauge(
            "syncwatch_config_last_reload_successful",
            "1 if the last configuration reload worked.",
            registry=r,
        )
        self.reload_ok.set(1)
        self.reload_time = Gauge(
            "syncwatch_config_last_reload_success_timestamp_seconds",
            "When the configuration was last loaded successfully.",
            registry=r,
        )
        self.reload_time.set(time.time())
        build = Gauge(
            "syncwatch_build_info", "Build information.", ["version", "python"], registry=r
        )
        build.labels(__version__, platform.python_version()).set(1)
        self.notifications = Counter(
            "syncwatch_notifications",
            "Notifications, by kind and result.",
            ["kind", "result"],
            registry=r,
        )
        for kind in ("first", "reminder", "recovery", "transient", "sre", "burst"):
            for result in ("sent", "failed", "gave_up", "cancelled"):
                self.notifications.labels(kind, result)  # every series exists from the start
        for result in ("ok", "failing", "rate_limited", "not_found"):
            self.rechecks.labels(result)
        self.outbox_pending = Gauge(
            "syncwatch_outbox_pending", "Notifications waiting to be sent.", registry=r
        )
        self.outbox_oldest = Gauge(
            "syncwatch_outbox_oldest_pending_age_seconds",
            "Age of the oldest notification waiting to be sent (0 when none).",
            registry=r,
        )
        # set by the daemon before each scrape (read from its state on the event loop)
        self.breakers_open = 0
        self.burst_providers: list[str] = []
        r.register(_FleetCollector(self))

    # --- HealthListener ---------------------------------------------------------------
    def health_changed(
        self, account: Account, old: ServiceHealth | None, new: ServiceHealth | None
    ) -> None:
        if old is not None and old.last_probe_at is not None:
            key = _fleet_key(account, old)
            self._fleet[key] -= 1
            if self._fleet[key] <= 0:
                del self._fleet[key]
        if new is not None and new.last_probe_at is not None:
            self._fleet[_fleet_key(account, new)] += 1

    def probed(self, account: Account, result: ProbeResult) -> None:
        outcome = "success" if result.failure is None else result.failure.cause.value
        self.probes.labels(result.service.value, account.provider, outcome).inc()
        finished = result.started_at + result.duration_seconds
        if finished > self._last_finished:
            self._last_finished = finished
            self.last_probe_finished.set(finished)
        self.probe_duration.labels(result.service.value, account.provider).observe(
            result.duration_seconds
        )

    def transition(self, account: Account, t: Transition) -> None:
        cause = "" if t.new is State.OK or t.cause is None else t.cause.value
        self.transitions.labels(
            t.service.value, account.provider, t.old.value, t.new.value, cause
        ).inc()

    # --- exposition ---------------------------------------------------------------------
    def render_chunks(
        self, items: Iterable[tuple[Account, Mapping[Service, ServiceHealth]]] | None = None
    ) -> list[bytes]:
        """The exposition, in pieces to write one after another (joining 86 MB at 100,000
        accounts would cost another copy). `items`: a copy of the health to render (so a
        thread can render it while the event loop goes on); default: the live snapshot."""
        with paused_gc():  # half a million strings: nothing for the cyclic GC to find
            head = generate_latest(self.registry)
            return [head, *(part.encode() for part in self.accounts_series.render(items))]

    def render(
        self, items: Iterable[tuple[Account, Mapping[Service, ServiceHealth]]] | None = None
    ) -> bytes:
        return b"".join(self.render_chunks(items))

    def fleet(self) -> dict[tuple[str, str, str, str], int]:
        return dict(self._fleet)


def _fleet_key(account: Account, h: ServiceHealth) -> tuple[str, str, str, str]:
    cause = "" if h.state is State.OK or h.cause is None else h.cause.value
    return (h.service.value, account.provider, h.state.value, cause)


class _FleetCollector(Collector):
    def __init__(self, metrics: Metrics) -> None:
        self._m = metrics

    def collect(self) -> Iterator[GaugeMetricFamily]:
        fam = GaugeMetricFamily(
            "syncwatch_accounts",
            "Account services by state and cause (probed at least once).",
            labels=["service", "provider", "state", "cause"],
        )
        for key, n in sorted(self._m.fleet().items()):
            fam.add_metric(list(key), n)
        yield fam
        yield GaugeMetricFamily(
            "syncwatch_auth_breakers_open",
            "Credentials whose login is paused by the auth breaker.",
            value=self._m.breakers_open,
        )
        burst = GaugeMetricFamily(
            "syncwatch_notify_burst_active",
            "1 while owner emails for the provider are held by the burst guard.",
            labels=["provider"],
        )
        for provider in sorted(self._m.burst_providers):
            burst.add_metric([provider], 1)
        yield burst
