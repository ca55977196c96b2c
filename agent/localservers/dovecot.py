"""A private Dovecot (IMAP, IMAPS, SMTP submission) in a folder of its own.

Used by the tests (tests/servers/dovecot.py), `syncwatch demo` and bench/. Listens on
127.0.0.1 only. Users live in a passwd-file that Dovecot re-reads on change, so user
management takes effect without a restart. A Lua passdb chained before that file forces
the replies a real provider gives: `NO [CONTACTADMIN] reason` (nologin), `NO [EXPIRED]`
and `NO [UNAVAILABLE]`.

    d = Dovecot(Path("/tmp/dv"), cert, key)
    d.start()
    d.add_user("alice", "alice-pw")
    ...  # IMAP on d.imap_port (plain + STARTTLS), d.imaps_port, submission on d.submission_port
    d.stop()
"""

from __future__ import annotations

import contextlib
import math
import os
import shutil
import signal
import socket
import socketserver
import subprocess
import threading
import time
from pathlib import Path

__all__ = ["Dovecot", "DovecotError"]

_AUTH_RESULTS = {"expired", "unavailable"}

_LUA = r"""
-- Forced results per user, read on every login from the overrides file (no restart).
-- Lines: user<TAB>kind<TAB>reason   kind: nologin | expired | unavailable
local overrides_path = "@OVERRIDES@"
local passwd_path = "@PASSWD@"

local function find_override(user)
  local f = io.open(overrides_path, "r")
  if f == nil then return nil end
  for line in f:lines() do
    local u, kind, reason = line:match("^([^\t]*)\t([^\t]*)\t(.*)$")
    if u == user then f:close() return kind, reason end
  end
  f:close()
  return nil
end

local function password_of(user)
  local f = io.open(passwd_path, "r")
  if f == nil then return nil end
  local prefix = user .. ":{PLAIN}"
  for line in f:lines() do
    if line:sub(1, #prefix) == prefix then
      f:close()
      return line:sub(#prefix + 1):match("^(.-)::")
    end
  end
  f:close()
  return nil
end

function auth_password_verify(req, pass)
  local kind, reason = find_override(req.user)
  if kind == nil then
    return dovecot.auth.PASSDB_RESULT_USER_UNKNOWN, "no override"
  end
  if kind == "unavailable" then
    return dovecot.auth.PASSDB_RESULT_INTERNAL_FAILURE, reason
  end
  if password_of(req.user) ~= pass then
    return dovecot.auth.PASSDB_RESULT_PASSWORD_MISMATCH, "wrong password"
  end
  if kind == "expired" then
    return dovecot.auth.PASSDB_RESULT_PASS_EXPIRED, reason
  end
  return dovecot.auth.PASSDB_RESULT_OK, {nologin="y", reason=reason}
end
"""


class DovecotError(RuntimeError):
    pass


class _PortTaken(DovecotError):
    """A port in the config was taken by another process before Dovecot bound it."""


class _RelayHandler(socketserver.StreamRequestHandler):
    """Dovecot's submission service connects to its relay at login: this one accepts
    everything and keeps nothing (the probe never sends a message)."""

    def handle(self) -> None:
        self.wfile.write(b"220 relay ready\r\n")
        in_data = False
        for raw in self.rfile:
            line = raw.rstrip(b"\r\n")
            if in_data:
                if line == b".":
                    in_data = False
                    self.wfile.write(b"250 2.0.0 dropped\r\n")
                continue
            verb = line.split(b" ", 1)[0].upper()
            if verb in (b"EHLO", b"HELO"):
                self.wfile.write(b"250-relay\r\n250-PIPELINING\r\n250 8BITMIME\r\n")
            elif verb == b"DATA":
                in_data = True
                self.wfile.write(b"354 go ahead\r\n")
            elif verb == b"QUIT":
                self.wfile.write(b"221 2.0.0 bye\r\n")
                return
            else:
                self.wfile.write(b"250 2.0.0 ok\r\n")


