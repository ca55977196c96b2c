"""An SMTP sink (aiosmtpd) that keeps what it receives: the relay in tests, demos and benches.

    sink = SmtpSink()            # a free port on 127.0.0.1
    sink.start()
    url = sink.apprise_url("agent@example.com")   # mailto://127.0.0.1:PORT?from=...
    ...
    sink.messages                # parsed email.message.EmailMessage, in arrival order
    sink.stop(); sink.start()    # same port again (the relay went down and came back)
    sink.reject = "451 4.3.0 try later"   # answer DATA with this instead of 250

aiosmtpd runs its own event loop in a thread, so the sink works from sync and async code.
"""

from __future__ import annotations

import socket
import threading
from email import message_from_bytes, policy
from email.message import EmailMessage
from typing import Any

__all__ = ["SmtpSink"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class _Handler:
    def __init__(self, sink: SmtpSink) -> None:
        self.sink = sink

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        if self.sink.reject:
            return self.sink.reject
        raw = envelope.original_content or envelope.content
        data = raw if isinstance(raw, bytes) else str(raw).encode()
        msg = message_from_bytes(data, policy=policy.default)
        assert isinstance(msg, EmailMessage)
        with self.sink.lock:
            self.sink.messages.append(msg)
            self.sink.envelopes.append((envelope.mail_from, list(envelope.rcpt_tos)))
        self.sink.received.set()
        return "250 OK"


class SmtpSink:
    def __init__(self, host: str = "127.0.0.1", port: int | None = None) -> None:
        self.host = host
        self.port = port or _free_port()
        self.messages: list[EmailMessage] = []
        self.envelopes: list[tuple[str, list[str]]] = []
        self.reject: str | None = None
        self.lock = threading.Lock()
        self.received = threading.Event()
        self._controller: Any = None

    @property
    def running(self) -> bool:
        return self._controller is not None

    def start(self) -> None:
        from aiosmtpd.controller import Controller

        if self._controller is not None:
            return
        controller = Controller(_Handler(self), hostname=self.host, port=self.port)
        controller.start()
        self._controller = controller

    def stop(self) -> None:
        if self._controller is not None:
            self._controller.stop()
            self._controller = None

    def apprise_url(self, sender: str = "agent@example.com", **query: str) -> str:
        """Apprise URL of this relay (no TLS, no auth); extra query arguments appended."""
        args = "".join(f"&{k}={v}" for k, v in query.items())
        return f"mailto://{self.host}:{self.port}?from={sender}{args}"

    def clear(self) -> None:
        with self.lock:
            self.messages.clear()
            self.envelopes.clear()
        self.received.clear()

    def __enter__(self) -> SmtpSink:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
