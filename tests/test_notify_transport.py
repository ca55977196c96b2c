"""AppriseTransport against the real sink: accepted, refused, invalid URL, extra headers."""

from __future__ import annotations

import pytest

from agent.localservers.smtp_sink import SmtpSink
from agent.notify.backoff import next_attempt, retry_delay
from agent.notify.transport import AppriseTransport, Message, NotifyError, email_url


async def test_it_sends_html_with_headers_to_the_owner(smtp_sink: SmtpSink) -> None:
    url = email_url(
        smtp_sink.apprise_url("agent@example.com", to="someone-else@example.com"),
        "owner@example.com",
        {"List-Unsubscribe": "<https://p.example/n?owner=o1&x=1>", "X-Syncwatch-Key": "o1/1/first"},
    )
    await AppriseTransport().send(Message(url=url, title="Hi", body="<p>a &amp; b</p>", key="k"))
    [msg] = smtp_sink.messages
    assert smtp_sink.envelopes[0][1] == ["owner@example.com"]
    assert msg["List-Unsubscribe"] == "<https://p.example/n?owner=o1&x=1>"
    assert msg["X-Syncwatch-Key"] == "o1/1/first"
    part = msg.get_body(("html",))
    assert part is not None
    assert part.get_content().strip() == "<p>a &amp; b</p>"


async def test_a_relay_that_is_down_is_a_temporary_error(smtp_sink: SmtpSink) -> None:
    url = f"mailto://u:s3cr3t-pw@127.0.0.1:{smtp_sink.port}?from=a@example.com&to=o@example.com"
    smtp_sink.stop()
    with pytest.raises(NotifyError) as e:
        await AppriseTransport().send(Message(url=url, title="t", body="b", key="o1/1/first"))
    assert not e.value.permanent
    assert "s3cr3t" not in str(e.value)
    assert str(e.value).startswith("o1/1/first: not accepted")


async def test_a_relay_that_rejects_is_a_temporary_error(smtp_sink: SmtpSink) -> None:
    smtp_sink.reject = "451 4.3.0 try again later"
    url = smtp_sink.apprise_url(to="o@example.com")
    with pytest.raises(NotifyError) as e:
        await AppriseTransport().send(Message(url=url, title="t", body="b", key="k"))
    assert not e.value.permanent
    assert smtp_sink.messages == []


async def test_an_invalid_url_is_permanent() -> None:
    with pytest.raises(NotifyError) as e:
        await AppriseTransport().send(Message(url="nope://x", title="t", body="b", key="k"))
    assert e.value.permanent


@pytest.mark.parametrize(
    ("attempt", "rand", "delay"),
    [(1, 0.0, 30.0), (1, 1.0, 60.0), (2, 0.5, 90.0), (7, 1.0, 3600.0), (20, 0.0, 1800.0)],
)
def test_backoff_is_capped_exponential_with_jitter(attempt: int, rand: float, delay: float) -> None:
    assert retry_delay(attempt, lambda: rand) == delay


def test_it_gives_up_on_attempts_age_or_permanent_errors() -> None:
    kw = {
        "created_at": 0.0,
        "now": 100.0,
        "max_attempts": 3,
        "max_age": 1000.0,
        "rand": lambda: 0.0,
    }
    assert next_attempt(attempts=1, permanent=False, **kw) == 130.0  # type: ignore[arg-type]
    assert next_attempt(attempts=3, permanent=False, **kw) is None  # type: ignore[arg-type]
    assert next_attempt(attempts=1, permanent=True, **kw) is None  # type: ignore[arg-type]
    late = {**kw, "now": 990.0}
    assert next_attempt(attempts=1, permanent=False, **late) is None  # type: ignore[arg-type]
