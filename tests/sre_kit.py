"""Helpers shared by the SRE kit tests: find every PromQL expression, take it apart, check it.

- `rule_expressions()`, `dashboard_expressions()`, `all_expressions()`: every PromQL expression in
  alerts/*.yml and dashboards/*.json (panel targets and `label_values(...)` variable queries).
- `substitute_variables(expr)`: Grafana variables replaced by sample values so promtool can parse.
- `selectors(expr)`, `metric_names(expr)`: vector selectors and metric names an expression uses.
- `exported_metric_names(scrape_text)`: the series names a Prometheus text exposition offers.
- `promtool_check_expressions(exprs)`: syntax check of many expressions with one promtool call.

A small PromQL scanner, not a parser: it understands strings, label matchers, ranges, grouping
clauses and function calls, which is all the name checks need; promtool judges the syntax.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import tempfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parent.parent
ALERTS_DIR = REPO / "alerts"
RULE_TESTS_DIR = ALERTS_DIR / "tests"
DASHBOARDS_DIR = REPO / "dashboards"
RUNBOOKS = REPO / "docs" / "runbooks.md"
EXPORTED_METRICS_FILE = Path(__file__).resolve().parent / "data" / "exported_metrics.txt"

# Values for Grafana variables when an expression must be evaluated or parsed outside Grafana.
SAMPLE_VALUES: Mapping[str, str] = {
    "job": "syncwatch",
    "instance": "agent:9464",
    "account_id": "acct-1",
    "datasource": "prometheus",
    "__rate_interval": "1m",
    "__interval": "1m",
    "__range": "1h",
    "__range_s": "3600",
    "__interval_ms": "60000",
}

AGGREGATORS = frozenset(
    {
        "sum",
        "min",
        "max",
        "avg",
        "group",
        "stddev",
        "stdvar",
        "count",
        "count_values",
        "bottomk",
        "topk",
        "quantile",
        "limitk",
        "limit_ratio",
    }
)
GROUPING_KEYWORDS = frozenset({"by", "without", "on", "ignoring", "group_left", "group_right"})
OTHER_KEYWORDS = frozenset({"and", "or", "unless", "bool", "offset", "atan2", "inf", "nan"})

_IDENT = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
_NUMBER = re.compile(
    r"(?:0[xX][0-9a-fA-F]+|\d+(?:\.\d*)?(?:[eE][+-]?\d+)?|\.\d+(?:[eE][+-]?\d+)?)"
    r"(?:ms|s|m|h|d|w|y)*(?:\d+(?:ms|s|m|h|d|w|y))*"
)
_MATCHER = re.compile(
    r"\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*(=~|!~|!=|=)\s*"
    r"(\"(?:[^\"\\]|\\.)*\"|'(?:[^'\\]|\\.)*'|`[^`]*`)\s*,?"
)
_GRAFANA_VAR = re.compile(
    r"\$\{(\w+)(?::[^}]*)?\}|\[\[(\w+)(?::[^\]]*)?\]\]|\$(\w+)",
)
_LABEL_VALUES = re.compile(r"^\s*label_values\s*\((.*)\)\s*$", re.DOTALL)


@dataclass(frozen=True)
class Expression:
    """One PromQL expression and where it was found (for messages)."""

    where: str  # "alerts/syncwatch.rules.yml: SyncwatchAgentDown" or "dashboards/x.json: Panel"
    expr: str
    origin: str  # "rule" | "panel" | "variable"


@dataclass(frozen=True)
class Matcher:
    label: str
    op: str
    value: str


@dataclass(frozen=True)
class Selector:
    """A vector selector: a metric name (may be "") and its label matchers."""

    metric: str
    matchers: tuple[Matcher, ...]

    def matcher(self, label: str) -> Matcher | None:
        return next((m for m in self.matchers if m.label == label), None)


# --- files -------------------------------------------------------------------------------------


def rule_files() -> list[Path]:
    return sorted(ALERTS_DIR.glob("*.rules.yml"))  # alertmanager.example.yml is no rule file


def rule_test_files() -> list[Path]:
    return sorted(RULE_TESTS_DIR.glob("*.yml"))


def dashboard_files() -> list[Path]:
    return sorted(DASHBOARDS_DIR.glob("*.json"))


def rel(path: Path) -> str:
    return str(path.relative_to(REPO))


def load_rules(path: Path) -> list[dict[str, Any]]:
    """Every rule of a rules file, each with its group's name under "_group"."""
    doc = yaml.safe_load(path.read_text())
    out: list[dict[str, Any]] = []
    for group in doc.get("groups", []):
        for rule in group.get("rules", []):
            out.append({**rule, "_group": group["name"]})
    return out


def alert_rules() -> list[dict[str, Any]]:
    return [r for p in rule_files() for r in load_rules(p) if "alert" in r]


def recorded_names() -> set[str]:
    return {r["record"] for p in rule_files() for r in load_rules(p) if "record" in r}


