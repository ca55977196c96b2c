"""Fixtures `running_agent` and `agent_scrape`: one real `syncwatch run` per test session.

    def test_x(running_agent: RunningAgent, agent_scrape: str) -> None:
        assert running_agent.healthy in agent_scrape

`running_agent` (session scope) starts a private Dovecot (IMAPS + submission) and Radicale,
then the daemon (tests.daemon.Daemon, interval 1s, confirm_interval 1s) watching two accounts:

- `HEALTHY` ("acc-healthy", provider "dovecot"): IMAP, SMTP and CalDAV as alice, all working;
- `BROKEN` ("acc-broken", provider "dovecot"): IMAP as bob with a wrong password, so it is
  disconnected with cause auth_failed once the confirm interval has passed.

The fixture returns when the healthy account is ok on every service and the broken one is
disconnected. Treat it as read-only: other tests share it (do not change passwords or stop
the servers). `agent_scrape` is the text of GET /metrics taken at that moment.

`prometheus` (session scope): a real Prometheus (/usr/bin/prometheus) on 127.0.0.1 scraping the
session agent every second as job `syncwatch`, with alerts/syncwatch.rules.yml loaded and
evaluated every second. It returns once the target is up and the recording rules have a value;
`prometheus.query(expr)` runs an instant query, `prometheus.api(path)` any other GET.
"""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from agent.localservers.dovecot import Dovecot
from agent.localservers.radicale import Radicale
from tests.conftest import free_port
from tests.daemon import Daemon
from tests.servers.dovecot import running_dovecot
from tests.servers.tls import TestPKI

REPO = Path(__file__).resolve().parent.parent.parent
RULES = REPO / "alerts" / "syncwatch.rules.yml"
PROMETHEUS = "/usr/bin/prometheus"

HEALTHY = "acc-healthy"
BROKEN = "acc-broken"
PROVIDER = "dovecot"
WRONG_PASSWORD = "not-bobs-password"


@dataclass(frozen=True)
class RunningAgent:
    daemon: Daemon
    dovecot: Dovecot
    radicale: Radicale
    healthy: str = HEALTHY
    broken: str = BROKEN
    provider: str = PROVIDER

    @property
    def address(self) -> str:
        """host:port of the agent's HTTP listener (what Prometheus calls the instance)."""
        return f"127.0.0.1:{self.daemon.port}"


def agent_accounts(dovecot: Dovecot, radicale: Radicale, pki: TestPKI) -> list[dict[str, Any]]:
    """The two accounts of the session agent, as config file entries."""

    def mail(port: int, security: str, user: str, password: str) -> dict[str, Any]:
        return {
            "host": dovecot.host,
            "port": port,
            "security": security,
            "username": user,
            "password": password,
            "tls_ca_file": str(pki.ca),
            "timeout": "5s",
        }

    return [
        {
            "id": HEALTHY,
            "owner": {"id": "u-healthy", "email": "alice@example.com", "name": "Alice"},
            "provider": PROVIDER,
            "address": "alice@example.com",
            "imap": mail(dovecot.imaps_port, "tls", "alice", "alice-pw"),
            "smtp": mail(dovecot.submission_port, "starttls", "alice", "alice-pw"),
            "caldav": {
                "url": radicale.url,
                "username": "alice",
                "password": "alice-pw",
                "timeout": "5s",
            },
        },
        {
            "id": BROKEN,
            "owner": {"id": "u-broken", "email": "bob@example.com"},
            "provider": PROVIDER,
            "address": "bob@example.com",
            "imap": mail(dovecot.imaps_port, "tls", "bob", WRONG_PASSWORD),
        },
    ]


def _healthy_everywhere(d: Daemon) -> bool:
    doc = d.status(HEALTHY)
    services = doc["services"]
    return (
        doc["state"] == "ok"
        and len(services) == 3
        and all(s["state"] == "ok" and s["last_probe_at"] for s in services)
    )


def _broken_disconnected(d: Daemon) -> bool:
    doc = d.status(BROKEN)
    return bool(
        doc["state"] == "disconnected"
        and doc["services"][0]["state"] == "disconnected"
        and doc["services"][0]["cause"] == "auth_failed"
    )


@pytest.fixture(scope="session")
def running_agent(tmp_path_factory: pytest.TempPathFactory, pki: TestPKI) -> Iterator[RunningAgent]:
    radicale_dir = tmp_path_factory.mktemp("agent-radicale")
    with running_dovecot(pki.good) as dovecot:
        radicale = Radicale(radicale_dir)
        radicale.add_user("alice", "alice-pw", calendar="work")
        radicale.start()
        daemon = Daemon(
            tmp_path_factory.mktemp("agent"),
            {
                "schedule": {
                    "interval": "1s",
                    "confirm_interval": "1s",
                    "transient_grace": "1h",
                    "recheck_min_interval": "1s",
                    "jitter": False,
                },
                "notify": {"transient_after": "1h"},
                "accounts": agent_accounts(dovecot, radicale, pki),
            },
        )
        try:
            try:
                daemon.start()
                daemon.wait_for(lambda: _healthy_everywhere(daemon), timeout=30, what="healthy")
                daemon.wait_for(lambda: _broken_disconnected(daemon), timeout=30, what="broken")
            except OSError as e:  # the API did not answer in time: show why
                raise AssertionError(f"{e!r}\n--- daemon log ---\n{daemon.log_text()}") from e
            yield RunningAgent(daemon, dovecot, radicale)
        finally:
            if daemon.proc is not None and daemon.proc.poll() is None:
                try:
                    daemon.terminate()
                except subprocess.TimeoutExpired:
                    daemon.stop()
            radicale.stop()
            shutil.rmtree(radicale_dir, ignore_errors=True)


