"""`syncwatch demo` as a user runs it: a subprocess, real local servers, the real daemon."""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from agent import wording
from agent.demo.scenario import Observed, checks
from agent.model import Cause
from tests.conftest import free_port

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parent.parent


# ------------------------------------------------------------------ helpers


def descendants(pid: int) -> dict[int, str]:
    """Every live process below `pid`: pid -> command line."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(ppid, []).append(int(entry.name))
    out: dict[int, str] = {}
    todo = [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            out[child] = cmdline(child)
            todo.append(child)
    return out


def cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode().strip()
    except OSError:
        return ""


def alive(procs: dict[int, str]) -> dict[int, str]:
    """Those still running with the same command line (a pid may be reused)."""
    out = {}
    for pid, cmd in procs.items():
        now = cmdline(pid)
        stat = Path(f"/proc/{pid}/stat")
        zombie = False
        try:
            zombie = stat.read_text().rsplit(")", 1)[1].split()[0] == "Z"
        except OSError:
            continue
        if now == cmd and not zombie:
            out[pid] = cmd
    return out


class Demo:
    """`syncwatch demo ...` as a subprocess whose output is collected line by line."""

    def __init__(self, *args: str, stdin: bool = False) -> None:
        self.port = free_port()
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "agent", "demo", "--port", str(self.port), *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            cwd=ROOT,
            env=env,
            stdin=subprocess.PIPE if stdin else subprocess.DEVNULL,
        )
        self.lines: list[str] = []
        self.eof = False
        self._cond = threading.Condition()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for raw in self.proc.stdout:
            with self._cond:
                self.lines.append(raw.decode(errors="replace").rstrip("\n"))
                self._cond.notify_all()
        with self._cond:
            self.eof = True
            self._cond.notify_all()

    @property
    def text(self) -> str:
        with self._cond:
            return "\n".join(self.lines)

    def wait_line(self, pattern: str, timeout: float = 60) -> re.Match[str]:
        rx = re.compile(pattern)
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                for line in self.lines:
                    if m := rx.search(line):
                        return m
                left = deadline - time.monotonic()
                if left <= 0 or self.eof:
                    raise AssertionError(f"no line matching {pattern!r}:\n" + "\n".join(self.lines))
                self._cond.wait(min(left, 0.5))

    def send(self, line: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(line.encode() + b"\n")
        self.proc.stdin.flush()

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def get(
        self, path: str, headers: dict[str, str] | None = None
    ) -> tuple[int, dict[str, str], bytes]:
        req = urllib.request.Request(  # noqa: S310 - http://127.0.0.1 only
            self.url(path), headers=headers or {}
        )
        try:
            with urllib.request.urlopen(req, timeout=10) as r:  # noqa: S310
                return r.status, dict(r.headers), r.read()
        except urllib.error.HTTPError as e:
            return e.code, dict(e.headers), e.read()

    def wait(self, timeout: float) -> int:
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            raise AssertionError("the demo did not exit:\n" + self.text) from None

    def kill(self) -> None:
        """Stop it as a user would (SIGTERM: it cleans up); SIGKILL the tree if that fails."""
        if self.proc.poll() is None:
            self.proc.terminate()
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(30)
        if self.proc.poll() is None:
            for pid in descendants(self.proc.pid):
                with contextlib.suppress(OSError):
                    os.kill(pid, signal.SIGKILL)
            self.proc.kill()
            self.proc.wait(10)


@pytest.fixture
def demo_factory() -> Iterator[list[Demo]]:
    demos: list[Demo] = []
    yield demos
    for d in demos:
        d.kill()


# ------------------------------------------------------------------ tests


def test_scripted_demo_shows_the_lifecycle_and_exits_0_leaving_no_process(
    demo_factory: list[Demo],
) -> None:
    demo = Demo("--speed", "10")
    demo_factory.append(demo)
    demo.wait_line(r"ends after")
    folder = Path(demo.wait_line(r"folder (\S+)").group(1))
    for path in ("/portal/?owner=u-alice", "/demo/emails", "/demo/status/acc-alice"):
        assert demo.url(path) in demo.text
    assert re.search(r"metrics: +http://127\.0\.0\.1:\d+/metrics", demo.text)
    procs = descendants(demo.proc.pid)
    cmds = " ".join(procs.values())
    assert "dovecot" in cmds and "radicale" in cmds and " run --config" in cmds, procs

    # the portal stand-in forwards the banner with the token, ETag and 304 included
    demo.wait_line(r"acc-dave .*banner \(error\)")
    status, headers, body = demo.get("/portal/api/banner?owner=u-dave")
    assert status == 200, body
    doc = json.loads(body)
    assert doc["show"] is True and doc["accounts"][0]["cause"] == "account_suspended"
    assert doc["accounts"][0]["reconnect_url"] == demo.url("/portal/reconnect?account=acc-dave")
    status, _, body = demo.get(
        "/portal/api/banner?owner=u-dave", {"If-None-Match": headers["ETag"]}
    )
    assert status == 304 and body == b""
    assert demo.get("/portal/api/banner?owner=u-nobody")[0] == 404
    status, _, page = demo.get("/portal/?owner=u-alice")
    assert status == 200 and b"syncwatch-banner.js" in page

    demo.wait_line(r"email to alice@example\.com")
    status, _, body = demo.get("/demo/emails.json")
    assert status == 200
    assert any(m["to"] == "alice@example.com" for m in json.loads(body))
    status, _, page = demo.get("/demo/emails")
    assert status == 200 and b"alice@example.com" in page

    rc = demo.wait(90)
    out = demo.text
    assert rc == 0, out
    assert re.search(r"STEP break alice", out)
    assert re.search(r"acc-alice .*-> disconnected .*auth_failed.*banner \(error\)", out), out
    assert re.search(r"email to alice@example\.com: 'Your .* needs attention'", out), out
    assert re.search(r"recheck acc-alice: ok \| no banner", out), out
    assert "the lifecycle happened as expected" in out
    assert "FAILED" not in out
    assert re.search(r"acc-bob .*->", out) is None, "bob never changes state"
    token = folder / "api-token"
    assert not folder.exists() and not token.exists()
    assert alive(procs) == {}


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_a_signal_in_the_middle_stops_everything(
    demo_factory: list[Demo], sig: signal.Signals
) -> None:
    demo = Demo("--speed", "10", "--duration", "120")
    demo_factory.append(demo)
    demo.wait_line(r"ends after")
    folder = Path(demo.wait_line(r"folder (\S+)").group(1))
    demo.wait_line(r"acc-carol .*-> disconnected")
    procs = descendants(demo.proc.pid)
    assert len(procs) >= 3, procs
    demo.proc.send_signal(sig)
    rc = demo.wait(40)
    assert rc == 128 + sig, demo.text
    assert f"{sig.name}: stopping the demo" in demo.text
    assert "demo stopped" in demo.text
    assert alive(procs) == {}
    assert not folder.exists()


def test_interactive_break_fix_recheck_and_quit(demo_factory: list[Demo]) -> None:
    demo = Demo("--interactive", "--speed", "10", stdin=True)
    demo_factory.append(demo)
    demo.wait_line(r"commands: break NAME")
    procs = descendants(demo.proc.pid)
    demo.send("break bob")
    demo.wait_line(r"acc-bob .*-> disconnected .*auth_failed")
    demo.send("fix bob")
    demo.wait_line(r"fix bob: done")
    demo.send("recheck bob")
    demo.wait_line(r"recheck acc-bob: ok \| no banner")
    demo.send("break nobody")
    demo.wait_line(r"no demo account 'nobody'")
    demo.send("quit")
    assert demo.wait(40) == 0, demo.text
    assert alive(procs) == {}


# ------------------------------------------------------------------ pure parts


def test_the_lifecycle_checks_fail_when_nothing_was_seen() -> None:
    results = checks(Observed.empty())
    assert [c.ok for c in results].count(True) == 1  # only "bob ok all along" holds vacuously
    seen = Observed(
        banners={
            "acc-alice": {"auth_failed"},
            "acc-carol": {"permission_denied"},
            "acc-dave": {"account_suspended"},
            "acc-erin": {"server_unavailable"},
        },
        states={"acc-bob": {"ok"}},
        emailed={"alice@example.com"},
        fixed_ok=True,
    )
    assert all(c.ok for c in checks(seen))
    seen.states["acc-bob"].add("degraded")
    assert not all(c.ok for c in checks(seen))


def test_the_snippet_words_every_cause_as_the_agent_does() -> None:
    js = (ROOT / "agent" / "portal" / "syncwatch-banner.js").read_text()
    table = dict(re.findall(r'^\s+(\w+): "(.*)",?$', js, re.M))
    assert {c.value: wording.CAUSE_TEXT[c] for c in Cause} == {
        k: v for k, v in table.items() if k in {c.value for c in Cause}
    }
