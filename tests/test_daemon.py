"""`syncwatch run` end to end against real Dovecot and Radicale, as a subprocess."""

from __future__ import annotations

import re
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from agent.localservers.dovecot import Dovecot
from agent.localservers.radicale import Radicale
from tests.daemon import Daemon
from tests.servers.tls import TestPKI

pytestmark = pytest.mark.slow


def _accounts(dovecot: Dovecot, radicale: Radicale, pki: TestPKI) -> list[dict[str, Any]]:
    return [
        {
            "id": "acc-alice",
            "owner": {"id": "u-alice", "email": "alice@example.com", "name": "Alice"},
            "provider": "dovecot",
            "address": "alice@example.com",
            "imap": {
                "host": "127.0.0.1",
                "port": dovecot.imaps_port,
                "security": "tls",
                "username": "alice",
                "password": "alice-pw",
                "tls_ca_file": str(pki.ca),
                "timeout": "5s",
            },
            "smtp": {
                "host": "127.0.0.1",
                "port": dovecot.submission_port,
                "security": "starttls",
                "username": "alice",
                "password": "alice-pw",
                "tls_ca_file": str(pki.ca),
                "timeout": "5s",
            },
            "caldav": {
                "url": radicale.url,
                "username": "alice",
                "password": "alice-pw",
                "timeout": "5s",
            },
        },
        {
            "id": "acc-bob",
            "owner": {"id": "u-bob", "email": "bob@example.com"},
            "provider": "dovecot",
            "imap": {
                "host": "127.0.0.1",
                "port": dovecot.imaps_port,
                "security": "tls",
                "username": "bob",
                "password": "bob-pw",
                "tls_ca_file": str(pki.ca),
                "timeout": "5s",
            },
        },
    ]


@pytest.fixture
def daemon(tmp_path: Path, dovecot: Dovecot, radicale: Radicale, pki: TestPKI) -> Iterator[Daemon]:
    d = Daemon(
        tmp_path,
        {
            "schedule": {
                "interval": "1s",
                "confirm_interval": "1s",
                "transient_grace": "1h",
                "recheck_min_interval": "1s",
                "jitter": False,
            },
            "notify": {"transient_after": "1h"},
            "accounts": _accounts(dovecot, radicale, pki),
        },
    )
    try:
        yield d
    finally:
        d.stop()


def _state(d: Daemon, account: str) -> str:
    return str(d.status(account)["state"])


def test_password_change_banner_survives_kill_and_recheck_clears_it(
    daemon: Daemon, dovecot: Dovecot
) -> None:
    daemon.start()
    daemon.wait_for(
        lambda: (
            _state(daemon, "acc-alice") == "ok"
            and all(s["last_probe_at"] for s in daemon.status("acc-alice")["services"])
        ),
        timeout=30,
        what="alice ok",
    )
    assert daemon.status("acc-alice")["banner"] is None

    dovecot.set_password("alice", "changed-by-user")
    daemon.wait_for(
        lambda: _state(daemon, "acc-alice") == "disconnected", timeout=30, what="alice disconnected"
    )
    doc = daemon.status("acc-alice")
    assert doc["banner"]["show"] is True
    assert doc["banner"]["cause"] == "auth_failed"
    assert doc["banner"]["severity"] == "error"
    assert "acc-alice" in doc["banner"]["reconnect_url"]
    broken = {s["service"] for s in doc["services"] if s["state"] == "disconnected"}
    assert broken == {"imap", "smtp"}
    metrics = daemon.metrics()
    assert re.search(
        r'syncwatch_account_up\{account_id="acc-alice",service="imap",provider="dovecot"\} 0',
        metrics,
    )
    assert 'syncwatch_account_disconnected{account_id="acc-alice",service="imap",' in metrics
    assert "alice@example.com" not in metrics
    assert "changed-by-user" not in metrics and "alice-pw" not in metrics
    code, banner = daemon.json("GET", "/api/v1/users/u-alice/banner")
    assert code == 200 and banner["show"] is True
    assert [a["account"] for a in banner["accounts"]] == ["acc-alice"]
    # bob is untouched
    assert _state(daemon, "acc-bob") == "ok"

    daemon.kill()  # kill -9: nothing is re-decided from scratch
    daemon.start()
    doc = daemon.status("acc-alice")
    assert doc["state"] == "disconnected" and doc["banner"]["cause"] == "auth_failed"

    dovecot.set_password("alice", "alice-pw")
    code, doc = daemon.json("POST", "/api/v1/accounts/acc-alice/recheck")
    assert code == 200, doc
    assert doc["state"] == "ok" and doc["banner"] is None, doc
    assert "alice-pw" not in daemon.log_text()
    assert daemon.terminate() == 0


