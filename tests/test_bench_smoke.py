"""Keeps bench/ from rotting: a quick run of one cheap section, figures well formed.
Checks behaviour only (the run works and writes what it should), never timings."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
FIELDS = {"name", "value", "unit", "baseline_name", "baseline_value", "ratio", "target", "met"}


def test_it_runs_the_metrics_section_and_writes_both_files(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "bench", "--quick", "--only", "metrics", "--docs", str(tmp_path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    figures = json.loads((tmp_path / "benchmarks.json").read_text())
    assert figures
    for f in figures:
        assert set(f) >= FIELDS, f
        assert f["baseline_value"] is not None and f["baseline_value"] > 0, f
    markdown = (tmp_path / "benchmarks.md").read_text()
    assert "python -m bench --quick --only metrics" in markdown
    assert "| metrics | render time" in markdown


def test_it_rejects_an_unknown_section() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "bench", "--only", "nonsense"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode != 0
    assert "unknown sections" in proc.stderr
