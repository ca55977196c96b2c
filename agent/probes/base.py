"""The one probe contract, and what every probe shares: deadline, timing, classification.

A probe is `async def probe(account, ctx) -> None`: it returns when the service works and
raises ProbeError(Evidence) when it does not. It records its steps with `ctx.step(name)`,
its protocol lines with `ctx.log(...)`, and registers `ctx.on_abort(transport.abort)` so
the deadline can tear the connection down even if the client library does not cooperate.
`run_probe` wraps the call from outside: deadline, hard backstop, timing, classification.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from typing import Protocol

from agent.config.types import Account
from agent.model import Evidence, Failure, ProbeResult, Service, Step
from agent.net import Resolver, SystemResolver
from agent.secret import Redactor


class ProbeError(Exception):
    """A probe failed; `evidence` says what the server or the network did."""

    def __init__(self, evidence: Evidence) -> None:
        super().__init__(
            f"{evidence.protocol} {evidence.stage}: {evidence.text or evidence.network}"
        )
        self.evidence = evidence


class TokenSource(Protocol):
    """OAuth2 access tokens for an account (see agent.probes.oauth)."""

    async def access_token(
        self, account: Account, service: Service, *, refresh: bool = False
    ) -> str:
        """A valid access token; `refresh=True` forces a new one. Raises ProbeError."""
        ...


@dataclass
class ProbeContext:
    timeout: float
    resolver: Resolver = field(default_factory=SystemResolver)
    tokens: TokenSource | None = None
    redact: Redactor = field(default_factory=Redactor)
    debug: bool = False
    max_line: int = 64 * 1024  # longest protocol line or header a probe accepts
    max_body: int = 2 * 1024 * 1024  # largest HTTP body / literal a probe reads
    stage: str = "connect"  # the step now running (what a timeout interrupted)
    steps: list[Step] = field(default_factory=list)
    transcript: list[str] = field(default_factory=list)
    _aborts: list[Callable[[], None]] = field(default_factory=list)

    @contextlib.contextmanager
    def step(self, name: str) -> Iterator[None]:
        self.stage = name
        t0 = time.perf_counter()
        try:
            yield
        except BaseException:
            self.steps.append(Step(name, time.perf_counter() - t0, ok=False))
            raise
        self.steps.append(Step(name, time.perf_counter() - t0))

    def log(self, direction: str, line: str) -> None:
        """Record a protocol line ('C' client, 'S' server, '*' note); only kept with debug."""
        if self.debug and len(self.transcript) < 500:
            self.transcript.append(f"{direction}: {self.redact(line[:2000])}")

    def on_abort(self, fn: Callable[[], None]) -> None:
        self._aborts.append(fn)

    def abort_all(self) -> None:
        for fn in self._aborts:
            with contextlib.suppress(Exception):
                fn()
        self._aborts.clear()


Probe = Callable[[Account, ProbeContext], Awaitable[None]]
Classifier = Callable[[Evidence], Failure]

# A hung library call gets this long after the deadline to unwind; then it is abandoned.
GRACE_AFTER_ABORT = 1.0


async def run_probe(
    probe: Probe,
    service: Service,
    account: Account,
    ctx: ProbeContext,
    classify: Classifier,
) -> ProbeResult:
    """Run one probe with a hard deadline; always returns a ProbeResult, never raises."""
    for s in account.secrets():
        ctx.redact.add(s)
    started = time.time()
    t0 = time.perf_counter()
    failure: Failure | None = None
    task = asyncio.ensure_future(probe(account, ctx))
    done, _ = await asyncio.wait({task}, timeout=ctx.timeout)
    if not done:
        ctx.log("*", f"deadline of {ctx.timeout:g}s reached; aborting")
        ctx.abort_all()
        task.cancel()
        # Do not trust the library to unwind: wait a little, then abandon the task.
        await asyncio.wait({task}, timeout=GRACE_AFTER_ABORT)
        if not task.done():
            task.add_done_callback(_swallow)
        failure = classify(
            Evidence(protocol=service.value, stage=_last_stage(ctx), network="timeout")
        )
    else:
        exc = task.exception()
        if isinstance(exc, ProbeError):
            failure = classify(_redacted(exc.evidence, ctx.redact))
        elif exc is not None:
            failure = classify(
                Evidence(
                    protocol=service.value,
                    stage=_last_stage(ctx),
                    exception=ctx.redact(f"{type(exc).__name__}: {exc}")[:500],
                )
            )
    ctx.abort_all()
    if failure is not None:
        failure = Failure(
            cause=failure.cause,
            hint=failure.hint,
            definitive=failure.definitive,
            detail=ctx.redact(failure.detail)[:1000],
            retry_after=failure.retry_after,
        )
    return ProbeResult(
        account_id=account.id,
        service=service,
        started_at=started,
        duration_seconds=time.perf_counter() - t0,
        failure=failure,
        steps=tuple(ctx.steps),
        transcript=tuple(ctx.transcript),
        credential=account.credential_fingerprint(service),
    )


def _swallow(task: asyncio.Future[None]) -> None:
    if not task.cancelled():
        task.exception()


def _last_stage(ctx: ProbeContext) -> str:
    return ctx.stage


def _redacted(ev: Evidence, redact: Redactor) -> Evidence:
    return Evidence(
        protocol=ev.protocol,
        stage=ev.stage,
        network=ev.network,
        status=ev.status,
        code=ev.code,
        text=redact(ev.text),
        untagged=tuple(redact(u) for u in ev.untagged),
        headers={k: redact(v) for k, v in ev.headers.items()},
        exception=redact(ev.exception) if ev.exception else None,
    )
