"""Polls the daemon's status API and the SMTP sink; prints every change as it happens and
records what it saw (scenario.Observed) for the final checks."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from typing import Any

from agent.demo.env import DemoEnv
from agent.demo.scenario import ACCOUNTS, Observed


def describe(doc: dict[str, Any]) -> str:
    """One line for an account status document."""
    state = str(doc.get("state"))
    failing = [s for s in doc.get("services", []) if s.get("state") != "ok"]
    parts = [state]
    if failing:
        parts.append(", ".join(f"{s['service']} {s['cause']}" for s in failing))
    banner = doc.get("banner")
    if banner:
        parts.append(f"banner ({banner['severity']}): {banner['title']!r}")
    elif state == "degraded":
        parts.append("no banner yet (not confirmed)")
    else:
        parts.append("no banner")
    return " | ".join(parts)


class Watcher:
    def __init__(self, env: DemoEnv, t0: float, say: Callable[[str], None]) -> None:
        self.env = env
        self.t0 = t0
        self.say = say
        self.seen = Observed.empty()
        self.last: dict[str, tuple[Any, ...]] = {}
        self.docs: dict[str, dict[str, Any]] = {}
        self.emails = 0
        self.expect_fixed: str | None = None  # account id that must be seen ok again

    def stamp(self) -> str:
        return f"[+{time.monotonic() - self.t0:6.1f}s]"

    def record(self, account_id: str, doc: dict[str, Any]) -> None:
        self.docs[account_id] = doc
        state = str(doc.get("state"))
        banner = doc.get("banner")
        self.seen.states.setdefault(account_id, set()).add(state)
        if banner:
            self.seen.banners.setdefault(account_id, set()).add(str(banner["cause"]))
        if self.expect_fixed == account_id and state == "ok" and not banner:
            self.seen.fixed_ok = True
        key = (
            state,
            tuple((s["service"], s["state"], s["cause"]) for s in doc["services"]),
            banner and (banner["cause"], banner["severity"]),
        )
        if self.last.get(account_id) != key:
            before = self.last.get(account_id)
            self.last[account_id] = key
            arrow = "" if before is None or before[0] == state else f"{before[0]} -> "
            self.say(f"{self.stamp()} {account_id:10} {arrow}{describe(doc)}")

    async def poll_once(self) -> None:
        for a in ACCOUNTS:
            code, _, body = await self.env.daemon.get(f"/api/v1/accounts/{a.id}/status")
            if code == 200:
                self.record(a.id, json.loads(body))
        with self.env.sink.lock:
            new = self.env.sink.messages[self.emails :]
            self.emails += len(new)
        for m in new:
            to = str(m["To"] or "")
            self.seen.emailed.update(x.strip() for x in to.split(","))
            self.say(f"{self.stamp()} email to {to}: {m['Subject']!r}")

    async def run(self) -> None:
        while True:
            await self.poll_once()
            await asyncio.sleep(self.env.timing.poll)