def load_dashboard(path: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(path.read_text())
    return data


def iter_panels(dashboard: Mapping[str, Any]) -> Iterator[dict[str, Any]]:
    """All panels, including those nested in collapsed rows."""
    for panel in dashboard.get("panels", []):
        yield panel
        yield from panel.get("panels", [])


# --- expressions -------------------------------------------------------------------------------


def rule_expressions() -> list[Expression]:
    return [
        Expression(f"{rel(p)}: {r.get('alert') or r.get('record')}", str(r["expr"]), "rule")
        for p in rule_files()
        for r in load_rules(p)
    ]


def variable_query(variable: Mapping[str, Any]) -> str | None:
    """The query text of a Prometheus query variable (string or query-editor object)."""
    if variable.get("type") != "query":
        return None
    query = variable.get("query")
    if isinstance(query, Mapping):
        query = query.get("query")
    return str(query) if query else None


def dashboard_expressions(path: Path) -> list[Expression]:
    dash = load_dashboard(path)
    out: list[Expression] = []
    for panel in iter_panels(dash):
        for target in panel.get("targets", []):
            if target.get("expr"):
                where = f"{rel(path)}: {panel.get('title')} [{target.get('refId')}]"
                out.append(Expression(where, str(target["expr"]), "panel"))
    for variable in dash.get("templating", {}).get("list", []):
        query = variable_query(variable)
        if query is None:
            continue
        m = _LABEL_VALUES.match(query)
        if m is None:
            continue
        inner = _split_top_level(m.group(1))
        if len(inner) == 2:  # label_values(selector, label); the one-argument form has no PromQL
            where = f"{rel(path)}: variable {variable.get('name')}"
            out.append(Expression(where, inner[0].strip(), "variable"))
    return out


def all_expressions() -> list[Expression]:
    return rule_expressions() + [e for p in dashboard_files() for e in dashboard_expressions(p)]


def substitute_variables(expr: str, values: Mapping[str, str] = SAMPLE_VALUES) -> str:
    """Replace $var, ${var}, ${var:fmt} and [[var]] with sample values; unknown names raise."""

    def repl(m: re.Match[str]) -> str:
        name = m.group(1) or m.group(2) or m.group(3)
        if name not in values:
            raise KeyError(f"no sample value for Grafana variable ${name} in {expr!r}")
        return values[name]

    return _GRAFANA_VAR.sub(repl, expr)


def _split_top_level(text: str) -> list[str]:
    """Split on commas that are not inside brackets or strings."""
    parts: list[str] = []
    depth = 0
    start = 0
    i = 0
    while i < len(text):
        c = text[i]
        if c in "\"'`":
            i = _skip_string(text, i)
            continue
        if c in "([{":
            depth += 1
        elif c in ")]}":
            depth -= 1
        elif c == "," and depth == 0:
            parts.append(text[start:i])
            start = i + 1
        i += 1
    parts.append(text[start:])
    return parts


def _skip_string(text: str, i: int) -> int:
    """Index just past the string literal starting at text[i]."""
    quote = text[i]
    i += 1
    while i < len(text):
        if text[i] == "\\" and quote != "`":
            i += 2
            continue
        if text[i] == quote:
            return i + 1
        i += 1
    raise ValueError(f"unterminated string in {text!r}")


def _skip_block(text: str, i: int, close: str) -> int:
    """Index just past the bracketed block opening at text[i] (strings respected)."""
    opening = text[i]
    depth = 0
    while i < len(text):
        c = text[i]
        if c in "\"'`":
            i = _skip_string(text, i)
            continue
        if c == opening:
            depth += 1
        elif c == close:
            depth -= 1
            if depth == 0:
                return i + 1
        i += 1
    raise ValueError(f"unbalanced {opening!r} in {text!r}")


def _parse_matchers(block: str) -> tuple[Matcher, ...]:
    body = block.strip()[1:-1]
    out: list[Matcher] = []
    pos = 0
    while pos < len(body) and body[pos:].strip():
        m = _MATCHER.match(body, pos)
        if m is None:
            raise ValueError(f"cannot read label matchers {block!r}")
        raw = m.group(3)
        value = raw[1:-1] if raw[0] == "`" else raw[1:-1].encode().decode("unicode_escape")
        out.append(Matcher(m.group(1), m.group(2), value))
        pos = m.end()
    return tuple(out)


def selectors(expr: str) -> list[Selector]:
    """Every vector selector in an expression, in order."""
    out: list[Selector] = []
    i = 0
    n = len(expr)
    while i < n:
        c = expr[i]
        if c.isspace():
            i += 1
        elif c in "\"'`":
            i = _skip_string(expr, i)
        elif c == "#":  # comment to end of line
            nl = expr.find("\n", i)
            i = n if nl < 0 else nl + 1
        elif c == "[":
            i = _skip_block(expr, i, "]")
        elif c == "{":
            end = _skip_block(expr, i, "}")
            out.append(Selector("", _parse_matchers(expr[i:end])))
            i = end
        elif (num := _NUMBER.match(expr, i)) is not None and (c.isdigit() or c == "."):
            i = num.end()
        elif (ident := _IDENT.match(expr, i)) is not None:
            word = ident.group(0)
            j = ident.end()
            while j < n and expr[j].isspace():
                j += 1
            nxt = expr[j] if j < n else ""
            if word in GROUPING_KEYWORDS:
                i = _skip_block(expr, j, ")") if nxt == "(" else j
            elif word in AGGREGATORS or word in OTHER_KEYWORDS or nxt == "(":
                i = j
            elif nxt == "{":
                end = _skip_block(expr, j, "}")
                out.append(Selector(word, _parse_matchers(expr[j:end])))
                i = end
            else:
                out.append(Selector(word, ()))
                i = j
        elif c == "$":  # an unsubstituted Grafana variable outside a string
            var = _IDENT.match(expr, i + 1)
            i = var.end() if var else i + 1
        else:
            i += 1
    return out


def metric_names(expr: str) -> set[str]:
    """Metric names an expression reads (from `name{...}` and `{__name__="name"}`)."""
    names: set[str] = set()
    for sel in selectors(expr):
        if sel.metric:
            names.add(sel.metric)
        else:
            m = sel.matcher("__name__")
            if m is not None and m.op == "=":
                names.add(m.value)
    return names


# --- exposition --------------------------------------------------------------------------------


def exported_metric_names(scrape_text: str) -> set[str]:
    """Series names a Prometheus text exposition (0.0.4 or OpenMetrics) makes queryable.

    Sample lines give their names as they are (`x_bucket`, `x_sum`, `x_count`, `y_total`,
    `y_created`). `# TYPE` lines add the names a family would have even with no sample at
    scrape time (a labelled gauge nobody set yet): histogram -> _bucket/_sum/_count, counter ->
    the _total form, summary -> name/_sum/_count, anything else -> the name.
    """
    names: set[str] = set()
    for raw in scrape_text.splitlines():
        line = raw.strip()
        if not line:
            continue
        if line.startswith("#"):
            parts = line.split(None, 3)
            if len(parts) >= 4 and parts[1] == "TYPE":
                name, kind = parts[2], parts[3].strip()
                if kind in ("histogram", "gaugehistogram"):
                    names |= {f"{name}_bucket", f"{name}_sum", f"{name}_count"}
                elif kind == "summary":
                    names |= {name, f"{name}_sum", f"{name}_count"}
                elif kind == "counter":
                    names.add(name if name.endswith("_total") else f"{name}_total")
                else:
                    names.add(name)
            continue
        m = _IDENT.match(line)
        if m is None:
            raise ValueError(f"not an exposition line: {raw!r}")
        names.add(m.group(0))
    return names


def listed_metric_names(path: Path = EXPORTED_METRICS_FILE) -> set[str]:
    """Names from a one-per-line list; `#` starts a comment."""
    out: set[str] = set()
    for raw in path.read_text().splitlines():
        line = raw.split("#", 1)[0].strip()
        if line:
            out.add(line)
    return out


# --- promtool ----------------------------------------------------------------------------------


def promtool() -> str:
    exe = shutil.which("promtool")
    if exe is None:
        raise RuntimeError("promtool is not installed (apt-get install prometheus)")
    return exe


def run_promtool(*args: str, cwd: Path = REPO) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [promtool(), *args], cwd=cwd, capture_output=True, text=True, timeout=120, check=False
    )


def promtool_check_expressions(exprs: list[str]) -> tuple[bool, str]:
    """Parse every expression with `promtool check rules`, one recording rule each.

    Returns (ok, promtool output). Rule N of group "check" is exprs[N-1].
    """
    doc = {
        "groups": [
            {
                "name": "check",
                "rules": [{"record": f"check:expr_{i}", "expr": e} for i, e in enumerate(exprs)],
            }
        ]
    }
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "exprs.yml"
        path.write_text(yaml.safe_dump(doc, sort_keys=False))
        proc = run_promtool("check", "rules", str(path))
    return proc.returncode == 0, proc.stdout + proc.stderr


# --- runbooks ----------------------------------------------------------------------------------


def github_anchor(heading: str) -> str:
    """The anchor GitHub gives a Markdown heading."""
    text = heading.strip().lower()
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def runbook_anchors(path: Path = RUNBOOKS) -> set[str]:
    anchors: set[str] = set()
    in_fence = False
    for line in path.read_text().splitlines():
        if line.startswith("```"):
            in_fence = not in_fence
        elif not in_fence and (m := re.match(r"^#{1,6}\s+(.*)$", line)):
            anchors.add(github_anchor(m.group(1)))
    return anchors
