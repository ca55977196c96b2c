"""The Grafana dashboards and every PromQL expression of the SRE kit.

Dashboards: importable Grafana 11 JSON (schemaVersion 39), unique panel ids, a `datasource`
variable used by every panel, `job`/`instance` filters in every selector, a unit on every panel,
counters read over `$__rate_interval`, and the committed JSON is what dashboards/build.py makes.
Expressions (rules and dashboards): promtool parses them, and every metric they read is one the
agent exports (from its real scrape when the agent exists, and from tests/data/exported_metrics.txt)
or one the recording rules define.
"""

from __future__ import annotations

import importlib
import importlib.util
import re
import shutil
import sys
from pathlib import Path
from typing import Any

import pytest

from tests import sre_kit

DASHBOARDS = sre_kit.dashboard_files()
EXPECTED = {"syncwatch-fleet.json", "syncwatch-account.json", "syncwatch-agent.json"}
SCHEMA_VERSION = 39  # Grafana 11
RANGE_FUNCTIONS = re.compile(r"\b(rate|irate|increase|delta|idelta|deriv|\w+_over_time)\s*\(")
# Series Prometheus adds itself when it scrapes a target.
SCRAPE_SERIES = {
    "up",
    "scrape_duration_seconds",
    "scrape_samples_scraped",
    "scrape_samples_post_metric_relabeling",
    "scrape_series_added",
}
needs_promtool = pytest.mark.skipif(shutil.which("promtool") is None, reason="needs promtool")


def _agent_metrics_importable() -> bool:
    try:
        importlib.import_module("agent.metrics")
    except ImportError:
        return False
    return True


def _dashboard_panels(path: Path) -> list[dict[str, Any]]:
    return list(sre_kit.iter_panels(sre_kit.load_dashboard(path)))


def _data_panels(path: Path) -> list[dict[str, Any]]:
    return [p for p in _dashboard_panels(path) if p.get("type") != "row"]


def _variables(path: Path) -> dict[str, dict[str, Any]]:
    dash = sre_kit.load_dashboard(path)
    return {v["name"]: v for v in dash["templating"]["list"]}


# --- the dashboards ----------------------------------------------------------------------------


def test_the_three_dashboards_are_committed() -> None:
    assert {p.name for p in DASHBOARDS} == EXPECTED


def test_committed_json_is_what_build_py_generates(monkeypatch: pytest.MonkeyPatch) -> None:
    spec = importlib.util.spec_from_file_location(
        "dashboards_build", sre_kit.DASHBOARDS_DIR / "build.py"
    )
    assert spec is not None and spec.loader is not None
    build = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, spec.name, build)  # dataclasses look their module up
    spec.loader.exec_module(build)
    for name, text in build.render().items():
        committed = (sre_kit.DASHBOARDS_DIR / name).read_text()
        assert committed == text, f"{name} is stale: run python dashboards/build.py"


def test_dashboard_uids_are_unique() -> None:
    uids = [sre_kit.load_dashboard(p)["uid"] for p in DASHBOARDS]
    assert len(uids) == len(set(uids)), uids


