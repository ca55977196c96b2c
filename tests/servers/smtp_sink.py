"""Fixture `smtp_sink`: a real SMTP server (aiosmtpd) on 127.0.0.1 that keeps every message.

    async def test_x(smtp_sink):
        url = smtp_sink.apprise_url("agent@example.com")   # the notify.email relay URL
        ...
        [msg] = smtp_sink.messages          # email.message.EmailMessage
        smtp_sink.stop(); smtp_sink.start() # down and back on the same port
        smtp_sink.reject = "451 4.3.0 later"

See agent.localservers.smtp_sink.SmtpSink.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from agent.localservers.smtp_sink import SmtpSink


@pytest.fixture
def smtp_sink() -> Iterator[SmtpSink]:
    sink = SmtpSink()
    sink.start()
    try:
        yield sink
    finally:
        sink.stop()
