"""imap probe (placeholder until its owner fills it in)."""

from agent.config.types import Account
from agent.probes.base import ProbeContext


async def probe(account: Account, ctx: ProbeContext) -> None:
    raise NotImplementedError("imap probe")
