"""Every provider-corpus entry, replayed over a real socket on 127.0.0.1 and probed by the
real probe code (agent.probes.probe_service): the reported cause must be the entry's
`expect.cause` or one of `expect.also_ok` (an `ok` entry: the probe succeeds), with the
entry's hint when the cause matches. `confidence: low` entries only have to end with a
cause, without crash or hang.

The corpus lives beside the repository (../shared/corpus/provider-failures.yaml); without
it the tests skip.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from pathlib import Path
from typing import Any

import pytest
import yaml

from agent.model import ProbeResult
from agent.probes import probe_service
from tests.servers.replay import (
    PASSWORD,
    REFRESH_TOKEN,
    Entry,
    ReplayTarget,
    account_for,
    run_unreachable,
)

# beside the clone (../shared/corpus), or wherever SYNCWATCH_CORPUS says
CORPUS = Path(
    os.environ.get("SYNCWATCH_CORPUS")
    or Path(__file__).resolve().parents[1].parent / "shared" / "corpus" / "provider-failures.yaml"
)


def _load() -> list[dict[str, Any]]:
    if not CORPUS.is_file():
        return []
    data = yaml.safe_load(CORPUS.read_text(encoding="utf-8"))
    return [e for e in data if isinstance(e, dict) and "id" in e]


ENTRIES = _load()

# Entries the probes cannot get right yet, with why. strict: a fix makes the test fail
# until the entry is taken off this list.
KNOWN_GAPS: dict[str, str] = {}  # entry id -> why the probes cannot get it right yet


def _params() -> list[Any]:
    if not ENTRIES:
        return [pytest.param(None, marks=pytest.mark.skip(reason=f"corpus not found at {CORPUS}"))]
    out = []
    for e in ENTRIES:
        marks = []
        if e["id"] in KNOWN_GAPS:
            marks.append(pytest.mark.xfail(reason=KNOWN_GAPS[e["id"]], strict=True))
        out.append(pytest.param(e, id=e["id"], marks=marks))
    return out


ReplayFactory = Callable[[Entry], AbstractAsyncContextManager[ReplayTarget]]


async def _probe(entry: Entry, target: ReplayTarget) -> dict[str, Any]:
    if target.unreachable:
        return await asyncio.to_thread(run_unreachable, target.service, target.port)
    account = account_for(entry, target)
    result: ProbeResult = await asyncio.wait_for(
        probe_service(account, target.service, resolver=target.resolver, tokens=target.tokens()),
        timeout=target.timeout + 5.0,  # run_probe's own deadline and grace come first
    )
    out = result.to_json()
    for secret in (PASSWORD, REFRESH_TOKEN, *target.token_server.issued):
        assert secret not in repr(out), "a secret leaked into the probe result"
    return out


@pytest.mark.parametrize("entry", _params())
async def test_corpus_entry(entry: Entry | None, replay: ReplayFactory) -> None:
    assert entry is not None
    expect = entry["expect"]
    async with replay(entry) as target:
        result = await _probe(entry, target)
    if "NotImplementedError" in str(result.get("detail")):
        pytest.skip(f"the {target.service.value} probe has not landed yet")
    got, hint = result["cause"], result["hint"]
    where = f"{entry['id']}: {result['detail']!r} -> {got} ({hint})"
    if entry.get("confidence") == "low":
        assert result["ok"] or got, where
        return
    if expect["cause"] == "ok":
        assert result["ok"], f"{where}; expected the probe to recover"
        return
    allowed = [expect["cause"], *(expect.get("also_ok") or [])]
    assert got in allowed, f"{where}; expected one of {allowed}"
    if entry.get("hint") and got == expect["cause"]:
        assert hint == entry["hint"], where


def _synthetic(protocol: str, auth: str, **extra: Any) -> dict[str, Any]:
    return {
        "id": f"S-{protocol}-{auth}",
        "protocol": protocol,
        "auth": auth,
        "stage": "request" if protocol == "caldav" else "login",
        "expect": {"cause": "ok", "also_ok": []},
        **extra,
    }


@pytest.mark.parametrize(
    "entry",
    [_synthetic(p, a) for p in ("imap", "smtp", "caldav") for a in ("password", "xoauth2")],
    ids=lambda e: str(e["id"]),
)
async def test_the_replay_servers_work_when_the_entry_is_not_about_them(
    entry: Entry, replay: ReplayFactory
) -> None:
    # Without this, a passing corpus test could be a replay server that never works.
    async with replay(entry) as target:
        result = await _probe(entry, target)
        if entry["auth"] == "xoauth2":
            assert target.token_server.issued, "the probe never refreshed a token"
    assert result["ok"], result["detail"]


async def test_a_failed_tls_handshake_is_not_blamed_on_the_user_credential(
    replay: ReplayFactory,
) -> None:
    entry = _synthetic("imap", "password", stage="tls", network="tls_handshake")
    async with replay(entry) as target:
        result = await _probe(entry, target)
    assert result["cause"] in ("tls_error", "config_error"), result["detail"]
