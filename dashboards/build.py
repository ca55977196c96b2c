"""Generate the syncwatch Grafana dashboards (Grafana 11, schemaVersion 39).

    python dashboards/build.py            # rewrite dashboards/*.json
    python dashboards/build.py --check    # exit 1 if the committed JSON differs

Plain Python, no dependency: the committed JSON is what Grafana imports and what the tests check.
Every query filters on the `job` and `instance` variables; counters are read over
`$__rate_interval`; every panel has a unit. Panels reading `syncwatch:*` series need the
recording rules of alerts/syncwatch.rules.yml loaded in Prometheus.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
SCHEMA_VERSION = 39  # Grafana 11
DS: dict[str, str] = {"type": "prometheus", "uid": "${datasource}"}
F = 'job=~"$job", instance=~"$instance"'  # the filter every selector carries
ACCOUNT = f'{F}, account_id="$account_id"'
RI = "$__rate_interval"

Json = dict[str, Any]


# --- building blocks ---------------------------------------------------------------------------


def target(expr: str, legend: str = "", ref: str = "A", *, instant: bool = False) -> Json:
    t: Json = {
        "datasource": DS,
        "editorMode": "code",
        "expr": expr,
        "legendFormat": legend or "__auto",
        "range": not instant,
        "instant": instant,
        "refId": ref,
    }
    if instant:
        t["format"] = "table"
    return t


def targets(*pairs: tuple[str, str]) -> list[Json]:
    return [target(e, legend, chr(ord("A") + i)) for i, (e, legend) in enumerate(pairs)]


def thresholds(*steps: tuple[float | None, str]) -> Json:
    return {
        "mode": "absolute",
        "steps": [{"color": color, "value": value} for value, color in steps],
    }


GREEN = thresholds((None, "green"))


def value_map(mapping: dict[str, tuple[str, str]]) -> list[Json]:
    """Value mappings: raw value -> (text, color)."""
    return [
        {
            "type": "value",
            "options": {
                raw: {"text": text, "color": color, "index": i}
                for i, (raw, (text, color)) in enumerate(mapping.items())
            },
        }
    ]


UP_DOWN = value_map({"1": ("up", "green"), "0": ("down", "red")})


@dataclass
class Board:
    """Collects panels, giving each a unique id and a place on the 24-column grid."""

    uid: str
    title: str
    description: str
    variables: list[Json]
    panels: list[Json] = field(default_factory=list)
    _next_id: int = 1
    _x: int = 0
    _y: int = 0
    _row_h: int = 0

    def _place(self, w: int, h: int) -> Json:
        if self._x + w > 24:
            self._x, self._y, self._row_h = 0, self._y + self._row_h, 0
        pos = {"h": h, "w": w, "x": self._x, "y": self._y}
        self._x += w
        self._row_h = max(self._row_h, h)
        return pos

    def _id(self) -> int:
        pid = self._next_id
        self._next_id += 1
        return pid

    def row(self, title: str) -> None:
        if self._x:
            self._x, self._y, self._row_h = 0, self._y + self._row_h, 0
        self.panels.append(
            {
                "id": self._id(),
                "type": "row",
                "title": title,
                "collapsed": False,
                "gridPos": {"h": 1, "w": 24, "x": 0, "y": self._y},
                "panels": [],
            }
        )
        self._y += 1

    def panel(
        self,
        kind: str,
        title: str,
        description: str,
        tgts: list[Json],
        *,
        unit: str,
        w: int = 12,
        h: int = 8,
        defaults: Json | None = None,
        options: Json | None = None,
    ) -> None:
        fc_defaults: Json = {"unit": unit, "thresholds": GREEN, "mappings": []}
        fc_defaults.update(defaults or {})
        self.panels.append(
            {
                "id": self._id(),
                "type": kind,
                "title": title,
                "description": description,
                "datasource": DS,
                "gridPos": self._place(w, h),
                "targets": tgts,
                "fieldConfig": {"defaults": fc_defaults, "overrides": []},
                "options": options or {},
            }
        )

    def timeseries(
        self,
        title: str,
        description: str,
        tgts: list[Json],
        *,
        unit: str,
        stack: bool = False,
        bars: bool = False,
        w: int = 12,
        h: int = 8,
        min0: bool = True,
    ) -> None:
        custom: Json = {
            "drawStyle": "bars" if bars else "line",
            "lineWidth": 1,
            "fillOpacity": 60 if bars else (30 if stack else 10),
            "showPoints": "never",
            "spanNulls": False,
            "stacking": {"mode": "normal" if stack else "none", "group": "A"},
        }
        defaults: Json = {"custom": custom}
        if min0:
            defaults["min"] = 0
        options: Json = {
            "legend": {"displayMode": "list", "placement": "bottom", "showLegend": True},
            "tooltip": {"mode": "multi", "sort": "desc"},
        }
        self.panel(
            "timeseries",
            title,
            description,
            tgts,
            unit=unit,
            w=w,
            h=h,
            defaults=defaults,
            options=options,
        )

    def stat(
        self,
        title: str,
        description: str,
        tgts: list[Json],
        *,
        unit: str,
        w: int = 4,
        h: int = 4,
        steps: Json = GREEN,
        mappings: list[Json] | None = None,
        graph: bool = True,
    ) -> None:
        options: Json = {
            "reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
            "colorMode": "value",
            "graphMode": "area" if graph else "none",
            "justifyMode": "auto",
            "orientation": "auto",
            "textMode": "auto",
            "wideLayout": True,
            "showPercentChange": False,
        }
        self.panel(
            "stat",
            title,
            description,
            tgts,
            unit=unit,
            w=w,
            h=h,
            defaults={"thresholds": steps, "mappings": mappings or []},
            options=options,
        )

    def timeline(
        self,
        title: str,
        description: str,
        tgts: list[Json],
        *,
        mappings: list[Json],
        unit: str = "none",
        w: int = 12,
        h: int = 8,
    ) -> None:
        options: Json = {
            "mergeValues": True,
            "showValue": "auto",
            "alignValue": "left",
            "rowHeight": 0.9,
            "legend": {"displayMode": "list", "placement": "bottom", "showLegend": True},
            "tooltip": {"mode": "single", "sort": "none"},
        }
        defaults: Json = {
            "mappings": mappings,
            "custom": {"fillOpacity": 70, "lineWidth": 0},
            "color": {"mode": "thresholds"},
        }
        self.panel(
            "state-timeline",
            title,
            description,
            tgts,
            unit=unit,
            w=w,
            h=h,
            defaults=defaults,
            options=options,
        )

    def table(
        self,
        title: str,
        description: str,
        expr: str,
        *,
        unit: str,
        w: int = 12,
        h: int = 8,
        hide: tuple[str, ...] = ("Time", "__name__"),
    ) -> None:
        self.panel(
            "table",
            title,
            description,
            [target(expr, instant=True)],
            unit=unit,
            w=w,
            h=h,
            options={"showHeader": True, "cellHeight": "sm", "footer": {"show": False}},
        )
        self.panels[-1]["transformations"] = [
            {"id": "organize", "options": {"excludeByName": dict.fromkeys(hide, True)}}
        ]

    def to_json(self) -> Json:
        return {
            "annotations": {
                "list": [
                    {
                        "builtIn": 1,
                        "datasource": {"type": "grafana", "uid": "-- Grafana --"},
                        "enable": True,
                        "hide": True,
                        "iconColor": "rgba(0, 211, 255, 1)",
                        "name": "Annotations & Alerts",
                        "type": "dashboard",
                    }
                ]
            },
            "description": self.description,
            "editable": True,
            "fiscalYearStartMonth": 0,
            "graphTooltip": 1,
            "id": None,
            "links": [
                {
                    "asDropdown": True,
                    "icon": "external link",
                    "includeVars": True,
                    "keepTime": True,
                    "tags": ["syncwatch"],
                    "targetBlank": False,
                    "title": "syncwatch",
                    "type": "dashboards",
                }
            ],
            "panels": self.panels,
            "refresh": "1m",
            "schemaVersion": SCHEMA_VERSION,
            "tags": ["syncwatch"],
            "templating": {"list": self.variables},
            "time": {"from": "now-6h", "to": "now"},
            "timepicker": {},
            "timezone": "",
            "title": self.title,
            "uid": self.uid,
            "version": 1,
            "weekStart": "",
        }


# --- variables ---------------------------------------------------------------------------------


def datasource_var() -> Json:
    return {
        "name": "datasource",
        "label": "Data source",
        "type": "datasource",
        "query": "prometheus",
        "current": {},
        "hide": 0,
        "includeAll": False,
        "multi": False,
        "options": [],
        "refresh": 1,
        "regex": "",
        "skipUrlSync": False,
    }


def query_var(name: str, label: str, query: str, *, multi: bool = True) -> Json:
    return {
        "name": name,
        "label": label,
        "type": "query",
        "datasource": DS,
        "definition": query,
        "query": {
            "qryType": 1,
            "query": query,
            "refId": "PrometheusVariableQueryEditor-VariableQuery",
        },
        "current": {},
        "hide": 0,
        "includeAll": multi,
        "allValue": ".+" if multi else None,
        "multi": multi,
        "options": [],
        "refresh": 2,
        "regex": "",
        "skipUrlSync": False,
        "sort": 1,
    }


def common_vars() -> list[Json]:
    return [
        datasource_var(),
        query_var("job", "job", "label_values(syncwatch_build_info, job)"),
        query_var(
            "instance", "instance", 'label_values(syncwatch_build_info{job=~"$job"}, instance)'
        ),
    ]


# --- dashboards --------------------------------------------------------------------------------


def quantiles(metric: str, by: str = "") -> list[Json]:
    grouping = f"{by}, le" if by else "le"
    prefix = f"{{{{{by}}}}} " if by else ""
    return targets(
        *(
            (
                f"histogram_quantile({q}, sum by ({grouping}) (rate({metric}{{{F}}}[{RI}])))",
                f"{prefix}p{int(q * 100)}",
            )
            for q in (0.5, 0.9, 0.99)
        )
    )


def fleet() -> Json:
    b = Board(
        "syncwatch-fleet",
        "syncwatch / Fleet overview",
        "Health of every monitored mailbox and calendar connection, probes and notifications.",
        common_vars(),
    )
    b.row("Now")
    b.stat(
        "Monitored connections",
        "(account, service) pairs the agent watches.",
        targets((f"sum(syncwatch_accounts{{{F}}})", "connections")),
        unit="short",
    )
    b.stat(
        "Disconnected",
        "Connections confirmed broken: the portal shows the reconnect banner.",
        targets((f'sum(syncwatch_accounts{{{F}, state="disconnected"}}) or vector(0)', "")),
        unit="short",
        steps=thresholds((None, "green"), (1, "orange"), (50, "red")),
    )
    b.stat(
        "Disconnected share",
        "Disconnected connections / all (recording rules syncwatch:accounts*:sum).",
        targets(
            (
                f"sum(syncwatch:accounts_disconnected:sum{{{F}}})"
                f" / sum(syncwatch:accounts:sum{{{F}}})",
                "",
            )
        ),
        unit="percentunit",
        steps=thresholds((None, "green"), (0.05, "orange"), (0.1, "red")),
    )
    b.stat(
        "Degraded",
        "Failing but not confirmed yet (transient grace): no banner, no email.",
        targets((f'sum(syncwatch_accounts{{{F}, state="degraded"}}) or vector(0)', "")),
        unit="short",
        steps=thresholds((None, "green"), (1, "yellow")),
    )
    b.stat(
        "Accounts in inventory",
        "Accounts the agent knows (each has one to three services).",
        targets((f"sum(syncwatch_inventory_accounts{{{F}}})", "")),
        unit="short",
    )
    b.stat(
        "Providers held by burst guard",
        "Providers whose owner emails are held; an operator must release them.",
        targets((f"count(syncwatch_notify_burst_active{{{F}}} == 1) or vector(0)", "")),
        unit="short",
        steps=thresholds((None, "green"), (1, "red")),
        graph=False,
    )

    b.row("Connections")
    b.timeseries(
        "Connections by state",
        "All monitored connections, stacked by state.",
        targets((f"sum by (state) (syncwatch_accounts{{{F}}})", "{{state}}")),
        unit="short",
        stack=True,
    )
    b.timeseries(
        "Failing connections by cause",
        "Degraded and disconnected connections by cause.",
        targets((f'sum by (cause) (syncwatch_accounts{{{F}, state!="ok"}})', "{{cause}}")),
        unit="short",
        stack=True,
    )
    b.timeseries(
        "Failing connections by provider",
        "Degraded and disconnected connections by provider.",
        targets((f'sum by (provider) (syncwatch_accounts{{{F}, state!="ok"}})', "{{provider}}")),
        unit="short",
        stack=True,
    )
    b.timeseries(
        "Transient failure share by provider",
        "Share of a provider's connections failing for a transient cause (provider outage).",
        targets(
            (
                "sum by (provider) (syncwatch:provider_accounts_transient_failing:sum"
                f"{{{F}}}) / sum by (provider) (syncwatch:provider_accounts:sum{{{F}}})",
                "{{provider}}",
            )
        ),
        unit="percentunit",
    )
    b.table(
        "Connections by provider, service, state and cause",
        "Current counts.",
        f"sum by (provider, service, state, cause) (syncwatch_accounts{{{F}}})",
        unit="short",
        w=24,
    )

    b.row("Changes")
    b.timeseries(
        "Disconnections",
        "Connections that became disconnected, by provider and cause.",
        targets(
            (
                "sum by (provider, cause) (increase(syncwatch_state_transitions_total"
                f'{{{F}, to="disconnected"}}[{RI}]))',
                "{{provider}} {{cause}}",
            )
        ),
        unit="short",
        bars=True,
        stack=True,
    )
    b.timeseries(
        "Recoveries",
        "Connections that came back to ok, by provider.",
        targets(
            (
                "sum by (provider) (increase(syncwatch_state_transitions_total"
                f'{{{F}, to="ok"}}[{RI}]))',
                "{{provider}}",
            )
        ),
        unit="short",
        bars=True,
        stack=True,
    )

    b.row("Probes")
    b.timeseries(
        "Probe rate by result",
        "Finished probes per second: success or the cause of the failure.",
        targets((f"sum by (result) (rate(syncwatch_probes_total{{{F}}}[{RI}]))", "{{result}}")),
        unit="ops",
        stack=True,
    )
    b.timeseries(
        "Probe failure share by provider",
        "Failed probes / all probes, by provider.",
        targets(
            (
                "sum by (provider) (rate(syncwatch_probes_total"
                f'{{{F}, result!="success"}}[{RI}])) / sum by (provider) '
                f"(rate(syncwatch_probes_total{{{F}}}[{RI}]))",
                "{{provider}}",
            )
        ),
        unit="percentunit",
    )
    b.timeseries(
        "Probe duration",
        "Probe duration quantiles over all services and providers.",
        quantiles("syncwatch_probe_duration_seconds_bucket"),
        unit="s",
    )
    b.timeseries(
        "Probe duration p90 by provider",
        "90th percentile of probe duration per provider.",
        targets(
            (
                "histogram_quantile(0.9, sum by (provider, le) "
                f"(rate(syncwatch_probe_duration_seconds_bucket{{{F}}}[{RI}])))",
                "{{provider}}",
            )
        ),
        unit="s",
    )

    b.row("Notifications")
    b.timeseries(
        "Notifications by kind and result",
        "Owner and operator notifications handled per interval.",
        targets(
            (
                f"sum by (kind, result) (increase(syncwatch_notifications_total{{{F}}}[{RI}]))",
                "{{kind}} {{result}}",
            )
        ),
        unit="short",
        bars=True,
        stack=True,
    )
    b.timeseries(
        "Failed notifications",
        "Attempts that failed (will be retried) or gave up (never delivered).",
        targets(
            (
                "sum by (kind, result) (increase(syncwatch_notifications_total"
                f'{{{F}, result=~"failed|gave_up"}}[{RI}]))',
                "{{kind}} {{result}}",
            )
        ),
        unit="short",
        bars=True,
        stack=True,
    )
    b.timeseries(
        "Outbox pending",
        "Notifications waiting to be sent.",
        targets((f"sum by (instance) (syncwatch_outbox_pending{{{F}}})", "{{instance}}")),
        unit="short",
        w=8,
    )
    b.timeseries(
        "Oldest pending notification",
        "Age of the oldest notification in the outbox (0 when empty).",
        targets(
            (
                f"max by (instance) (syncwatch_outbox_oldest_pending_age_seconds{{{F}}})",
                "{{instance}}",
            )
        ),
        unit="s",
        w=8,
    )
    b.timeline(
        "Burst guard by provider",
        "Holding: owner emails of that group (a provider, or host:NAME) wait for an operator.",
        targets((f"max by (provider) (syncwatch_notify_burst_active{{{F}}})", "{{provider}}")),
        mappings=value_map({"0": ("sending", "green"), "1": ("holding", "red")}),
        w=8,
    )
    return b.to_json()


def account() -> Json:
    variables = [
        *common_vars(),
        query_var(
            "account_id",
            "account",
            f"label_values(syncwatch_account_up{{{F}}}, account_id)",
            multi=False,
        ),
    ]
    b = Board(
        "syncwatch-account",
        "syncwatch / Account drill-down",
        "One account's services: up, cause, last probe and success, consecutive failures. "
        "With metrics.per_account=failing the series exist only while the account fails.",
        variables,
    )
    b.row("Now")
    b.stat(
        "Up",
        "Each service of the account: up (1) or not (0, degraded or disconnected).",
        targets((f"syncwatch_account_up{{{ACCOUNT}}}", "{{service}}")),
        unit="none",
        mappings=UP_DOWN,
        steps=thresholds((None, "red"), (1, "green")),
        w=6,
        graph=False,
    )
    b.stat(
        "Consecutive failures",
        "Failed probes in a row, per service.",
        targets((f"syncwatch_account_consecutive_failures{{{ACCOUNT}}}", "{{service}}")),
        unit="short",
        steps=thresholds((None, "green"), (1, "orange"), (5, "red")),
        w=6,
    )
    b.stat(
        "Last probe",
        "When each service was last probed.",
        targets(
            (f"syncwatch_account_last_probe_timestamp_seconds{{{ACCOUNT}}} * 1000", "{{service}}")
        ),
        unit="dateTimeFromNow",
        w=6,
        graph=False,
    )
    b.stat(
        "Last success",
        "When each service last answered a probe successfully.",
        targets(
            (f"syncwatch_account_last_success_timestamp_seconds{{{ACCOUNT}}} * 1000", "{{service}}")
        ),
        unit="dateTimeFromNow",
        w=6,
        graph=False,
    )
    b.table(
        "Current disconnection cause",
        "Services disconnected now, with their cause (empty when all are fine or degraded).",
        f"syncwatch_account_disconnected{{{ACCOUNT}}}",
        unit="none",
        w=24,
        h=5,
        hide=("Time", "__name__", "Value", "job", "instance"),
    )

    b.row("History")
    b.timeline(
        "Up by service",
        "Up/down history of each service.",
        targets((f"syncwatch_account_up{{{ACCOUNT}}}", "{{service}}")),
        mappings=UP_DOWN,
    )
    b.timeline(
        "Disconnected cause history",
        "While a service is disconnected, its cause.",
        targets((f"syncwatch_account_disconnected{{{ACCOUNT}}}", "{{service}}: {{cause}}")),
        mappings=value_map({"1": ("disconnected", "red")}),
    )
    b.timeseries(
        "Consecutive failures",
        "Failed probes in a row, per service.",
        targets((f"syncwatch_account_consecutive_failures{{{ACCOUNT}}}", "{{service}}")),
        unit="short",
    )
    b.timeseries(
        "Time since last success",
        "How long each service has gone without a successful probe.",
        targets(
            (
                f"time() - syncwatch_account_last_success_timestamp_seconds{{{ACCOUNT}}}",
                "{{service}}",
            )
        ),
        unit="s",
    )
    b.timeseries(
        "Failing connections at this account's provider",
        "Is it this account or the whole provider? Failing connections of the same provider.",
        targets(
            (
                f'sum by (provider, cause) (syncwatch_accounts{{{F}, state!="ok"}} '
                f"and on (provider) syncwatch_account_up{{{ACCOUNT}}})",
                "{{provider}} {{cause}}",
            )
        ),
        unit="short",
        stack=True,
        w=24,
    )
    return b.to_json()


def agent() -> Json:
    b = Board(
        "syncwatch-agent",
        "syncwatch / Agent internals",
        "The agent process: scheduler, inventory, config reloads, outbox, CPU and memory.",
        common_vars(),
    )
    b.row("Scheduler")
    b.timeseries(
        "Schedule lag",
        "How late probes start against their due time.",
        quantiles("syncwatch_schedule_lag_seconds_bucket"),
        unit="s",
    )
    b.timeseries(
        "Scheduler last run age",
        "Seconds since the scheduler loop last ran; grows without bound when it is stalled.",
        targets(
            (f"time() - syncwatch_scheduler_last_run_timestamp_seconds{{{F}}}", "{{instance}}")
        ),
        unit="s",
    )
    b.timeseries(
        "Probes in flight",
        "Probes running now.",
        targets((f"sum by (instance) (syncwatch_probes_in_flight{{{F}}})", "{{instance}}")),
        unit="short",
        w=8,
    )
    b.timeseries(
        "Probe rate",
        "Finished probes per second.",
        targets((f"sum by (instance) (rate(syncwatch_probes_total{{{F}}}[{RI}]))", "{{instance}}")),
        unit="ops",
        w=8,
    )
    b.timeseries(
        "Re-checks by result",
        "Re-checks requested through the API, per second.",
        targets((f"sum by (result) (rate(syncwatch_rechecks_total{{{F}}}[{RI}]))", "{{result}}")),
        unit="ops",
        w=8,
    )

    b.row("Inventory and configuration")
    b.timeseries(
        "Inventory accounts",
        "Accounts in the inventory.",
        targets((f"syncwatch_inventory_accounts{{{F}}}", "{{instance}}")),
        unit="short",
        w=8,
    )
    b.timeseries(
        "Inventory last sync age",
        "Seconds since the inventory was last synced successfully.",
        targets(
            (
                f"time() - syncwatch_inventory_last_sync_success_timestamp_seconds{{{F}}}",
                "{{instance}}",
            )
        ),
        unit="s",
        w=8,
    )
    b.timeseries(
        "Inventory sync errors",
        "Failed inventory syncs per interval.",
        targets(
            (
                f"sum by (instance) (increase(syncwatch_inventory_sync_errors_total{{{F}}}[{RI}]))",
                "{{instance}}",
            )
        ),
        unit="short",
        bars=True,
        w=8,
    )
    b.timeline(
        "Last config reload",
        "Whether the last configuration reload worked.",
        targets((f"syncwatch_config_last_reload_successful{{{F}}}", "{{instance}}")),
        mappings=value_map({"1": ("ok", "green"), "0": ("failed", "red")}),
        w=8,
    )
    b.stat(
        "Last successful reload",
        "When the configuration was last loaded successfully.",
        targets(
            (
                f"syncwatch_config_last_reload_success_timestamp_seconds{{{F}}} * 1000",
                "{{instance}}",
            )
        ),
        unit="dateTimeFromNow",
        w=8,
        h=8,
        graph=False,
    )
    b.table(
        "Build",
        "Version and Python of each agent.",
        f"syncwatch_build_info{{{F}}}",
        unit="none",
        w=8,
        hide=("Time", "__name__", "Value"),
    )

    b.row("Outbox and breakers")
    b.timeseries(
        "Outbox pending",
        "Notifications waiting to be sent.",
        targets((f"syncwatch_outbox_pending{{{F}}}", "{{instance}}")),
        unit="short",
        w=8,
    )
    b.timeseries(
        "Oldest pending notification",
        "Age of the oldest pending notification.",
        targets((f"syncwatch_outbox_oldest_pending_age_seconds{{{F}}}", "{{instance}}")),
        unit="s",
        w=8,
    )
    b.timeseries(
        "Auth breakers open",
        "Credentials whose logins are paused after a refused login.",
        targets((f"syncwatch_auth_breakers_open{{{F}}}", "{{instance}}")),
        unit="short",
        w=8,
    )

    b.row("Process")
    b.timeseries(
        "CPU",
        "CPU time used per second (1 = one core).",
        targets((f"rate(process_cpu_seconds_total{{{F}}}[{RI}])", "{{instance}}")),
        unit="percentunit",
        w=8,
    )
    b.timeseries(
        "Resident memory",
        "Resident set size of the agent process.",
        targets((f"process_resident_memory_bytes{{{F}}}", "{{instance}}")),
        unit="bytes",
        w=8,
    )
    b.timeseries(
        "Open file descriptors",
        "Open file descriptors against the limit.",
        targets(
            (f"process_open_fds{{{F}}}", "{{instance}} open"),
            (f"process_max_fds{{{F}}}", "{{instance}} max"),
        ),
        unit="short",
        w=8,
    )
    b.timeline(
        "Scrape up",
        "Whether Prometheus could scrape the agent.",
        targets((f"up{{{F}}}", "{{instance}}")),
        mappings=UP_DOWN,
        w=8,
    )
    b.stat(
        "Uptime",
        "Time since the agent process started.",
        targets((f"time() - process_start_time_seconds{{{F}}}", "{{instance}}")),
        unit="s",
        w=8,
        h=8,
        graph=False,
    )
    b.timeseries(
        "Virtual memory",
        "Virtual memory size of the agent process.",
        targets((f"process_virtual_memory_bytes{{{F}}}", "{{instance}}")),
        unit="bytes",
        w=8,
    )
    return b.to_json()


DASHBOARDS = {
    "syncwatch-fleet.json": fleet,
    "syncwatch-account.json": account,
    "syncwatch-agent.json": agent,
}


def render() -> dict[str, str]:
    return {name: json.dumps(make(), indent=2) + "\n" for name, make in DASHBOARDS.items()}


def main(argv: list[str]) -> int:
    check = "--check" in argv
    stale = []
    for name, text in render().items():
        path = HERE / name
        if check:
            if not path.exists() or path.read_text() != text:
                stale.append(name)
        else:
            path.write_text(text)
    if stale:
        print("out of date (run python dashboards/build.py):", ", ".join(stale))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