def test_brief_outage_never_shows_a_banner(daemon: Daemon, dovecot: Dovecot) -> None:
    daemon.start()
    daemon.wait_for(
        lambda: (
            _state(daemon, "acc-bob") == "ok"
            and daemon.status("acc-bob")["services"][0]["last_probe_at"]
        ),
        timeout=30,
        what="bob ok",
    )
    dovecot.stop()
    daemon.wait_for(
        lambda: _state(daemon, "acc-bob") == "degraded", timeout=30, what="bob degraded"
    )
    doc = daemon.status("acc-bob")
    assert doc["banner"] is None
    assert doc["services"][0]["cause"] == "server_unavailable"
    dovecot.start()
    daemon.wait_for(lambda: _state(daemon, "acc-bob") == "ok", timeout=30, what="bob ok again")


def test_api_errors_and_etag(daemon: Daemon) -> None:
    daemon.start()
    assert daemon.get("/api/v1/accounts/acc-bob/status", token=None)[0] == 401
    assert daemon.get("/api/v1/accounts/acc-bob/status", token="wrong")[0] == 401
    code, doc = daemon.json("GET", "/api/v1/accounts/nope/status")
    assert code == 404
    code, doc = daemon.json("GET", "/api/v1/users/nobody/banner")
    assert code == 200 and doc["show"] is False and doc["accounts"] == []
    status, headers, _ = daemon.request("GET", "/api/v1/users/nobody/banner")
    etag = headers["ETag"]
    status, _, body = daemon.request(
        "GET", "/api/v1/users/nobody/banner", headers={"If-None-Match": etag}
    )
    assert status == 304 and body == b""
    code, spec = daemon.json("GET", "/api/v1/openapi.json", token=None)
    assert code == 200 and "/api/v1/users/{owner_id}/banner" in spec["paths"]
    assert daemon.get("/-/healthy", token=None)[0] == 200
    # /metrics is written in pieces: its length is announced up front, and HEAD sends none
    status, headers, body = daemon.request("GET", "/metrics", token=None)
    assert status == 200 and headers["Content-Type"].startswith("text/plain; version=0.0.4")
    assert int(headers["Content-Length"]) == len(body) and b"syncwatch_build_info{" in body
    # HEAD over a raw socket (urllib never reads a HEAD body): headers, then nothing
    host, port = daemon.url.removeprefix("http://").rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=10) as s:
        s.sendall(b"HEAD /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        raw = b""
        while chunk := s.recv(65536):
            raw += chunk
    head, _, rest = raw.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200") and rest == b""
    assert re.search(rb"(?i)\r\nContent-Length: (\d{4,})\r\n", head + b"\r\n"), head


def test_bad_reload_keeps_running_config(daemon: Daemon) -> None:
    daemon.start()
    daemon.path.write_text(daemon.path.read_text() + "\nbogus_key: 1\n")
    code, doc = daemon.json("POST", "/-/reload", token=None)
    assert code == 500 and "bogus_key" in doc["message"]
    assert "syncwatch_config_last_reload_successful 0.0" in daemon.metrics()
    assert daemon.status("acc-bob")["account"] == "acc-bob"
    daemon.write()
    code, doc = daemon.json("POST", "/-/reload", token=None)
    assert code == 200, doc
    assert "syncwatch_config_last_reload_successful 1.0" in daemon.metrics()


def test_a_taken_port_stops_the_daemon_with_a_clear_error(daemon: Daemon, tmp_path: Path) -> None:
    import subprocess
    import sys

    daemon.start()
    second = tmp_path / "second"
    second.mkdir()
    config = daemon.path.read_text().replace(str(daemon.dir / "state.sqlite3"), str(second / "s"))
    (second / "agent.yaml").write_text(config)
    out = subprocess.run(
        [sys.executable, "-m", "agent", "run", "--config", str(second / "agent.yaml")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 2, out.stderr
    assert f"cannot listen on 127.0.0.1:{daemon.port}" in out.stderr
    assert "Traceback" not in out.stderr
    assert daemon.get("/-/ready", token=None)[0] == 200  # the first one is untouched
