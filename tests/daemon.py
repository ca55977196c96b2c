"""Helpers to run `syncwatch run` as a subprocess against real servers and talk to it."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from tests.conftest import free_port

API_TOKEN = "test-api-token-0123456789"


class Daemon:
    """A `syncwatch run` subprocess with its config file and a tiny HTTP client."""

    def __init__(self, dir: Path, config: dict[str, Any]) -> None:
        self.dir = dir
        self.port = free_port()
        self.config = {
            "http": {"listen": f"127.0.0.1:{self.port}"},
            "api": {"tokens": [API_TOKEN]},
            "store": {"path": str(dir / "state.sqlite3")},
            **config,
        }
        self.path = dir / "agent.yaml"
        self.log = dir / "daemon.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.write()

    def write(self) -> None:
        self.path.write_text(yaml.safe_dump(self.config, sort_keys=False))

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, *, wait_ready: bool = True) -> None:
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "agent",
                    "--log-level",
                    "info",
                    "run",
                    "--config",
                    str(self.path),
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
            )
        if wait_ready:
            self.wait_for(lambda: self.get("/-/ready")[0] == 200, timeout=20, what="ready")

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.kill()
        self.proc.wait(10)

    def terminate(self) -> int:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(30)

    def request(
        self,
        method: str,
        path: str,
        *,
        token: str | None = API_TOKEN,
        headers: dict[str, str] | None = None,
    ) -> tuple[int, dict[str, str], bytes]:
        data = b"" if method == "POST" else None
        req = urllib.request.Request(self.url + path, method=method, data=data)  # noqa: S310
        if token:
            req.add_header("Authorization", f"Bearer {token}")
        for k, v in (headers or {}).items():
            req.add_header(k, v)
        try:
            with urllib.request.urlopen(req, timeout=30) as r:  # noqa: S310
                return r.status, dict(r.headers), r.read()
        except urllib.error.HTTPError as e:
            return e.code, dict(e.headers), e.read()
        except (urllib.error.URLError, ConnectionError):
            return 0, {}, b""

    def get(self, path: str, **kw: Any) -> tuple[int, bytes]:
        status, _, body = self.request("GET", path, **kw)
        return status, body

    def json(self, method: str, path: str, **kw: Any) -> tuple[int, Any]:
        status, _, body = self.request(method, path, **kw)
        return status, json.loads(body) if body else None

    def status(self, account_id: str) -> dict[str, Any]:
        code, doc = self.json("GET", f"/api/v1/accounts/{account_id}/status")
        assert code == 200, (code, doc)
        return dict(doc)

    def metrics(self) -> str:
        code, body = self.get("/metrics", token=None)
        assert code == 200
        return body.decode()

    def wait_for(self, cond: Callable[[], bool], *, timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc is not None and self.proc.poll() is not None:
                raise AssertionError(f"daemon exited ({self.proc.returncode}):\n{self.log_text()}")
            try:
                if cond():
                    return
            except (AssertionError, KeyError, TypeError):
                pass
            time.sleep(0.1)
        raise AssertionError(f"timed out waiting for {what}\n--- daemon log ---\n{self.log_text()}")

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")[-6000:] if self.log.exists() else ""

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
