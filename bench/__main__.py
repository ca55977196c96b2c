"""`python -m bench [--quick] [--only a,b] [--docs DIR]`: run the sections, each in its own
process, print every figure beside its baseline, and write DIR/benchmarks.md and .json
(by default docs/ for a full run of every section; a --quick or --only run writes no docs
unless --docs is given)."""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.report import Figure, fmt, print_figures, read_json, table, write_json
from bench.util import loadavg

SECTIONS = ("probes", "scale", "metrics", "banner", "recheck")
ROOT = Path(__file__).resolve().parent.parent


def _run_section(name: str, quick: bool, out: Path) -> None:
    import importlib

    module = importlib.import_module(f"bench.{name}")
    figures: list[Figure] = module.run(quick)
    write_json(out, figures)


def _git_head() -> str:
    try:
        return subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=False,
        ).stdout.strip()
    except OSError:
        return "?"


def _markdown(
    figures: list[Figure], command: str, started: str, took: float, load: str, notes: dict[str, str]
) -> str:
    missed = [f for f in figures if f.met is False]
    lines = [
        "# Benchmarks",
        "",
        f"Made by `{command}` on {started} (commit {_git_head()}), in {took:.0f} s.",
        "",
        f"Machine: {os.cpu_count()} cores shared by the agent, Dovecot and the load "
        f"generators (load average {load} at the start; a virtual machine whose speed "
        f"drifts during a run), Python "
        f"{platform.python_version()}. All traffic is on 127.0.0.1. Absolute numbers are "
        "noisy here; each figure is set beside a baseline measured in the same run, and the "
        "ratio is what to compare between runs.",
        "",
        table(figures),
        "Targets met: "
        f"{sum(1 for f in figures if f.met)} of {sum(1 for f in figures if f.met is not None)}.",
        "",
    ]
    for name, text in notes.items():
        lines += [f"## {name}", "", text.strip(), ""]
    if missed:
        lines += ["## Targets missed", ""]
        lines += [
            f"- {f.section}: {f.name}: {fmt(f.value)} {f.unit} (target {f.target})."
            f"{' ' + f.note if f.note else ''}"
            for f in missed
        ]
        lines.append("")
        lines.append("What limits each is explained in the section notes above.")
        lines.append("")
    return "\n".join(lines)


def main() -> int:
    p = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    p.add_argument("--quick", action="store_true", help="a smoke run of a few seconds each")
    p.add_argument("--only", default="", help=f"comma-separated sections of {SECTIONS}")
    p.add_argument("--docs", type=Path, default=None, help="where to write benchmarks.md/.json")
    p.add_argument("--section", help=argparse.SUPPRESS)
    p.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    a = p.parse_args()
    if a.section:
        _run_section(a.section, a.quick, a.out)
        return 0
    chosen = [s.strip() for s in a.only.split(",") if s.strip()] or list(SECTIONS)
    unknown = [s for s in chosen if s not in SECTIONS]
    if unknown:
        p.error(f"unknown sections {unknown}; choose from {', '.join(SECTIONS)}")
    docs = a.docs
    if docs is None and not a.quick and not a.only:
        docs = ROOT / "docs"
    command = (
        "python -m bench"
        + (" --quick" if a.quick else "")
        + (f" --only {a.only}" if a.only else "")
    )
    started = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    load = loadavg()
    t0 = time.monotonic()
    figures: list[Figure] = []
    notes: dict[str, str] = {}
    failed: list[str] = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in chosen:
            print(f"== {name}", flush=True)
            out = Path(tmp) / f"{name}.json"
            s0 = time.monotonic()
            proc = subprocess.run(
                [sys.executable, "-m", "bench", "--section", name, "--out", str(out)]
                + (["--quick"] if a.quick else []),
                cwd=ROOT,
                timeout=600,
                check=False,
            )
            if proc.returncode != 0 or not out.exists():
                print(f"!! section {name} failed (exit {proc.returncode})", flush=True)
                failed.append(name)
                continue
            got = read_json(out)
            print_figures(got)
            print(f"   ({time.monotonic() - s0:.0f} s)", flush=True)
            figures += got
            notes_file = ROOT / "bench" / "notes" / f"{name}.md"
            if notes_file.exists():
                notes[name] = notes_file.read_text()
    took = time.monotonic() - t0
    print(f"== done in {took:.0f} s", flush=True)
    if docs is not None:
        docs.mkdir(parents=True, exist_ok=True)
        write_json(docs / "benchmarks.json", figures)
        (docs / "benchmarks.md").write_text(_markdown(figures, command, started, took, load, notes))
        print(f"wrote {docs / 'benchmarks.md'} and {docs / 'benchmarks.json'}")
    if failed:
        print(f"failed sections: {', '.join(failed)}")
        return 1
    print(
        json.dumps({"figures": len(figures), "missed": [f.name for f in figures if f.met is False]})
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
