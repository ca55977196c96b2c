"""The SRE kit against the real agent and a real Prometheus.

One `syncwatch run` (fixture `running_agent`: a healthy account and one with a wrong password,
disconnected auth_failed) and one Prometheus scraping it every second with
alerts/syncwatch.rules.yml loaded (fixture `prometheus`), both shared by the session.

- promtool's lint finds nothing in the agent's real /metrics;
- Prometheus scrapes the agent, loads every rule group and evaluates it without error, and the
  agent's series say what the accounts really are;
- one broken password pages nobody;
- every PromQL expression of the dashboards evaluates, and the panels that should show
  something for this agent do.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import time
from collections.abc import Mapping
from pathlib import Path

import pytest

from tests import sre_kit
from tests.servers.agent import BROKEN, HEALTHY, PROVIDER, Prometheus, RunningAgent

pytestmark = pytest.mark.slow

ALERTMANAGER_EXAMPLE = sre_kit.ALERTS_DIR / "alertmanager.example.yml"

# Panels allowed to be empty for the session agent, and why; every other panel must have data.
# Keys: (dashboard file, panel title, refId, account_id or "" for dashboards without one).
EXPECTED_EMPTY: Mapping[tuple[str, str, str, str], str] = {
    ("syncwatch-fleet.json", "Recoveries", "A", ""): "no connection has recovered",
    ("syncwatch-fleet.json", "Burst guard by provider", "A", ""): "no burst",
    ("syncwatch-account.json", "Last success", "A", BROKEN): "never succeeded",
    ("syncwatch-account.json", "Time since last success", "A", BROKEN): "never succeeded",
    ("syncwatch-account.json", "Current disconnection cause", "A", HEALTHY): "connected",
    ("syncwatch-account.json", "Disconnected cause history", "A", HEALTHY): "connected",
}


def _variables(agent: RunningAgent, account_id: str = BROKEN) -> dict[str, str]:
    return {
        **sre_kit.SAMPLE_VALUES,
        "job": "syncwatch",
        "instance": agent.address,
        "account_id": account_id,
    }


# --- the scrape itself -------------------------------------------------------------------------


@pytest.mark.skipif(shutil.which("promtool") is None, reason="needs promtool")
def test_promtool_check_metrics_finds_nothing_in_the_real_scrape(agent_scrape: str) -> None:
    proc = subprocess.run(
        ["promtool", "check", "metrics"],
        input=agent_scrape,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    problems = (proc.stdout + proc.stderr).strip()
    assert proc.returncode == 0 and not problems, problems


def test_the_scrape_shows_both_accounts_and_no_secret(agent_scrape: str) -> None:
    assert f'syncwatch_account_up{{account_id="{HEALTHY}",service="imap"' in agent_scrape
    assert f'syncwatch_account_up{{account_id="{BROKEN}",service="imap"' in agent_scrape
    for secret in ("alice-pw", "not-bobs-password", "test-api-token"):
        assert secret not in agent_scrape
    assert "@example.com" not in agent_scrape


def test_the_scrape_has_no_created_series(agent_scrape: str) -> None:
    samples = [line for line in agent_scrape.splitlines() if line and not line.startswith("#")]
    created = sorted({re.split(r"[{ ]", line)[0] for line in samples if "_created" in line})
    assert created == []


# --- Prometheus scrapes the agent and runs the rules -------------------------------------------


def test_prometheus_scrapes_the_agent(prometheus: Prometheus, running_agent: RunningAgent) -> None:
    assert prometheus.values('up{job="syncwatch"}', "instance") == {running_agent.address: 1.0}
    (target,) = prometheus.api("targets", state="active")["activeTargets"]
    assert target["health"] == "up", target
    assert target["lastError"] == "", target


def test_every_rule_group_loads_and_evaluates_cleanly(prometheus: Prometheus) -> None:
    files = sre_kit.rule_files()
    wanted = {r["_group"] for p in files for r in sre_kit.load_rules(p)}
    first = {g["name"]: g["lastEvaluation"] for g in prometheus.api("rules")["groups"]}
    assert set(first) == wanted
    # a couple more evaluations, all of them after the agent's series were scraped
    prometheus.wait_for(
        lambda: all(
            g["lastEvaluation"] != first[g["name"]] for g in prometheus.api("rules")["groups"]
        ),
        timeout=15,
        what="every group evaluated again",
    )
    groups = prometheus.api("rules")["groups"]
    n_rules = sum(len(sre_kit.load_rules(p)) for p in files)
    assert sum(len(g["rules"]) for g in groups) == n_rules
    for group in groups:
        for rule in group["rules"]:
            assert rule["health"] == "ok", (group["name"], rule["name"], rule.get("lastError"))
            assert not rule.get("lastError"), (group["name"], rule["name"], rule["lastError"])


def test_account_up_says_which_account_is_broken(prometheus: Prometheus) -> None:
    up = {
        (s["metric"]["account_id"], s["metric"]["service"]): float(s["value"][1])
        for s in prometheus.query('syncwatch_account_up{job="syncwatch"}')
    }
    assert up == {
        (HEALTHY, "imap"): 1.0,
        (HEALTHY, "smtp"): 1.0,
        (HEALTHY, "caldav"): 1.0,
        (BROKEN, "imap"): 0.0,
    }
    assert prometheus.values(f'syncwatch_account_up{{account_id="{BROKEN}"}}', "service") == {
        "imap": 0.0
    }


def test_disconnected_by_cause_names_the_broken_account(prometheus: Prometheus) -> None:
    result = prometheus.query('syncwatch_account_disconnected{cause="auth_failed"}')
    assert [(s["metric"]["account_id"], s["value"][1]) for s in result] == [(BROKEN, "1")]
    assert result[0]["metric"]["provider"] == PROVIDER
    assert prometheus.query(f'syncwatch_account_disconnected{{account_id="{HEALTHY}"}}') == []


def test_recording_rules_count_the_fleet(
    prometheus: Prometheus, running_agent: RunningAgent
) -> None:
    instance = running_agent.address
    assert prometheus.values("syncwatch:accounts:sum", "instance") == {instance: 4.0}
    assert prometheus.values("syncwatch:accounts_disconnected:sum", "instance") == {instance: 1.0}
    assert prometheus.values("syncwatch:accounts_disconnected:ratio", "instance") == {
        instance: 0.25
    }
    assert prometheus.values("syncwatch:provider_accounts:sum", "provider") == {PROVIDER: 4.0}
    assert prometheus.values("syncwatch:provider_accounts_transient_failing:ratio", "provider") == {
        PROVIDER: 0.0
    }
    assert prometheus.query("syncwatch:provider_accounts_tls_error:sum") == []


def test_one_broken_password_pages_nobody(prometheus: Prometheus) -> None:
    alerts = prometheus.api("alerts")["alerts"]
    assert [(a["labels"]["alertname"], a["state"]) for a in alerts] == []


# --- dashboards --------------------------------------------------------------------------------


def _panel_key(e: sre_kit.Expression, account_id: str) -> tuple[str, str, str, str]:
    # where: "dashboards/<file>: <title> [<refId>]"
    m = re.fullmatch(r"dashboards/([^:]+): (.*) \[(\w+)\]", e.where)
    assert m is not None, e.where
    return (m.group(1), m.group(2), m.group(3), account_id)


def _dashboard_cases() -> list[tuple[Path, str]]:
    cases: list[tuple[Path, str]] = []
    for path in sre_kit.dashboard_files():
        uses_account = any("$account_id" in e.expr for e in sre_kit.dashboard_expressions(path))
        for account in (BROKEN, HEALTHY) if uses_account else ("",):
            cases.append((path, account))
    return cases


@pytest.mark.parametrize(
    ("path", "account_id"),
    _dashboard_cases(),
    ids=[f"{p.stem}-{a}" if a else p.stem for p, a in _dashboard_cases()],
)
def test_dashboard_panels_evaluate_and_show_the_agent(
    prometheus: Prometheus, running_agent: RunningAgent, path: Path, account_id: str
) -> None:
    values = _variables(running_agent, account_id or BROKEN)
    panels = [e for e in sre_kit.dashboard_expressions(path) if e.origin == "panel"]
    assert panels
    exprs = {
        _panel_key(e, account_id): sre_kit.substitute_variables(e.expr, values) for e in panels
    }
    # every expression evaluates (an error or a warning raises); rate() needs a few scrapes of
    # the agent, so a panel still empty is asked again for a while
    empty = {key for key, expr in exprs.items() if not prometheus.query(expr)}
    deadline = time.monotonic() + 10
    while empty - set(EXPECTED_EMPTY) and time.monotonic() < deadline:
        time.sleep(0.5)
        empty = {key for key in empty if not prometheus.query(exprs[key])}
    unexpected = {key: exprs[key] for key in empty if key not in EXPECTED_EMPTY}
    assert unexpected == {}, "panels without data"
    stale = {k for k in EXPECTED_EMPTY if k in exprs and k not in empty}
    assert stale == set(), "listed as empty but shows data: update EXPECTED_EMPTY"


@pytest.mark.parametrize("path", sre_kit.dashboard_files(), ids=lambda p: p.stem)
def test_dashboard_variables_offer_the_agent(
    prometheus: Prometheus, running_agent: RunningAgent, path: Path
) -> None:
    values = _variables(running_agent)
    wanted = {"job": {"syncwatch"}, "instance": {running_agent.address}}
    wanted["account_id"] = {HEALTHY, BROKEN}
    dash = sre_kit.load_dashboard(path)
    names = {v["name"] for v in dash["templating"]["list"]}
    for e in sre_kit.dashboard_expressions(path):
        if e.origin != "variable":
            continue
        name = e.where.rsplit("variable ", 1)[1]
        assert name in names
        found = {
            s["metric"].get(name, "")
            for s in prometheus.query(sre_kit.substitute_variables(e.expr, values))
        }
        assert found == wanted[name], e.where


def test_every_rule_expression_evaluates(prometheus: Prometheus) -> None:
    for e in sre_kit.rule_expressions():
        prometheus.query(e.expr)  # raises on an error or a warning


# --- Alertmanager example ----------------------------------------------------------------------


@pytest.mark.skipif(shutil.which("amtool") is None, reason="needs amtool")
@pytest.mark.skipif(not ALERTMANAGER_EXAMPLE.exists(), reason="no alertmanager example")
def test_alertmanager_example_config_is_valid() -> None:
    proc = subprocess.run(
        ["amtool", "check-config", str(ALERTMANAGER_EXAMPLE)],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


ROUTES = {"critical": "pager", "warning": "team-chat", "info": "null"}


@pytest.mark.skipif(shutil.which("amtool") is None, reason="needs amtool")
@pytest.mark.skipif(not ALERTMANAGER_EXAMPLE.exists(), reason="no alertmanager example")
def test_alertmanager_example_routes_every_alert_by_severity() -> None:
    severities = {r["labels"]["severity"] for r in sre_kit.alert_rules()}
    assert severities == set(ROUTES)
    for rule in sre_kit.alert_rules():
        proc = subprocess.run(
            [
                "amtool",
                "config",
                "routes",
                "test",
                f"--config.file={ALERTMANAGER_EXAMPLE}",
                f"alertname={rule['alert']}",
                f"severity={rule['labels']['severity']}",
                "job=syncwatch",
                "instance=agent:9477",
            ],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
        assert proc.returncode == 0, proc.stderr
        assert proc.stdout.strip() == ROUTES[rule["labels"]["severity"]], rule["alert"]