class _Relay(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Dovecot:
    host = "127.0.0.1"

    def __init__(
        self,
        dir: Path,
        cert: Path,
        key: Path,
        *,
        submission: bool = True,
        reuse_processes: bool = False,
        imap_port: int | None = None,
        imaps_port: int | None = None,
        submission_port: int | None = None,
        max_userip_connections: int = 10,
        binary: str = "dovecot",
    ) -> None:
        self.dir = Path(dir).absolute()
        self.cert = Path(cert).absolute()
        self.key = Path(key).absolute()
        self.submission = submission
        self.reuse_processes = reuse_processes
        self.imap_port = imap_port or _free_port()
        self.imaps_port = imaps_port or _free_port()
        self.submission_port = submission_port or _free_port()
        # ports we picked may be taken by someone else before Dovecot binds them (a free
        # port is only free when asked); those are picked again, on the first start only
        self._may_repick = not (imap_port or imaps_port or submission_port)
        self.max_userip_connections = max_userip_connections
        self.binary = binary
        self._proc: subprocess.Popen[bytes] | None = None
        self._relay: _Relay | None = None
        self.relay_port = 0
        self._users: dict[str, tuple[str, str]] = {}  # user -> (password, extra fields)
        self._overrides: dict[str, tuple[str, str]] = {}  # user -> (kind, reason)
        self._stamp = 0.0

    # -- paths
    @property
    def conf(self) -> Path:
        return self.dir / "dovecot.conf"

    @property
    def passwd(self) -> Path:
        return self.dir / "passwd"

    @property
    def overrides(self) -> Path:
        return self.dir / "overrides"

    @property
    def log_path(self) -> Path:
        return self.dir / "dovecot.log"

    @property
    def run_dir(self) -> Path:
        return self.dir / "run"

    # -- lifecycle
    def start(self, timeout: float = 10.0) -> None:
        if self._proc is not None:
            raise DovecotError("already started")
        self.dir.mkdir(parents=True, exist_ok=True)
        self.dir.chmod(0o755)
        _check_reachable(self.dir)
        mail = self.dir / "mail"
        mail.mkdir(exist_ok=True)
        with contextlib.suppress(PermissionError, KeyError):
            shutil.chown(mail, "dovecot", "dovecot")
        mail.chmod(0o755)
        self._write_users()
        self._write_overrides()
        (self.dir / "auth.lua").write_text(
            _LUA.replace("@OVERRIDES@", str(self.overrides)).replace("@PASSWD@", str(self.passwd))
        )
        if self.submission:
            self._relay = _Relay((self.host, 0), _RelayHandler)
            self.relay_port = int(self._relay.server_address[1])
            threading.Thread(target=self._relay.serve_forever, daemon=True).start()
        for attempt in range(3):
            try:
                self._launch(timeout)
                break
            except _PortTaken:
                if not self._may_repick or attempt == 2:
                    raise
                self.imap_port, self.imaps_port = _free_port(), _free_port()
                self.submission_port = _free_port()
        self._may_repick = False

    def _launch(self, timeout: float) -> None:
        # A fresh base_dir every start: the anvil block below needs it (TEST-SERVERS.md).
        shutil.rmtree(self.run_dir, ignore_errors=True)
        self.run_dir.mkdir()
        self.conf.write_text(self._config())
        for p in (self.conf, self.dir / "auth.lua"):
            p.chmod(0o644)
        self._proc = subprocess.Popen(  # noqa: S603
            [self.binary, "-F", "-c", str(self.conf)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        ports = [self.imap_port, self.imaps_port]
        if self.submission:
            ports.append(self.submission_port)
        deadline = time.monotonic() + timeout
        while not all(_listening(self.host, p) for p in ports):
            if self._proc.poll() is not None:
                err = self._proc.stderr.read().decode(errors="replace") if self._proc.stderr else ""
                self._proc = None
                kind = _PortTaken if "Address already in use" in err else DovecotError
                raise kind(f"dovecot exited: {err.strip()} {self._log_tail()}")
            if time.monotonic() > deadline:
                self.stop()
                raise DovecotError(f"dovecot did not listen within {timeout}s {self._log_tail()}")
            time.sleep(0.02)

    def stop(self, timeout: float = 10.0) -> None:
        relay, self._relay = self._relay, None
        if relay is not None:
            relay.shutdown()
            relay.server_close()
        proc, self._proc = self._proc, None
        if proc is None:
            return
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        if proc.stderr:
            proc.stderr.close()

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def __enter__(self) -> Dovecot:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- users (take effect at the next login, no restart)
    def add_user(self, user: str, password: str) -> None:
        _check_name(user)
        _check_field(password)
        self._users[user] = (password, self._users.get(user, ("", ""))[1])
        self._write_users()

    def add_many_users(self, n: int, prefix: str = "user", password: str = "pw") -> list[str]:  # noqa: S107
        """Add `prefix0` .. `prefix{n-1}` in one write; returns the names."""
        _check_field(password)
        names = [f"{prefix}{i}" for i in range(n)]
        for name in names:
            self._users[name] = (password, "")
        self._write_users()
        return names

    def remove_user(self, user: str) -> None:
        self._users.pop(user, None)
        self._overrides.pop(user, None)
        self._write_users()
        self._write_overrides()

    def set_password(self, user: str, password: str) -> None:
        if user not in self._users:
            raise KeyError(user)
        self.add_user(user, password)

    def set_nologin(self, user: str, reason: str | None) -> None:
        """With a reason, logins answer `NO [CONTACTADMIN] reason`; None lifts it."""
        self._set_override(user, "nologin" if reason is not None else None, reason or "")

    def set_auth_result(self, user: str, result: str | None, reason: str = "") -> None:
        """ "expired" -> `NO [EXPIRED] ...`, "unavailable" -> `NO [UNAVAILABLE] ...`."""
        if result is not None and result not in _AUTH_RESULTS:
            raise ValueError(f"result must be one of {sorted(_AUTH_RESULTS)} or None")
        self._set_override(user, result, reason or f"forced {result}")

    def set_quota(self, user: str, messages: int | None) -> None:
        """Limit `user` to `messages` messages (None: no limit). With 0 the mailbox is
        full at once: GETQUOTAROOT reports usage >= limit (a message is stored to fill)."""
        if user not in self._users:
            raise KeyError(user)
        extra = "" if messages is None else f"userdb_quota_rule=*:messages={max(messages, 1)}"
        self._users[user] = (self._users[user][0], extra)
        self._write_users()
        if messages is not None:
            for _ in range(max(messages, 1)):
                self._deliver(user)

    def kick(self, user: str) -> None:
        """Drop every live session of `user` (the client sees `* BYE`)."""
        subprocess.run(  # noqa: S603
            ["doveadm", "-c", str(self.conf), "kick", user],  # noqa: S607
            check=True,
            capture_output=True,
            timeout=10,
        )

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    # -- internals
    def _set_override(self, user: str, kind: str | None, reason: str) -> None:
        if user not in self._users:
            raise KeyError(user)
        if kind is None:
            self._overrides.pop(user, None)
        else:
            _check_field(reason)
            self._overrides[user] = (kind, reason.replace("\t", " "))
        self._write_overrides()

    def _deliver(self, user: str) -> None:
        new = self.dir / "mail" / user / "Maildir" / "new"
        for sub in ("new", "cur", "tmp"):
            (new.parent / sub).mkdir(parents=True, exist_ok=True)
        name = f"{time.time_ns()}.P{os.getpid()}.localhost"
        (new / name).write_bytes(
            b"From: a@example.com\r\nTo: b@example.com\r\nSubject: filler\r\n\r\nfiller\r\n"
        )
        with contextlib.suppress(PermissionError, KeyError, LookupError):
            for root, dirs, files in os.walk(self.dir / "mail" / user):
                for n in dirs + files:
                    shutil.chown(os.path.join(root, n), "dovecot", "dovecot")
            shutil.chown(self.dir / "mail" / user, "dovecot", "dovecot")

    def _write_users(self) -> None:
        lines = [f"{u}:{{PLAIN}}{pw}::::::{extra}\n" for u, (pw, extra) in self._users.items()]
        self._replace(self.passwd, "".join(lines))

    def _write_overrides(self) -> None:
        lines = [f"{u}\t{k}\t{r}\n" for u, (k, r) in self._overrides.items()]
        self._replace(self.overrides, "".join(lines))

    def _replace(self, path: Path, text: str) -> None:
        if not self.dir.exists():
            return
        tmp = path.with_suffix(".tmp")
        tmp.write_text(text)
        tmp.chmod(0o644)
        # Dovecot notices a changed passwd-file by its mtime (seconds): make each write
        # visibly newer even when two land in the same second.
        self._stamp = max(time.time(), self._stamp + 1.0)
        os.utime(tmp, (self._stamp, self._stamp))
        tmp.replace(path)
        if self.running:
            # ... and it looks at the file at most once per wall-clock second: a login in the
            # second of the change may still see the old file. Return only once the change
            # is visible to the next login.
            now = time.time()
            time.sleep(math.floor(now) + 1.0 - now + 0.01)

    def _log_tail(self) -> str:
        return self.log_text()[-2000:]

    def _config(self) -> str:
        d = self.dir
        protocols = "imap submission" if self.submission else "imap"
        reuse = ""
        if self.reuse_processes:
            reuse = "  service_count = 0\n  process_min_avail = 2\n"
        imap_service = "service imap {\n  service_count = 1000\n}\n" if self.reuse_processes else ""
        submission = ""
        if self.submission:
            submission = f"""
service submission-login {{
  inet_listener submission {{
    port = {self.submission_port}
  }}
}}
submission_relay_host = 127.0.0.1
submission_relay_port = {self.relay_port}
"""
        return f"""# generated by agent.localservers.dovecot
base_dir = {d}/run
state_dir = {d}/run/state
log_path = {d}/dovecot.log
info_log_path = {d}/dovecot.log
listen = {self.host}
protocols = {protocols}
hostname = localhost
ssl = yes
ssl_cert = <{self.cert}
ssl_key = <{self.key}
disable_plaintext_auth = no
auth_mechanisms = plain login
auth_failure_delay = 0
auth_cache_size = 0
mail_max_userip_connections = {self.max_userip_connections}
mail_location = maildir:{d}/mail/%u/Maildir
default_internal_user = dovecot
default_login_user = dovenull
first_valid_uid = 100
mail_plugins = quota
protocol imap {{
  mail_plugins = $mail_plugins imap_quota
  mail_max_userip_connections = {self.max_userip_connections}
}}
plugin {{
  quota = count:User quota
  quota_vsizes = yes
}}
passdb {{
  driver = lua
  args = file={d}/auth.lua blocking=yes
  result_success = return-ok
  result_failure = continue
  result_internalfail = return-fail
}}
passdb {{
  driver = passwd-file
  args = scheme=PLAIN username_format=%u {d}/passwd
}}
userdb {{
  driver = passwd-file
  args = username_format=%u {d}/passwd
  default_fields = uid=dovecot gid=dovecot home={d}/mail/%u
}}
service anvil {{
  unix_listener anvil-auth-penalty {{
    mode = 0
  }}
}}
service imap-login {{
  inet_listener imap {{
    port = {self.imap_port}
  }}
  inet_listener imaps {{
    port = {self.imaps_port}
    ssl = yes
  }}
{reuse}}}
{imap_service}{submission}"""


def _listening(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.2):
            return True
    except OSError:
        return False


def _check_reachable(path: Path) -> None:
    """Dovecot's unprivileged processes must reach the folder (TEST-SERVERS.md)."""
    for parent in path.parents:
        if parent.exists() and not parent.stat().st_mode & 0o001:
            raise DovecotError(
                f"{parent} is not searchable by other users (mode "
                f"{parent.stat().st_mode & 0o777:o}); Dovecot's auth and mail processes "
                f"cannot reach {path}: use a folder like tempfile.mkdtemp() under /tmp"
            )


def _check_name(user: str) -> None:
    if not user or any(c in user for c in ":\n\t\r "):
        raise ValueError(f"bad user name {user!r}")


def _check_field(value: str) -> None:
    if any(c in value for c in "\n\r") or ("::" in value):
        raise ValueError("value must be one line without '::'")
