"""Figures and how they are written: a Markdown table and a JSON list."""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class Figure:
    """One measured value beside its same-run baseline.

    `target` says what is wanted in words ("ratio >= 0.90", "<= 1.0 s"); `met` is None when a
    figure has no target of its own (a reference figure)."""

    section: str
    name: str
    value: float
    unit: str
    baseline_name: str
    baseline_value: float
    target: str = ""
    met: bool | None = None
    note: str = ""

    @property
    def ratio(self) -> float:
        if self.baseline_value == 0:
            return math.inf if self.value else 1.0
        return self.value / self.baseline_value

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        d["ratio"] = _finite(self.ratio)
        d["value"] = _finite(self.value)
        d["baseline_value"] = _finite(self.baseline_value)
        return d

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> Figure:
        d = {k: v for k, v in d.items() if k != "ratio"}
        for k in ("value", "baseline_value"):
            if d[k] is None:
                d[k] = math.nan
        return cls(**d)


def _finite(x: float) -> float | None:
    return round(x, 6) if math.isfinite(x) else None


def fmt(x: float) -> str:
    if not math.isfinite(x):
        return "n/a"
    a = abs(x)
    if a == 0:
        return "0"
    if a >= 1000:
        return f"{x:,.0f}"
    if a >= 100:
        return f"{x:.0f}"
    if a >= 10:
        return f"{x:.1f}"
    if a >= 1:
        return f"{x:.2f}"
    if a >= 0.01:
        return f"{x:.3f}"
    return f"{x:.2e}"


def met_text(m: bool | None) -> str:
    return "" if m is None else ("yes" if m else "**NO**")


def table(figures: list[Figure]) -> str:
    rows = [
        "| section | figure | value | baseline | baseline value | ratio | target | met |",
        "|---|---|---:|---|---:|---:|---|---|",
    ]
    for f in figures:
        rows.append(
            f"| {f.section} | {f.name} | {fmt(f.value)} {f.unit} | {f.baseline_name} | "
            f"{fmt(f.baseline_value)} {f.unit} | {fmt(f.ratio)} | {f.target} | "
            f"{met_text(f.met)} |"
        )
    return "\n".join(rows) + "\n"


def print_figures(figures: list[Figure]) -> None:
    for f in figures:
        m = "" if f.met is None else (" [met]" if f.met else " [MISSED]")
        print(
            f"  {f.section:8} {f.name}: {fmt(f.value)} {f.unit}  vs {f.baseline_name}: "
            f"{fmt(f.baseline_value)} {f.unit}  ratio {fmt(f.ratio)}"
            f"{'  target ' + f.target if f.target else ''}{m}",
            flush=True,
        )


def write_json(path: Path, figures: list[Figure]) -> None:
    path.write_text(json.dumps([f.to_json() for f in figures], indent=1) + "\n")


def read_json(path: Path) -> list[Figure]:
    return [Figure.from_json(d) for d in json.loads(path.read_text())]
