"""Network plumbing for the mail probes, and aioimaplib made safe against hostile servers.

`open_socket` resolves with the context's resolver and connects to the IP; `ssl_context`
builds the TLS context from TlsSettings. `SafeImapProtocol` is aioimaplib's protocol with a
framing layer in front (LIBRARY-TRAPS.md): lines are cut in linear time and capped, literals
and the number of lines are capped, the greeting is read here (so `* BYE` and non-UTF-8
greetings are seen), the XOAUTH2 error challenge is answered, and a lost connection or a
broken cap resolves `failed` so no command waits for a reply that will never come.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import ssl
from collections.abc import Callable, Iterator

from aioimaplib import aioimaplib as _imap

from agent.config.types import TlsSettings
from agent.probes.base import ProbeContext
from agent.probes.errors import network_kind
from agent.probes.tls import client_context
from agent.secret import REDACTED

CRLF = b"\r\n"
MAX_LINES = 10_000  # lines one probe session may receive (a healthy one sees ~30)
MAX_UNTAGGED_KEPT = 50  # untagged lines kept for evidence
MAX_KEPT_LINE = 1000  # characters kept of one line


def ssl_context(tls: TlsSettings) -> ssl.SSLContext:
    """The shared client context for these settings (agent.probes.tls)."""
    return client_context(tls)


async def open_socket(ctx: ProbeContext, host: str, port: int) -> socket.socket:
    """Resolve `host` with ctx.resolver and connect to the first address that answers."""
    loop = asyncio.get_running_loop()
    addrs = await ctx.resolver.resolve(host, port)
    last: OSError = OSError(f"no address for {host!r}")
    for ip in addrs:
        family = socket.AF_INET6 if ":" in ip else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setblocking(False)
        try:
            ctx.log("*", f"connecting to {ip}:{port}" + (f" ({host})" if host != ip else ""))
            await loop.sock_connect(sock, (ip, port))
            return sock
        except OSError as e:
            sock.close()
            last = e
        except BaseException:
            sock.close()
            raise
    raise last


class Broken(Exception):
    """The session cannot go on: the connection ended, or the server broke a cap."""

    def __init__(self, network: str | None, text: str, exc: BaseException | None = None) -> None:
        super().__init__(text)
        self.network = network
        self.text = text
        self.exc = exc


class SafeImapProtocol(_imap.IMAP4ClientProtocol):  # type: ignore[misc]
    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        *,
        max_line: int,
        max_literal: int,
        log: Callable[[str, str], None],
        max_lines: int = MAX_LINES,
    ) -> None:
        super().__init__(loop)
        self._max_line = max_line
        self._max_literal = max_literal
        self._max_lines = max_lines
        self._log = log
        self._buf = bytearray()
        self._pos = 0  # start of unread data in _buf
        self._scan = 0  # where the next CRLF search starts (linear, never rescans)
        self._literal_left = 0
        self.lines_seen = 0
        self.greeting: asyncio.Future[bytes] = loop.create_future()
        self.failed: asyncio.Future[Broken] = loop.create_future()
        self.untagged: list[str] = []
        self.untagged_count = 0
        self.bye: str | None = None
        self.scrub: str | None = None  # a secret in the next command line, hidden in logs
        self.challenges: list[bytes] = []  # SASL challenges the server sent
        self.auth_replies: list[str] = []  # what to answer them with (then empty lines)
        self.in_flight: list[PipedCommand] = []  # sent, reply not yet read
        self._corked: list[bytes] | None = None
        self._aborted = False  # we closed the connection (done, or the deadline)

    def command(self, name: str, *args: str) -> PipedCommand:
        # LOGOUT's `* BYE` is filed under it, not logged by aioimaplib as an unknown reply
        # (it waits in the pipeline as an async command; see start_command)
        resp = "BYE" if name == "LOGOUT" else None
        return PipedCommand(name, self.new_tag(), *args, loop=self.loop, untagged_resp_name=resp)

    # -- transport
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        assert isinstance(transport, asyncio.Transport)
        self._transport: asyncio.Transport = transport

    @property
    def current_transport(self) -> asyncio.Transport:
        return self._transport

    def abort(self) -> None:
        t: asyncio.Transport | None = getattr(self, "_transport", None)
        if t is not None:
            self._aborted = True
            t.abort()

    def set_transport(self, transport: asyncio.Transport) -> None:
        self.transport = transport
        self._transport = transport

    def send(self, line: str, scrub: str | None = None) -> None:
        secret = scrub or self.scrub
        shown = line.replace(secret, REDACTED) if secret else line
        self._log("C", shown)
        if self._corked is not None:
            self._corked.append(line.encode() + CRLF)
        else:
            self._transport.write(line.encode() + CRLF)

    @contextlib.contextmanager
    def corked(self) -> Iterator[None]:
        """Commands sent inside go out in one write (pipelining, RFC 9051 5.5)."""
        self._corked = []
        try:
            yield
        finally:
            data, self._corked = b"".join(self._corked), None
            if data and not self._transport.is_closing():
                self._transport.write(data)

    def connection_lost(self, exc: Exception | None) -> None:
        if exc is None:
            by = "the probe" if self._aborted else "server"
            self._fail(Broken("eof", f"connection closed by {by}"))
        else:
            self._fail(Broken(network_kind(exc) or "reset", f"{type(exc).__name__}: {exc}", exc))

    def _fail(self, broken: Broken) -> None:
        if not self.failed.done():
            self._log("*", f"session ended: {broken.text}")
            self.failed.set_result(broken)
        for cmd in self.in_flight:
            if not cmd.done.done():
                cmd.done.set_result(None)
        if not self.greeting.done():
            self.greeting.cancel()
        t: asyncio.Transport | None = getattr(self, "_transport", None)
        if t is not None and not t.is_closing():
            t.abort()

    # -- framing in front of aioimaplib
    def data_received(self, d: bytes) -> None:
        if self.failed.done():
            return
        self._buf += d
        try:
            self._drain()
        except Broken as b:
            self._fail(b)
        except Exception as e:  # aioimaplib's parser gave up (e.g. an unknown tag)
            self._fail(Broken(None, f"{type(e).__name__}: {e}"[:MAX_KEPT_LINE], e))
        finally:
            if self._pos:
                del self._buf[: self._pos]
                self._scan = max(0, self._scan - self._pos)
                self._pos = 0

    def _drain(self) -> None:
        buf = self._buf
        while not self.failed.done():
            if self._literal_left:
                n = min(self._literal_left, len(buf) - self._pos)
                if n == 0:
                    return
                chunk = bytes(buf[self._pos : self._pos + n])
                self._pos += n
                self._scan = self._pos
                self._literal_left -= n
                self._feed(chunk)
                continue
            i = buf.find(CRLF, max(self._scan, self._pos))
            if i < 0:
                if len(buf) - self._pos > self._max_line:
                    raise Broken("too_large", f"line longer than {self._max_line} bytes")
                self._scan = max(self._pos, len(buf) - 1)
                return
            line = bytes(buf[self._pos : i])
            self._pos = self._scan = i + 2
            if len(line) > self._max_line:
                raise Broken("too_large", f"line longer than {self._max_line} bytes")
            self.lines_seen += 1
            if self.lines_seen > self._max_lines:
                raise Broken("too_large", f"more than {self._max_lines} lines")
            text = line[:MAX_KEPT_LINE].decode("utf-8", errors="replace")
            self._log("S", text)
            m = _imap.literal_data_re.match(line)
            if m:
                size = int(m.group("size"))
                if size > self._max_literal:
                    raise Broken("too_large", f"literal of {size} bytes announced")
                self._literal_left = size
            if self.state == _imap.CONNECTED:
                self._greeting(line)
                continue
            if line.startswith(b"* "):
                self.untagged_count += 1
                if len(self.untagged) < MAX_UNTAGGED_KEPT:
                    self.untagged.append(text)
                bye = line[2:6].upper() == b"BYE " or line[2:].upper() == b"BYE"
                if bye:
                    self.bye = text[6:] if len(text) > 6 else ""
                # Replies come in order: an untagged line belongs to the oldest command
                # still waiting for its tagged reply.
                for cmd in self.in_flight:
                    if not cmd.done.done():
                        if len(cmd.untagged) < MAX_UNTAGGED_KEPT:
                            cmd.untagged.append(text)
                        if bye:
                            cmd.bye = self.bye
                        break
            self._feed(line + CRLF)

    def _feed(self, data: bytes) -> None:
        # aioimaplib's data_received minus its debug log of raw server bytes; each call gets
        # one complete line (or a slice of a literal), so its recursion stays shallow.
        try:
            pending: bytes = self.incomplete_line  # type: ignore[has-type]
            current: _imap.Command | None = self.current_command  # type: ignore[has-type]
            self._handle_responses(pending + data, self._handle_line, current)
            self.incomplete_line = b""
            self.current_command = None
        except _imap.IncompleteRead as incomplete:
            self.current_command = incomplete.cmd
            self.incomplete_line = incomplete.data

    def _greeting(self, line: bytes) -> None:
        if not line:
            return
        word = line[2:].split(b" ", 1)[0].upper() if line.startswith(b"* ") else b""
        if word == b"PREAUTH":
            self.state = _imap.AUTH
        elif word == b"OK":
            self.state = _imap.NONAUTH
        else:
            self.state = _imap.LOGOUT
        if not self.greeting.done():
            self.greeting.set_result(line)

    def _continuation(self, line: bytes) -> None:
        cmd = self.pending_sync_command
        if cmd is not None and cmd.name == "AUTHENTICATE":
            if self.auth_replies:
                reply = self.auth_replies.pop(0)
                self._log("C", REDACTED)
                self._transport.write(reply.encode() + CRLF)
            else:
                # An error challenge (XOAUTH2 `+ <base64 JSON>`): the server waits for an
                # empty line before it sends the tagged NO.
                self.challenges.append(line[1:].strip())
                self._log("C", "")
                self._transport.write(CRLF)
            return
        super()._continuation(line)


class PipedCommand(_imap.Command):  # type: ignore[misc]
    """An aioimaplib Command whose tagged reply (or the session's end) resolves `done`.

    aioimaplib's `execute()` runs each command in a task of its own, waits on an Event, and
    holds a command back until the one before it is answered. A probe sends a handful of
    commands, the last four in one pipelined write: `start_command` registers and sends,
    `finish_command` awaits one future, and the server's in-order replies settle them.
    """

    def __init__(
        self,
        name: str,
        tag: str,
        *args: str,
        loop: asyncio.AbstractEventLoop,
        untagged_resp_name: str | None = None,
    ) -> None:
        super().__init__(name, tag, *args, loop=loop, untagged_resp_name=untagged_resp_name)
        self.done: asyncio.Future[None] = loop.create_future()
        self.untagged: list[str] = []  # untagged lines that came before the tagged reply
        self.bye: str | None = None  # text of a `* BYE` among them

    def close(self, line: bytes, result: str) -> None:
        super().close(line, result)
        if not self.done.done():
            self.done.set_result(None)


def start_command(proto: SafeImapProtocol, cmd: PipedCommand) -> None:
    """Register `cmd` with aioimaplib's reply matching and send it; see `finish_command`."""
    if proto.failed.done():
        raise proto.failed.result()
    spec = _imap.Commands.get(cmd.name)
    if proto.state not in spec.valid_states:
        raise _imap.Abort(f"command {cmd.name} illegal in state {proto.state}")
    # LOGOUT is matched by its tag like an async command, so it may follow NOOP in a
    # pipeline; aioimaplib would wait for NOOP's reply before sending it.
    if spec.exec == _imap.Exec.is_sync and cmd.name != "LOGOUT":
        if proto.pending_sync_command is not None or proto.pending_async_commands:
            raise _imap.Abort(f"{cmd.name} sent while another command waits for its reply")
        proto.pending_sync_command = cmd
    else:
        # An async command may follow a sync one in a pipeline: the server answers in
        # order, so aioimaplib sees the sync reply first, as it expects.
        proto.pending_async_commands[cmd.untagged_resp_name] = cmd
    proto.in_flight.append(cmd)
    proto.send(str(cmd))


async def finish_command(proto: SafeImapProtocol, cmd: PipedCommand) -> _imap.Response:
    """Wait for the tagged reply of a started command, or raise Broken when the session
    ends first."""
    try:
        await cmd.done
    finally:
        with contextlib.suppress(ValueError):
            proto.in_flight.remove(cmd)
    if cmd._event.is_set():  # the reply came, perhaps just before the connection ended
        return cmd.response
    raise proto.failed.result()
