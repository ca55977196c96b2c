"""Shared helpers: memory and CPU readings, percentiles, ports, synthetic accounts."""

from __future__ import annotations

import contextlib
import os
import socket
import tempfile
from collections.abc import Sequence
from pathlib import Path

from agent.config.types import (
    Account,
    Config,
    MailServer,
    MetricsSettings,
    Owner,
    ScheduleSettings,
    Security,
    StoreSettings,
    TlsSettings,
)
from agent.scheduler import Prober
from agent.secret import Secret

_TICK = os.sysconf("SC_CLK_TCK")
_PAGE = os.sysconf("SC_PAGE_SIZE")


def rss_bytes(pid: int | None = None) -> int:
    """Resident set size of a process (default: this one), in bytes."""
    with open(f"/proc/{pid or 'self'}/statm") as f:
        return int(f.read().split()[1]) * _PAGE


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of another process (and its waited-for children)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    # fields[0] is the state (3rd field of stat): utime is the 14th field overall
    utime, stime, cutime, cstime = (int(x) for x in fields[11:15])
    return (utime + stime + cutime + cstime) / _TICK


def tree_cpu_seconds(root: int) -> float:
    """CPU seconds of a process and all its live descendants (e.g. Dovecot's workers)."""
    total = 0.0
    for pid in _descendants(root) | {root}:
        with contextlib.suppress(FileNotFoundError, ProcessLookupError):
            total += cpu_seconds(pid)
    return total


def _descendants(root: int) -> set[int]:
    children: dict[int, list[int]] = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat") as f:
                ppid = int(f.read().rsplit(")", 1)[1].split()[1])
        except (FileNotFoundError, ProcessLookupError, ValueError):
            continue
        children.setdefault(ppid, []).append(int(name))
    out: set[int] = set()
    todo = [root]
    while todo:
        for c in children.get(todo.pop(), []):
            if c not in out:
                out.add(c)
                todo.append(c)
    return out


def percentile(values: Sequence[float], p: float) -> float:
    """The p-th percentile (0..100), nearest-rank; nan for no values."""
    if not values:
        return float("nan")
    s = sorted(values)
    k = max(0, min(len(s) - 1, round(p / 100 * len(s) + 0.5) - 1))
    return s[k]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def workdir(name: str) -> Path:
    """A fresh folder under /tmp that Dovecot's unprivileged processes can reach."""
    d = Path(tempfile.mkdtemp(prefix=f"syncwatch-bench-{name}-"))
    d.chmod(0o755)
    return d


def loadavg() -> str:
    with open("/proc/loadavg") as f:
        return " ".join(f.read().split()[:3])


def synthetic_accounts(
    n: int,
    *,
    hosts: int = 20,
    host: str | None = None,
    port: int = 993,
    smtp: bool = True,
    ca_file: Path | None = None,
    user_prefix: str = "user",
    password: str | None = None,
    accounts_per_owner: int = 2,
) -> list[Account]:
    """`n` accounts, IMAP (+ SMTP with the same login), each its own password unless
    `password` is given. Hosts are spread over `hosts` names unless `host` is given."""
    tls = TlsSettings(ca_file=ca_file)
    out: list[Account] = []
    for i in range(n):
        h = host or f"mail{i % hosts}.bench.example"
        user = f"{user_prefix}{i}"
        secret = Secret(password if password is not None else f"pw-{i:08d}-bench")
        imap = MailServer(h, port, Security.TLS, user, password=secret, tls=tls, timeout=10.0)
        sm = (
            MailServer(h, 465, Security.TLS, user, password=secret, tls=tls, timeout=10.0)
            if smtp
            else None
        )
        owner_no = i // accounts_per_owner
        out.append(
            Account(
                id=f"acc-{i:07d}",
                owner=Owner(id=f"owner-{owner_no:07d}", email=f"owner{owner_no}@example.com"),
                provider=f"provider{i % 5}",
                address=f"{user}@example.com",
                imap=imap,
                smtp=sm,
            )
        )
    return out


def config_for(
    dir: Path,
    accounts: Sequence[Account],
    *,
    listen: str,
    schedule: ScheduleSettings | None = None,
    per_account: str = "all",
    api_token: str | None = "bench-api-token-0123456789",  # noqa: S107
) -> Config:
    from agent.config.types import ApiSettings, HttpSettings

    return Config(
        path=dir / "agent.yaml",
        schedule=schedule or ScheduleSettings(),
        store=StoreSettings(path=dir / "state.sqlite3"),
        http=HttpSettings(listen=listen),
        api=ApiSettings(tokens=(Secret(api_token),) if api_token else ()),
        metrics=MetricsSettings(per_account=per_account),
        accounts=tuple(accounts),
    )


def instant_prober(failing: frozenset[str] = frozenset()) -> Prober:
    """A probe that answers at once (the network taken out of the picture): success, or a
    definitive auth failure for the account ids in `failing`."""
    import time

    from agent.model import Cause, Failure, ProbeResult, Service, Step

    refused = Failure(
        Cause.AUTH_FAILED,
        definitive=True,
        detail="NO [AUTHENTICATIONFAILED] Authentication failed.",
    )

    async def probe(account: Account, service: Service) -> ProbeResult:
        return ProbeResult(
            account_id=account.id,
            service=service,
            started_at=time.time(),
            duration_seconds=0.0001,
            failure=refused if account.id in failing else None,
            steps=(Step("login", 0.0001, ok=account.id not in failing),),
            credential=account.credential_fingerprint(service),
        )

    return probe


def run_child(args: list[str], timeout: float) -> dict[str, object]:
    """Run `python -m bench.<...> args` in a fresh process; it prints one JSON object as its
    last stdout line. Its other output goes to our stderr."""
    import json
    import subprocess
    import sys

    proc = subprocess.run(
        [sys.executable, "-m", *args],
        stdout=subprocess.PIPE,
        timeout=timeout,
        check=False,
    )
    lines = proc.stdout.decode().strip().splitlines()
    if proc.returncode != 0 or not lines:
        raise RuntimeError(f"{' '.join(args)} failed (exit {proc.returncode}): {lines[-5:]}")
    out: dict[str, object] = json.loads(lines[-1])
    return out