@pytest.mark.parametrize("path", DASHBOARDS, ids=lambda p: p.name)
class TestDashboard:
    def test_is_grafana_11_importable_json(self, path: Path) -> None:
        dash = sre_kit.load_dashboard(path)
        assert dash["schemaVersion"] == SCHEMA_VERSION
        assert dash["id"] is None  # import creates it
        assert dash["uid"] and len(dash["uid"]) <= 40
        assert dash["title"].startswith("syncwatch / ")
        assert "syncwatch" in dash["tags"]
        assert dash["panels"]

    def test_panel_ids_are_unique(self, path: Path) -> None:
        ids = [p["id"] for p in _dashboard_panels(path)]
        assert all(isinstance(i, int) for i in ids), ids
        assert len(ids) == len(set(ids)), ids

    def test_panels_fit_the_grid_without_overlapping(self, path: Path) -> None:
        cells: dict[tuple[int, int], str] = {}
        for panel in _dashboard_panels(path):
            g = panel["gridPos"]
            assert g["x"] >= 0 and g["w"] > 0 and g["x"] + g["w"] <= 24, panel["title"]
            for x in range(g["x"], g["x"] + g["w"]):
                for y in range(g["y"], g["y"] + g["h"]):
                    other = cells.setdefault((x, y), panel["title"])
                    assert other == panel["title"], f"{panel['title']!r} overlaps {other!r}"

    def test_has_a_prometheus_datasource_variable_used_everywhere(self, path: Path) -> None:
        ds = _variables(path).get("datasource")
        assert ds is not None, "no datasource variable"
        assert ds["type"] == "datasource" and ds["query"] == "prometheus"
        wanted = {"type": "prometheus", "uid": "${datasource}"}
        for panel in _data_panels(path):
            assert panel["datasource"] == wanted, panel["title"]
            for t in panel["targets"]:
                assert t["datasource"] == wanted, panel["title"]
        for name, var in _variables(path).items():
            if var["type"] == "query":
                assert var["datasource"] == wanted, name

    def test_has_job_and_instance_variables(self, path: Path) -> None:
        variables = _variables(path)
        for name in ("job", "instance"):
            assert variables[name]["type"] == "query", name
        assert "$job" in (sre_kit.variable_query(variables["instance"]) or "")

    def test_every_selector_filters_on_job_and_instance(self, path: Path) -> None:
        for e in sre_kit.dashboard_expressions(path):
            if e.origin != "panel":
                continue
            sels = sre_kit.selectors(e.expr)
            assert sels, f"{e.where}: no selector in {e.expr!r}"
            for sel in sels:
                job, inst = sel.matcher("job"), sel.matcher("instance")
                assert job is not None and (job.op, job.value) == ("=~", "$job"), (e.where, sel)
                assert inst is not None and (inst.op, inst.value) == ("=~", "$instance"), (
                    e.where,
                    sel,
                )

    def test_every_panel_has_a_unit(self, path: Path) -> None:
        for panel in _data_panels(path):
            unit = panel.get("fieldConfig", {}).get("defaults", {}).get("unit")
            assert unit, f"{panel['title']} has no unit"

    def test_every_panel_has_a_query(self, path: Path) -> None:
        for panel in _data_panels(path):
            exprs = [t.get("expr") for t in panel.get("targets", [])]
            assert exprs and all(exprs), panel["title"]
            refs = [t["refId"] for t in panel["targets"]]
            assert len(refs) == len(set(refs)), panel["title"]

    def test_counters_are_read_over_rate_interval(self, path: Path) -> None:
        for e in sre_kit.dashboard_expressions(path):
            ranges = re.findall(r"\[([^\]]*)\]", e.expr)
            assert all(r == "$__rate_interval" for r in ranges), (e.where, ranges)
            calls = len(RANGE_FUNCTIONS.findall(e.expr))
            assert calls == len(ranges), f"{e.where}: a range function without a range"

    def test_every_variable_used_is_defined(self, path: Path) -> None:
        defined = set(_variables(path))
        for e in sre_kit.dashboard_expressions(path):
            used = set(re.findall(r"\$\{?(\w+)", e.expr))
            unknown = {u for u in used if not u.startswith("__")} - defined
            assert not unknown, (e.where, unknown)


def test_account_dashboard_has_an_account_variable() -> None:
    path = sre_kit.DASHBOARDS_DIR / "syncwatch-account.json"
    var = _variables(path)["account_id"]
    query = sre_kit.variable_query(var) or ""
    assert query.startswith("label_values(syncwatch_account_up")
    assert query.rstrip().endswith(", account_id)")
    assert var["multi"] is False
    for e in sre_kit.dashboard_expressions(path):
        if "syncwatch_account_" in e.expr and e.origin == "panel":
            assert 'account_id="$account_id"' in e.expr, e.where


# --- every expression --------------------------------------------------------------------------


def _all_expressions() -> list[sre_kit.Expression]:
    return sre_kit.all_expressions()


@needs_promtool
def test_every_expression_parses() -> None:
    exprs = _all_expressions()
    assert len(exprs) > 50
    substituted = [sre_kit.substitute_variables(e.expr) for e in exprs]
    ok, output = sre_kit.promtool_check_expressions(substituted)
    if not ok:
        bad = re.findall(r"rule (\d+)", output)
        where = [exprs[int(n) - 1].where for n in bad if 0 < int(n) <= len(exprs)]
        pytest.fail(f"promtool rejects expressions {where}:\n{output}")


@needs_promtool
def test_promtool_check_catches_a_broken_expression() -> None:
    ok, output = sre_kit.promtool_check_expressions(["sum(rate(x[1m])", "up == 1"])
    assert not ok
    assert "rule 1" in output


def _unknown_metrics(known: set[str]) -> dict[str, set[str]]:
    allowed = known | sre_kit.recorded_names()
    out: dict[str, set[str]] = {}
    for e in _all_expressions():
        unknown = sre_kit.metric_names(e.expr) - allowed
        if unknown:
            out[e.where] = unknown
    return out


def test_every_metric_is_in_the_exported_list() -> None:
    assert _unknown_metrics(sre_kit.listed_metric_names()) == {}


