"""The Prometheus rules: promtool accepts them, their unit tests pass, and they follow the mixin
conventions (names, severities, annotations, runbook sections, a test for every alert)."""

from __future__ import annotations

import re
import shutil
from typing import Any

import pytest
import yaml

from tests import sre_kit

pytestmark = pytest.mark.skipif(shutil.which("promtool") is None, reason="needs promtool")

RUNBOOK_BASE = "https://github.com/example-org/syncwatch/blob/main/docs/runbooks.md#"
SEVERITIES = {"critical", "warning", "info"}


def _alerts() -> list[dict[str, Any]]:
    return sre_kit.alert_rules()


def _alert_ids() -> list[str]:
    return [f"{r['alert']}/{r.get('labels', {}).get('severity')}" for r in _alerts()]


def test_there_are_rule_files_and_rule_tests() -> None:
    assert [p.name for p in sre_kit.rule_files()] == ["syncwatch.rules.yml"]
    assert sre_kit.rule_test_files(), "alerts/tests/*.yml is empty"


@pytest.mark.parametrize("path", sre_kit.rule_files(), ids=sre_kit.rel)
def test_promtool_check_rules_accepts_the_rules(path: Any) -> None:
    proc = sre_kit.run_promtool("check", "rules", str(path))
    assert proc.returncode == 0, proc.stdout + proc.stderr


@pytest.mark.parametrize("path", sre_kit.rule_test_files(), ids=sre_kit.rel)
def test_promtool_unit_tests_pass(path: Any) -> None:
    proc = sre_kit.run_promtool("test", "rules", str(path))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "SUCCESS" in proc.stdout


def test_a_wrong_expectation_makes_promtool_fail(tmp_path: Any) -> None:
    """Guard against a promtool that passes everything: a test expecting a silent alert fails."""
    rules = sre_kit.ALERTS_DIR / "syncwatch.rules.yml"
    doc = {
        "rule_files": [str(rules)],
        "evaluation_interval": "1m",
        "tests": [
            {
                "interval": "1m",
                "input_series": [
                    {"series": 'syncwatch_config_last_reload_successful{job="s"}', "values": "1x5"}
                ],
                "alert_rule_test": [
                    {
                        "eval_time": "5m",
                        "alertname": "SyncwatchConfigReloadFailed",
                        "exp_alerts": [{"exp_labels": {"severity": "warning", "job": "s"}}],
                    }
                ],
            }
        ],
    }
    path = tmp_path / "wrong_test.yml"
    path.write_text(yaml.safe_dump(doc))
    proc = sre_kit.run_promtool("test", "rules", str(path))
    assert proc.returncode != 0
    assert "FAILED" in proc.stdout + proc.stderr


@pytest.mark.parametrize("rule", _alerts(), ids=_alert_ids())
def test_alert_follows_the_conventions(rule: dict[str, Any]) -> None:
    name = rule["alert"]
    assert re.fullmatch(r"Syncwatch[A-Z][A-Za-z0-9]+", name), name
    labels = rule.get("labels", {})
    assert labels.get("severity") in SEVERITIES, labels
    annotations = rule.get("annotations", {})
    assert set(annotations) >= {"summary", "description", "runbook_url"}, annotations
    assert annotations["runbook_url"] == RUNBOOK_BASE + name.lower()
    for key in ("summary", "description"):
        assert annotations[key].strip(), f"{name}: empty {key}"


def test_every_runbook_url_has_a_section() -> None:
    anchors = sre_kit.runbook_anchors()
    missing = {
        r["alert"]
        for r in _alerts()
        if r["annotations"]["runbook_url"].rsplit("#", 1)[1] not in anchors
    }
    assert not missing, f"docs/runbooks.md has no section for {sorted(missing)}"


def test_critical_and_fleet_alerts_wait_before_firing() -> None:
    """No alert fires on one failed probe or one failed scrape: everything reading a gauge
    or `up` waits; only alerts over a counter's increase may fire at once."""
    for r in _alerts():
        if r["alert"] == "SyncwatchNotificationsGaveUp":
            assert "increase(" in r["expr"]
            continue
        assert r.get("for"), f"{r['alert']} has no for:"


def _tested_alerts() -> dict[str, set[str]]:
    """alertname -> {"fires", "silent"}: which kinds of cases the promtool tests hold."""
    seen: dict[str, set[str]] = {}
    for path in sre_kit.rule_test_files():
        doc = yaml.safe_load(path.read_text())
        for case in doc.get("tests", []):
            for check in case.get("alert_rule_test", []):
                kind = "fires" if check.get("exp_alerts") else "silent"
                seen.setdefault(check["alertname"], set()).add(kind)
    return seen


def test_every_alert_has_cases_that_fire_and_cases_that_do_not() -> None:
    seen = _tested_alerts()
    for name in sorted({r["alert"] for r in _alerts()}):
        assert seen.get(name) == {"fires", "silent"}, f"{name}: promtool cases {seen.get(name)}"


def test_every_severity_of_an_alert_is_seen_firing() -> None:
    """An alert with several rules (warning + critical) needs each severity to fire in a test."""
    fired: set[tuple[str, str]] = set()
    for path in sre_kit.rule_test_files():
        for case in yaml.safe_load(path.read_text()).get("tests", []):
            for check in case.get("alert_rule_test", []):
                for exp in check.get("exp_alerts") or []:
                    fired.add((check["alertname"], exp["exp_labels"]["severity"]))
    wanted = {(r["alert"], r["labels"]["severity"]) for r in _alerts()}
    assert wanted <= fired, sorted(wanted - fired)


def test_fleet_alerts_aggregate_and_never_name_an_account() -> None:
    for r in _alerts():
        assert "account_id" not in r["expr"], f"{r['alert']} reads per-account series"
        assert "syncwatch_account_" not in r["expr"], r["alert"]
