"""`syncwatch demo`: the whole job on local servers, with a scripted timeline.

    syncwatch demo                      # the scripted story, ~2 minutes, exit 0 when it held
    syncwatch demo --speed 10           # the same story ten times faster
    syncwatch demo --interactive        # break and fix accounts by hand at a prompt
    syncwatch demo --port 8480          # the demo's web server (portal page, emails)

Exit codes: 0 the lifecycle happened as expected (or --interactive ended by `quit`, EOF,
Ctrl-C); 1 a check failed or the agent died; 2 usage error; 130/143 the scripted run was
stopped by SIGINT/SIGTERM before its end. Every process the demo started (the agent,
Dovecot, Radicale) is stopped before it exits.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import json
import logging
import shutil
import signal
import sys
import tempfile
import threading
import time
from pathlib import Path

import click
from aiohttp import web

from agent.demo.env import DemoEnv, DemoError, free_port
from agent.demo.scenario import (
    ACCOUNTS,
    TIMELINE,
    TIMELINE_END,
    Action,
    DemoAccount,
    account,
    checks,
    default_duration,
)
from agent.demo.watch import Watcher, describe
from agent.demo.web import make_web_app

EXIT_OK, EXIT_FAILED = 0, 1


def say(line: str) -> None:
    print(line, flush=True)


@click.command("demo")
@click.option(
    "--port",
    type=click.IntRange(0, 65535),
    default=8480,
    show_default=True,
    help="Port of the demo's web server on 127.0.0.1 (0: any free port).",
)
@click.option(
    "--interactive", is_flag=True, help="No timeline: break, fix and recheck accounts at a prompt."
)
@click.option(
    "--speed",
    type=click.FloatRange(0.1, 20),
    default=1.0,
    show_default=True,
    help="Run the timeline and the agent's intervals this many times faster.",
)
@click.option(
    "--duration",
    type=click.FloatRange(min=1),
    default=None,
    help="Exit after this many seconds [default: the timeline's length + 10s, "
    "divided by --speed; with --interactive: until quit].",
)
@click.option("--keep", is_flag=True, help="Keep the temp folder (config, logs, state).")
def demo_command(
    port: int, interactive: bool, speed: float, duration: float | None, keep: bool
) -> None:
    """Run the agent against local Dovecot, Radicale and an SMTP sink and watch accounts
    break, get a banner and an email, and recover."""
    if problem := _missing():
        click.echo(f"syncwatch demo: {problem}", err=True)
        raise SystemExit(2)
    if duration is None and not interactive:
        duration = default_duration(speed)
    # the SMTP sink (aiosmtpd) logs every SMTP command at INFO: too chatty for a demo
    logging.getLogger("mail.log").setLevel(logging.WARNING)
    raise SystemExit(asyncio.run(_main(port or free_port(), interactive, speed, duration, keep)))


def _missing() -> str | None:
    """What the demo needs and this machine lacks (scripts/setup installs all of it)."""
    for module in ("aiosmtpd", "radicale"):
        if importlib.util.find_spec(module) is None:
            return f"needs the Python package {module}: pip install -e '.[test]' (or scripts/setup)"
    dirs = ("/usr/sbin", "/usr/bin", "/usr/local/sbin")
    if shutil.which("dovecot") is None and not any(Path(d, "dovecot").exists() for d in dirs):
        return (
            "needs Dovecot: apt-get install dovecot-imapd dovecot-submissiond "
            "dovecot-auth-lua (or scripts/setup)"
        )
    return None


class _Demo:
    def __init__(self, env: DemoEnv, port: int, interactive: bool, duration: float | None) -> None:
        self.env = env
        self.port = port
        self.interactive = interactive
        self.duration = duration
        self.done = asyncio.Event()
        self.signal: int | None = None
        self.t0 = time.monotonic()
        self.watcher = Watcher(env, self.t0, say)

    def on_signal(self, sig: int) -> None:
        if self.signal is None:
            self.signal = sig
            say(f"\n{signal.Signals(sig).name}: stopping the demo ...")
        self.done.set()

    # ---------------------------------------------------------------- actions

    async def act(self, action: Action, name: str) -> None:
        if action is Action.BREAK:
            await self.env.break_account(name)
        elif action is Action.FIX:
            await self.env.fix_account(name)
        else:
            a = self.account(name)
            code, headers, body = await self.env.daemon.post(f"/api/v1/accounts/{a.id}/recheck")
            if code == 200:
                doc = json.loads(body)
                self.watcher.expect_fixed = a.id
                self.watcher.record(a.id, doc)
                say(f"{self.watcher.stamp()} recheck {a.id}: {describe(doc)}")
            elif code == 429:
                say(
                    f"{self.watcher.stamp()} recheck {a.id}: too soon, retry after "
                    f"{headers.get('Retry-After', '?')}s"
                )
            else:
                say(f"{self.watcher.stamp()} recheck {a.id}: HTTP {code}")

    def account(self, name: str) -> DemoAccount:
        a = account(name)
        if a is None:
            raise DemoError(
                f"no demo account {name!r}: one of {', '.join(x.name for x in ACCOUNTS)}"
            )
        return a

    # ---------------------------------------------------------------- modes

    async def timeline(self) -> None:
        for step in TIMELINE:
            await asyncio.sleep(max(0.0, self.t0 + step.at / self.env.speed - time.monotonic()))
            say(f"{self.watcher.stamp()} STEP {step.action.value} {step.account}: {step.says}")
            await self.act(step.action, step.account)
        await asyncio.sleep(max(0.0, self.t0 + TIMELINE_END / self.env.speed - time.monotonic()))
        say(f"{self.watcher.stamp()} timeline done; running until the end of --duration")

    async def prompt(self) -> None:
        loop = asyncio.get_running_loop()
        lines: asyncio.Queue[str | None] = asyncio.Queue()

        def read() -> None:  # a thread: stdin may be a terminal or a pipe
            for line in sys.stdin:
                loop.call_soon_threadsafe(lines.put_nowait, line)
            loop.call_soon_threadsafe(lines.put_nowait, None)

        threading.Thread(target=read, daemon=True, name="demo-stdin").start()
        say(
            "commands: break NAME | fix NAME | recheck NAME | status | quit   "
            f"(names: {', '.join(a.name for a in ACCOUNTS)})"
        )
        while (line := await lines.get()) is not None:
            words = line.split()
            if not words:
                continue
            cmd, args = words[0].lower(), words[1:]
            try:
                if cmd in ("quit", "exit", "q"):
                    break
                if cmd == "status":
                    for a in ACCOUNTS:
                        doc = self.watcher.docs.get(a.id)
                        say(f"  {a.id:10} {describe(doc) if doc else '(not seen yet)'}")
                elif cmd in ("break", "fix", "recheck") and len(args) == 1:
                    await self.act(Action(cmd), args[0])
                    if cmd != "recheck":
                        say(f"{self.watcher.stamp()} {cmd} {args[0]}: done")
                else:
                    say("? break NAME | fix NAME | recheck NAME | status | quit")
            except DemoError as e:
                say(str(e))
        self.done.set()

    async def run(self) -> int:
        tasks = [asyncio.create_task(self.watcher.run())]
        tasks.append(asyncio.create_task(self.prompt() if self.interactive else self.timeline()))
        if self.duration is not None:
            tasks.append(asyncio.create_task(self._after(self.duration)))
        tasks.append(asyncio.create_task(self._daemon_alive()))
        try:
            await self.done.wait()
        finally:
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
        if self.env.daemon_exited() is not None:
            say(f"the agent exited unexpectedly; see {self.env.daemon_log}")
            return EXIT_FAILED
        if self.interactive:
            return EXIT_OK
        if self.signal is not None:
            return 128 + self.signal
        results = checks(self.watcher.seen)
        say("\nchecks:")
        for c in results:
            say(f"  [{'ok' if c.ok else 'FAILED'}] {c.what}")
        ok = all(c.ok for c in results)
        say(
            "the lifecycle happened as expected"
            if ok
            else f"some checks failed; the agent's log: {self.env.daemon_log}"
        )
        return EXIT_OK if ok else EXIT_FAILED

    async def _after(self, seconds: float) -> None:
        await asyncio.sleep(seconds)
        await self.watcher.poll_once()
        say(f"{self.watcher.stamp()} --duration reached")
        self.done.set()

    async def _daemon_alive(self) -> None:
        while self.env.daemon_exited() is None:  # noqa: ASYNC110 - polling a child process
            await asyncio.sleep(0.5)
        self.done.set()

    def urls(self) -> None:
        web_base = f"http://127.0.0.1:{self.port}"
        d = self.env.daemon.base
        t = self.env.timing
        say(f"syncwatch demo: speed {self.env.speed:g}x, folder {self.env.dir}")
        say(f"  agent config:       {self.env.config_path}  (log: {self.env.daemon_log})")
        say(
            f"  agent settings: interval {t.interval:g}s, confirm_interval "
            f"{t.confirm_interval:g}s, transient_grace {t.transient_grace:g}s, "
            f"notify.coalesce {t.coalesce:g}s"
        )
        say(f"  demo portal page:   {web_base}/portal/?owner=u-alice")
        say(f"  emails caught:      {web_base}/demo/emails  (JSON: {web_base}/demo/emails.json)")
        say(f"  all account status: {web_base}/demo/status")
        for a in ACCOUNTS:
            say(f"  status {a.id:10}  {web_base}/demo/status/{a.id}   ({a.story})")
        say(f"  metrics:            {d}/metrics")
        say(
            f'  banner API:         curl -H "Authorization: Bearer $(cat '
            f'{self.env.token_file})" {d}/api/v1/users/u-alice/banner'
        )
        say(f"  agent log:          {self.env.daemon_log}")
        if self.duration is not None:
            say(f"  ends after {self.duration:g}s; Ctrl-C stops it earlier")
        else:
            say("  Ctrl-C or `quit` stops it")


async def _main(
    port: int, interactive: bool, speed: float, duration: float | None, keep: bool
) -> int:
    loop = asyncio.get_running_loop()
    dir = Path(tempfile.mkdtemp(prefix="syncwatch-demo-"))
    env = DemoEnv(dir, speed=speed, portal_base=f"http://127.0.0.1:{port}")
    demo = _Demo(env, port, interactive, duration)
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, demo.on_signal, sig)
    runner = web.AppRunner(make_web_app(env), access_log=None)
    try:
        await runner.setup()
        try:
            await web.TCPSite(runner, "127.0.0.1", port).start()
        except OSError as e:
            say(f"cannot listen on 127.0.0.1:{port}: {e.strerror}; try --port 0")
            return 2
        say(
            "starting Dovecot (IMAP, submission), Radicale (CalDAV), an SMTP sink and "
            "the agent (syncwatch run) ..."
        )
        start = asyncio.create_task(env.start())
        stopped = asyncio.create_task(demo.done.wait())
        await asyncio.wait({start, stopped}, return_when=asyncio.FIRST_COMPLETED)
        if not start.done():  # a signal during start-up: let it finish, then clean up
            with contextlib.suppress(Exception):
                await start
            return 128 + (demo.signal or 0)
        stopped.cancel()
        start.result()
        demo.t0 = demo.watcher.t0 = time.monotonic()
        demo.urls()
        if demo.done.is_set():
            return 128 + (demo.signal or 0)
        return await demo.run()
    except DemoError as e:
        say(f"demo failed: {e}")
        return EXIT_FAILED
    finally:
        await runner.cleanup()
        await env.stop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
        if keep:
            say(f"kept {dir}")
        else:
            shutil.rmtree(dir, ignore_errors=True)
        say("demo stopped: the agent, Dovecot, Radicale and the SMTP sink are down")