@pytest.mark.skipif(not _agent_metrics_importable(), reason="needs the agent's scrape")
def test_every_metric_is_in_the_agents_scrape(request: pytest.FixtureRequest) -> None:
    """`agent_scrape` (text of GET /metrics from a running agent) comes from another fixture
    module; until it exists this test skips rather than erroring."""
    try:
        agent_scrape: str = request.getfixturevalue("agent_scrape")
    except pytest.FixtureLookupError:
        pytest.skip("needs the agent's scrape (fixture agent_scrape is not provided yet)")
    exported = sre_kit.exported_metric_names(agent_scrape)
    assert _unknown_metrics(exported | SCRAPE_SERIES) == {}


def test_every_recorded_series_a_dashboard_reads_is_recorded() -> None:
    recorded = sre_kit.recorded_names()
    for path in DASHBOARDS:
        for e in sre_kit.dashboard_expressions(path):
            for name in sre_kit.metric_names(e.expr):
                if ":" in name:
                    assert name in recorded, (e.where, name)


def test_expressions_are_found_in_rules_and_dashboards() -> None:
    origins = {e.origin for e in _all_expressions()}
    assert origins == {"rule", "panel", "variable"}


# --- the helpers themselves --------------------------------------------------------------------


def test_exported_metric_names_reads_a_prometheus_client_scrape() -> None:
    from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

    registry = CollectorRegistry()
    Counter("syncwatch_probes", "probes", ["result"], registry=registry).labels("ok").inc()
    Histogram("syncwatch_probe_duration_seconds", "d", registry=registry).observe(0.2)
    Gauge("syncwatch_account_disconnected", "never set", ["cause"], registry=registry)
    Gauge("syncwatch_outbox_pending", "set", registry=registry).set(3)
    names = sre_kit.exported_metric_names(generate_latest(registry).decode())
    assert {
        "syncwatch_probes_total",
        "syncwatch_probe_duration_seconds_bucket",
        "syncwatch_probe_duration_seconds_sum",
        "syncwatch_probe_duration_seconds_count",
        "syncwatch_account_disconnected",
        "syncwatch_outbox_pending",
    } <= names
    assert "syncwatch_probes" not in names
    assert "syncwatch_probe_duration_seconds" not in names


def test_exported_metric_names_reads_openmetrics_counter_families() -> None:
    text = (
        "# TYPE syncwatch_rechecks counter\n"
        'syncwatch_rechecks_total{result="ok"} 2\n'
        "# TYPE syncwatch_notifications counter\n"
        "# EOF\n"
    )
    names = sre_kit.exported_metric_names(text)
    assert names == {"syncwatch_rechecks_total", "syncwatch_notifications_total"}


@pytest.mark.parametrize(
    ("expr", "names"),
    [
        ("up", {"up"}),
        ('sum by (job, le) (rate(a_bucket{job=~"$job"}[$__rate_interval]))', {"a_bucket"}),
        ("x / on (job) group_left (version) y", {"x", "y"}),
        ('absent(up{job=~".*sync.*"})', {"up"}),
        ("time() - ts_seconds > bool 300", {"ts_seconds"}),
        ("a and on (provider) b or vector(0)", {"a", "b"}),
        ('{__name__="by_name", x="}"}', {"by_name"}),
        ("histogram_quantile(0.9, sum without (pod) (rate(h_bucket[5m] offset 1h)))", {"h_bucket"}),
        ('label_replace(m, "dst", "$1", "src", "(.*)")', {"m"}),
        ("syncwatch:accounts:sum * 1e3", {"syncwatch:accounts:sum"}),
        ("max(m) by (x)", {"m"}),
    ],
)
def test_metric_names_table(expr: str, names: set[str]) -> None:
    assert sre_kit.metric_names(expr) == names


def test_selectors_read_matchers() -> None:
    (sel,) = sre_kit.selectors('m{job=~"$job", instance=~"$instance", cause!="a,b"}')
    assert sel.metric == "m"
    assert [(m.label, m.op, m.value) for m in sel.matchers] == [
        ("job", "=~", "$job"),
        ("instance", "=~", "$instance"),
        ("cause", "!=", "a,b"),
    ]


def test_substitute_variables() -> None:
    expr = 'rate(m{job=~"$job", instance=~"${instance}", a="[[account_id]]"}[$__rate_interval])'
    assert sre_kit.substitute_variables(expr) == (
        'rate(m{job=~"syncwatch", instance=~"agent:9464", a="acct-1"}[1m])'
    )
    with pytest.raises(KeyError):
        sre_kit.substitute_variables("m{x=~'$nope'}")


def test_github_anchor() -> None:
    assert sre_kit.github_anchor("SyncwatchAgentDown") == "syncwatchagentdown"
    assert sre_kit.github_anchor("How to confirm: PromQL") == "how-to-confirm-promql"
