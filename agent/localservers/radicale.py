"""A private Radicale (CalDAV) server for tests and demos.

`Radicale(dir)` writes a config, an htpasswd file (plain, `delay = 0`) and a rights file
into `dir` and runs `python -m radicale --config dir/config` on 127.0.0.1. Users,
calendars and rights change while it runs: Radicale re-reads the htpasswd file on every
login, and the rights backend below (`type = agent.localservers.radicale`, loaded by
Radicale through `Rights`) re-reads the rights file whenever it changes.

Every user gets, by default, read on the root, read/write on their principal and on
their calendars. `make_calendar(user, name, read_only=True)` puts a rule giving only `r`
on that calendar ahead of the general ones; `forbid(user)` puts a rule with empty
permissions for everything, so Radicale answers 403.

No pytest here: the fixtures in tests/servers/radicale.py wrap this class.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import re
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from agent.secret import Secret

_RIGHTS_TYPE = "agent.localservers.radicale"


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class RadicaleError(RuntimeError):
    """The server did not start or stopped unexpectedly; carries the end of its log."""


class Radicale:
    """One private Radicale process. Not thread-safe; call from one thread."""

    def __init__(self, dir: Path, port: int | None = None, *, start_timeout: float = 15.0):
        self.dir = Path(dir)
        self.port = port if port is not None else _free_port()
        self.start_timeout = start_timeout
        self._users: dict[str, str] = {}
        self._forbidden: set[str] = set()
        self._read_only: set[tuple[str, str]] = set()
        self._proc: subprocess.Popen[bytes] | None = None
        self._log_file: Any = None
        self.dir.mkdir(parents=True, exist_ok=True)
        self.storage = self.dir / "collections"
        self.storage.mkdir(exist_ok=True)
        self.htpasswd = self.dir / "users"
        self.rights = self.dir / "rights"
        self.config = self.dir / "config"
        self.log_path = self.dir / "radicale.log"
        self._write_users()
        self._write_rights()
        self._write_config()

    # -- process ----------------------------------------------------------------------
    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/"

    def start(self) -> None:
        if self._proc is not None and self._proc.poll() is None:
            return
        self._log_file = self.log_path.open("ab")
        env = {k: v for k, v in os.environ.items() if not k.lower().endswith("_proxy")}
        self._proc = subprocess.Popen(  # noqa: S603 - fixed argv, our own interpreter
            [sys.executable, "-m", "radicale", "--config", str(self.config)],
            stdout=self._log_file,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=env,
        )
        deadline = time.monotonic() + self.start_timeout
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise RadicaleError(f"radicale exited ({self._proc.returncode}): {self._tail()}")
            if self._answers():
                return
            time.sleep(0.05)
        self.stop()
        raise RadicaleError(f"radicale not ready after {self.start_timeout}s: {self._tail()}")

    def stop(self) -> None:
        proc, self._proc = self._proc, None
        if proc is not None and proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=5)
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def __enter__(self) -> Radicale:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _answers(self) -> bool:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=1)
        try:
            conn.request("GET", "/.web/")
            conn.getresponse().read()
            return True
        except OSError:
            return False
        finally:
            conn.close()

    def _tail(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-2000:]
        except OSError:
            return ""

    # -- users, calendars, rights (take effect without restart) --------------------------
    def add_user(self, user: str, password: str | Secret, *, calendar: str | None = None) -> None:
        """Add a user; with `calendar`, also a writable calendar of that name."""
        _check_name(user)
        self._users[user] = _plain(password)
        self._write_users()
        self.user_dir(user).mkdir(parents=True, exist_ok=True)
        if calendar is not None:
            self.make_calendar(user, calendar)

    def set_password(self, user: str, password: str | Secret) -> None:
        if user not in self._users:
            raise KeyError(user)
        self._users[user] = _plain(password)
        self._write_users()

    def remove_user(self, user: str) -> None:
        self._users.pop(user, None)
        self._write_users()

    def make_calendar(self, user: str, name: str, read_only: bool = False) -> str:
        """Create a calendar collection on disk; return its URL."""
        _check_name(user)
        _check_name(name)
        folder = self.user_dir(user) / name
        folder.mkdir(parents=True, exist_ok=True)
        props = {"tag": "VCALENDAR", "D:displayname": name}
        (folder / ".Radicale.props").write_text(json.dumps(props))
        if read_only:
            self._read_only.add((user, name))
        else:
            self._read_only.discard((user, name))
        self._write_rights()
        return self.calendar_url(user, name)

    def forbid(self, user: str, forbidden: bool = True) -> None:
        """Every request of `user` is answered 403 (or no longer, with forbidden=False)."""
        if forbidden:
            self._forbidden.add(user)
        else:
            self._forbidden.discard(user)
        self._write_rights()

    def user_dir(self, user: str) -> Path:
        return self.storage / "collection-root" / user

    def principal_url(self, user: str) -> str:
        return f"{self.url}{user}/"

    def calendar_url(self, user: str, name: str) -> str:
        return f"{self.url}{user}/{name}/"

    # -- files ----------------------------------------------------------------------------
    def _write_config(self) -> None:
        self.config.write_text(
            "[server]\n"
            f"hosts = 127.0.0.1:{self.port}\n"
            "[auth]\n"
            "type = htpasswd\n"
            f"htpasswd_filename = {self.htpasswd}\n"
            "htpasswd_encryption = plain\n"
            "delay = 0\n"
            "[rights]\n"
            f"type = {_RIGHTS_TYPE}\n"
            f"file = {self.rights}\n"
            "[storage]\n"
            f"filesystem_folder = {self.storage}\n"
            "[logging]\n"
            "level = warning\n"
            "mask_passwords = True\n"
        )

    def _write_users(self) -> None:
        text = "".join(f"{u}:{p}\n" for u, p in sorted(self._users.items()))
        _atomic_write(self.htpasswd, text)
        self.htpasswd.chmod(0o600)

    def _write_rights(self) -> None:
        out: list[str] = []
        for i, user in enumerate(sorted(self._forbidden)):
            out.append(f"[forbid-{i}]\nuser: {re.escape(user)}\ncollection: .*\npermissions:\n")
        for i, (user, name) in enumerate(sorted(self._read_only)):
            out.append(
                f"[read-only-{i}]\nuser: {re.escape(user)}\n"
                f"collection: {re.escape(user)}/{re.escape(name)}\npermissions: r\n"
            )
        out.append("[root]\nuser: .+\ncollection:\npermissions: R\n")
        out.append("[principal]\nuser: .+\ncollection: {user}\npermissions: RW\n")
        out.append("[calendars]\nuser: .+\ncollection: {user}/[^/]+\npermissions: rw\n")
        _atomic_write(self.rights, "\n".join(out))


def _plain(password: str | Secret) -> str:
    value = password.reveal() if isinstance(password, Secret) else password
    if ":" in value or "\n" in value:
        raise ValueError("a password for the htpasswd file cannot hold ':' or a newline")
    return value


def _check_name(name: str) -> None:
    if not re.fullmatch(r"[A-Za-z0-9._@+-]+", name) or name in (".", ".."):
        raise ValueError(f"unsupported name for Radicale: {name!r}")


def _atomic_write(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


# -- the rights backend Radicale loads (in its own process) ------------------------------
def _make_rights_class() -> type:
    from radicale.rights import from_file  # only inside the Radicale process

    class ReloadingRights(from_file.Rights):
        """from_file rights that re-read the file when it changed on disk."""

        def __init__(self, configuration: Any) -> None:
            self._reload_lock = threading.Lock()
            self._stamp = _stamp(configuration.get("rights", "file"))
            super().__init__(configuration)

        def authorization(self, user: str, user_groups: set[str], path: str) -> str:
            stamp = _stamp(self._filename)
            if stamp != self._stamp:
                with self._reload_lock:
                    if stamp != self._stamp:
                        from_file.Rights.__init__(self, self.configuration)
                        self._stamp = stamp
            result: str = super().authorization(user, user_groups, path)
            return result

    return ReloadingRights


def _stamp(path: str) -> tuple[int, int, int]:
    with contextlib.suppress(OSError):
        st = os.stat(path)
        return (st.st_ino, st.st_mtime_ns, st.st_size)
    return (0, 0, 0)


def __getattr__(name: str) -> Any:
    # Radicale's plugin loader does getattr(module, "Rights"); build it only then, so
    # importing this module never needs radicale.
    if name == "Rights":
        return _make_rights_class()
    raise AttributeError(name)
