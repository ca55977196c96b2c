"""Probes: one module per protocol, all matching the contract in `base`. The table below
maps each service to its probe; `probe_account` runs an account's services together."""

from __future__ import annotations

import asyncio

from agent.classify import classify
from agent.config.types import Account
from agent.model import ProbeResult, Service
from agent.net import Resolver, SystemResolver
from agent.probes import caldav, imap, smtp
from agent.probes.base import Probe, ProbeContext, TokenSource, run_probe

PROBES: dict[Service, Probe] = {
    Service.IMAP: imap.probe,
    Service.SMTP: smtp.probe,
    Service.CALDAV: caldav.probe,
}


async def probe_service(
    account: Account,
    service: Service,
    *,
    resolver: Resolver | None = None,
    tokens: TokenSource | None = None,
    debug: bool = False,
) -> ProbeResult:
    server = account.services()[service]
    ctx = ProbeContext(
        timeout=server.timeout,
        resolver=resolver or SystemResolver(),
        tokens=tokens,
        debug=debug,
    )
    return await run_probe(PROBES[service], service, account, ctx, classify)


async def probe_account(
    account: Account,
    services: list[Service] | None = None,
    *,
    resolver: Resolver | None = None,
    tokens: TokenSource | None = None,
    debug: bool = False,
) -> list[ProbeResult]:
    """Probe the given (default: all) services of one account concurrently."""
    wanted = services if services is not None else list(account.services())
    return list(
        await asyncio.gather(
            *(
                probe_service(account, s, resolver=resolver, tokens=tokens, debug=debug)
                for s in wanted
            )
        )
    )