@pytest.fixture(scope="session")
def agent_scrape(running_agent: RunningAgent) -> str:
    """GET /metrics of the session agent, once the broken account is disconnected."""
    return running_agent.daemon.metrics()


# --- Prometheus ----------------------------------------------------------------------------


class PrometheusError(AssertionError):
    pass


class Prometheus:
    """A private Prometheus process: config, storage and log in `dir`, API on a free port."""

    def __init__(
        self,
        dir: Path,
        targets: list[str],
        *,
        job: str = "syncwatch",
        rule_files: tuple[Path, ...] = (RULES,),
        binary: str = PROMETHEUS,
    ) -> None:
        self.dir = dir
        self.job = job
        self.port = free_port()
        self.binary = binary
        self.config = {
            "global": {
                "scrape_interval": "1s",
                "scrape_timeout": "1s",
                "evaluation_interval": "1s",
            },
            "rule_files": [str(p) for p in rule_files],
            "scrape_configs": [{"job_name": job, "static_configs": [{"targets": targets}]}],
        }
        self.config_path = dir / "prometheus.yml"
        self.config_path.write_text(yaml.safe_dump(self.config, sort_keys=False))
        self.log = dir / "prometheus.log"
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen(
                [
                    self.binary,
                    f"--config.file={self.config_path}",
                    f"--storage.tsdb.path={self.dir / 'data'}",
                    f"--web.listen-address=127.0.0.1:{self.port}",
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        self.wait_for(lambda: self._get("/-/ready")[0] == 200, timeout=20, what="ready")

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)

    def _get(self, path: str, params: dict[str, str] | None = None) -> tuple[int, bytes]:
        query = f"?{urllib.parse.urlencode(params)}" if params else ""
        try:
            with urllib.request.urlopen(self.url + path + query, timeout=10) as r:  # noqa: S310
                return int(r.status), r.read()
        except urllib.error.HTTPError as e:
            return e.code, e.read()
        except (urllib.error.URLError, ConnectionError):
            return 0, b""

    def api(self, path: str, **params: str) -> Any:
        """GET /api/v1/<path>; the `data` of a successful answer, else PrometheusError."""
        code, body = self._get(f"/api/v1/{path}", params)
        try:
            doc = json.loads(body)
        except ValueError:
            doc = None
        if code != 200 or not isinstance(doc, dict) or doc.get("status") != "success":
            raise PrometheusError(f"GET /api/v1/{path} {params}: HTTP {code}: {body[:500]!r}")
        if doc.get("warnings"):
            raise PrometheusError(f"GET /api/v1/{path} {params}: warnings {doc['warnings']}")
        return doc["data"]

    def query(self, expr: str) -> list[dict[str, Any]]:
        """An instant query: its result as a list of {"metric": {...}, "value": [t, "v"]}."""
        data = self.api("query", query=expr)
        if data["resultType"] == "scalar":
            return [{"metric": {}, "value": data["result"]}]
        return list(data["result"])

    def values(self, expr: str, label: str) -> dict[str, float]:
        """An instant query as {value of `label`: sample value}."""
        return {s["metric"].get(label, ""): float(s["value"][1]) for s in self.query(expr)}

    def wait_for(self, cond: Callable[[], bool], *, timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc is not None and self.proc.poll() is not None:
                raise PrometheusError(f"prometheus exited ({self.proc.returncode}):\n{self.tail()}")
            try:
                if cond():
                    return
            except PrometheusError:
                pass
            time.sleep(0.2)
        raise PrometheusError(
            f"timed out waiting for {what}\n--- prometheus log ---\n{self.tail()}"
        )

    def tail(self) -> str:
        return self.log.read_text(errors="replace")[-6000:] if self.log.exists() else ""


@pytest.fixture(scope="session")
def prometheus(
    tmp_path_factory: pytest.TempPathFactory, running_agent: RunningAgent
) -> Iterator[Prometheus]:
    if not Path(PROMETHEUS).exists():
        pytest.skip(f"needs {PROMETHEUS} (Debian package prometheus)")
    prom = Prometheus(tmp_path_factory.mktemp("prometheus"), [running_agent.address])
    try:
        prom.start()
        prom.wait_for(
            lambda: (
                prom.values(f'up{{job="{prom.job}"}}', "instance") == {running_agent.address: 1}
            ),
            timeout=30,
            what="first scrape of the agent",
        )
        prom.wait_for(
            lambda: bool(prom.query("syncwatch:accounts:sum")),
            timeout=15,
            what="a recording rule evaluated after the first scrape",
        )
        yield prom
    finally:
        prom.stop()
