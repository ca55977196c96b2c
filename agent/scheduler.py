"""When each account's services are probed, with a global and a per-host concurrency limit.

Due probes wait in one queue per host; a host at its limit does not hold up the others.
The timing arithmetic (phase grid, confirm interval, breaker, Retry-After) is pure and
lives in agent.timing; this loop only calls it. A recheck probes now, outside the queue,
joining a probe in flight only when that one uses the same credentials.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import heapq
import itertools
import logging
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from agent.config.types import Account, CalDavServer, MailServer
from agent.model import ProbeResult, Service
from agent.monitor import Monitor
from agent.timing import next_probe_at, phase

log = logging.getLogger(__name__)

Prober = Callable[[Account, Service], Awaitable[ProbeResult]]


@dataclass(order=True, frozen=True, slots=True)
class Due:
    at: float
    seq: int
    account_id: str = field(compare=False)
    service: Service = field(compare=False)
    host: str = field(compare=False)


@dataclass
class InFlight:
    credential: str
    task: asyncio.Task[ProbeResult]


class SchedulerStats:
    def __init__(self) -> None:
        self.lag_observer: Callable[[float], None] = lambda _lag: None
        self.last_run: float = 0.0


class Scheduler:
    def __init__(
        self,
        monitor: Monitor,
        prober: Prober,
        *,
        clock: Callable[[], float],
        interval: float,
        concurrency: int,
        per_host: int,
        jitter: bool = True,
    ) -> None:
        self.monitor = monitor
        self._prober = prober
        self._clock = clock
        self.interval = interval
        self.concurrency = concurrency
        self.per_host = per_host
        self.jitter = jitter
        self.stats = SchedulerStats()
        self._seq = itertools.count()
        self._heap: list[Due] = []
        self._due: dict[tuple[str, Service], Due] = {}
        self._pending: dict[str, deque[Due]] = {}
        self._eligible: list[tuple[float, int, str]] = []
        self._host_active: dict[str, int] = {}
        self._active = 0
        self._in_flight: dict[tuple[str, Service], InFlight] = {}
        self._wake = asyncio.Event()
        self._stopping = False
        self._idle = asyncio.Event()
        self._idle.set()

    # --- planning -------------------------------------------------------------------
    @property
    def in_flight(self) -> int:
        return len(self._in_flight)

    def _interval_of(self, account: Account) -> float:
        return account.interval or self.interval

    def plan(self, account: Account, *, now_: bool = False) -> None:
        """(Re)compute when each service of the account is next probed; `now_`: at once."""
        for service, server in account.services().items():
            if now_:
                self._push(Due(self._clock(), next(self._seq), account.id, service, _host(server)))
            else:
                self._replan_one(account, service)
        self._wake.set()

    def forget(self, account_id: str) -> None:
        for key in [k for k in self._due if k[0] == account_id]:
            del self._due[key]

    def _push(self, due: Due) -> None:
        self._due[(due.account_id, due.service)] = due
        heapq.heappush(self._heap, due)

    # --- the loop -------------------------------------------------------------------
    async def run(self) -> None:
        while not self._stopping:
            now = self._clock()
            self.stats.last_run = now
            self._release_due(now)
            self._fill()
            timeout = 5.0
            if self._heap:
                timeout = min(timeout, max(0.0, self._heap[0].at - self._clock()))
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=timeout)

    def _release_due(self, now: float) -> None:
        while self._heap and self._heap[0].at <= now:
            due = heapq.heappop(self._heap)
            if self._due.get((due.account_id, due.service)) is not due:
                continue  # superseded or forgotten
            del self._due[(due.account_id, due.service)]
            queue = self._pending.setdefault(due.host, deque())
            queue.append(due)
            if len(queue) == 1 and self._host_active.get(due.host, 0) < self.per_host:
                heapq.heappush(self._eligible, (due.at, due.seq, due.host))

    def _fill(self) -> None:
        while self._active < self.concurrency and self._eligible:
            _, _, host = heapq.heappop(self._eligible)
            queue = self._pending.get(host)
            if not queue or self._host_active.get(host, 0) >= self.per_host:
                continue
            due = queue.popleft()
            if not queue:
                del self._pending[host]
            self._start(due)
            if queue and self._host_active.get(host, 0) < self.per_host:
                head = queue[0]
                heapq.heappush(self._eligible, (head.at, head.seq, host))

    def _start(self, due: Due) -> None:
        account = self.monitor.accounts.get(due.account_id)
        key = (due.account_id, due.service)
        if account is None or due.service not in account.services() or key in self._in_flight:
            return
        now = self._clock()
        blocked = self.monitor.breaker_until(account, due.service, now)
        if blocked is not None and blocked > now:
            self._push(Due(blocked, next(self._seq), due.account_id, due.service, due.host))
            return
        self.stats.lag_observer(max(0.0, now - due.at))
        self._active += 1
        self._host_active[due.host] = self._host_active.get(due.host, 0) + 1
        self._idle.clear()
        task = asyncio.ensure_future(self._probe(account, due.service))
        self._in_flight[key] = InFlight(account.credential_fingerprint(due.service), task)
        task.add_done_callback(lambda t: self._finished(due, t))

    async def _probe(self, account: Account, service: Service) -> ProbeResult:
        result = await self._prober(account, service)
        self.monitor.apply(account, result)
        return result

    def _finished(self, due: Due, task: asyncio.Task[ProbeResult]) -> None:
        key = (due.account_id, due.service)
        entry = self._in_flight.get(key)
        if entry is not None and entry.task is task:
            del self._in_flight[key]
        self._active -= 1
        active = self._host_active.get(due.host, 1) - 1
        if active:
            self._host_active[due.host] = active
        else:
            self._host_active.pop(due.host, None)
        queue = self._pending.get(due.host)
        if queue and active == self.per_host - 1:
            heapq.heappush(self._eligible, (queue[0].at, queue[0].seq, due.host))
        if not task.cancelled() and task.exception() is not None:
            log.error(
                "probe crashed account=%s service=%s: %r",
                due.account_id,
                due.service.value,
                task.exception(),
            )
        account = self.monitor.accounts.get(due.account_id)
        if account is not None and key not in self._due and not self._stopping:
            self._replan_one(account, due.service)
        if self._active == 0 and not self._in_flight:
            self._idle.set()
        self._wake.set()

    def _replan_one(self, account: Account, service: Service) -> None:
        server = account.services().get(service)
        if server is None:
            return
        now = self._clock()
        interval = self._interval_of(account)
        ph = phase(account.id, service, interval) if self.jitter else 0.0
        at = next_probe_at(
            self.monitor.healths(account.id).get(service),
            interval=interval,
            now=now,
            policy=self.monitor.policy,
            phase=ph,
        )
        blocked = self.monitor.breaker_until(account, service, now)
        if blocked is not None:
            at = max(at, blocked)
        self._push(Due(at, next(self._seq), account.id, service, _host(server)))

    # --- recheck ----------------------------------------------------------------------
    async def probe_now(self, account: Account) -> list[ProbeResult]:
        """Probe every service of the account now, outside the queue. A probe already in
        flight is joined only if it uses the same credentials as `account`."""
        waits: list[asyncio.Task[ProbeResult]] = []
        for service in account.services():
            key = (account.id, service)
            credential = account.credential_fingerprint(service)
            running = self._in_flight.get(key)
            if running is not None and running.credential == credential:
                waits.append(running.task)
                continue
            task = asyncio.ensure_future(self._probe(account, service))
            self._in_flight[key] = InFlight(credential, task)
            task.add_done_callback(functools.partial(self._recheck_done, key))
            waits.append(task)
        results = await asyncio.gather(*(asyncio.shield(w) for w in waits))
        return list(results)

    def _recheck_done(self, key: tuple[str, Service], task: asyncio.Task[ProbeResult]) -> None:
        entry = self._in_flight.get(key)
        if entry is not None and entry.task is task:
            del self._in_flight[key]
        account = self.monitor.accounts.get(key[0])
        if account is not None and not self._stopping:
            self._due.pop(key, None)
            self._replan_one(account, key[1])
        self._wake.set()

    # --- shutdown -----------------------------------------------------------------------
    async def stop(self, grace: float = 30.0) -> None:
        """Stop starting probes; let the ones in flight finish (up to `timeout`)."""
        self._stopping = True
        self._wake.set()
        if self._in_flight:
            tasks = [f.task for f in self._in_flight.values()]
            _, pending = await asyncio.wait(tasks, timeout=grace)
            for t in pending:
                t.cancel()


def _host(server: MailServer | CalDavServer) -> str:
    return server.host.lower()
