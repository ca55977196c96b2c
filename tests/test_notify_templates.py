"""Templates and start-up validation: bad URLs and templates are named, overrides work."""

from __future__ import annotations

from pathlib import Path

from agent.config.types import NotifySettings, OwnerSettings, PortalSettings
from agent.model import Cause, Service
from agent.notify.planner import Broken, Intent, Kind
from agent.notify.render import (
    BUNDLED,
    context,
    environment,
    render,
    resolve_templates_dir,
    validate,
)
from tests.test_notify_support import account

GOOD = "mailto://127.0.0.1:2525?from=agent@example.com"


def test_the_shipped_templates_are_valid() -> None:
    assert validate(NotifySettings(email=GOOD), None) == []
    assert (BUNDLED / "first.html").is_file()


def test_it_names_every_bad_url() -> None:
    errors = validate(
        NotifySettings(email="https://relay.example/", sre=("nope://x",)),
        None,
        owners={"o1": OwnerSettings(notify_urls=("bad://y",))},
    )
    assert errors == [
        "notify.email: must be a mailto:// or mailtos:// URL",
        "notify.sre[0]: not a valid Apprise URL: nope://x",
        "owners.o1.notify_urls[0]: not a valid Apprise URL: bad://y",
    ]
    assert validate(NotifySettings(email="mailto://127.0.0.1:25"), None) == [
        "notify.email: the relay URL needs from=ADDRESS"
    ]


def test_it_names_a_broken_template_and_its_line(tmp_path: Path) -> None:
    (tmp_path / "first.html").write_text("<p>ok</p>\n<p>{% if %}</p>\n")
    (tmp_path / "reminder.txt").write_text("{{ no_such_thing }}\n")
    errors = validate(NotifySettings(email=GOOD), tmp_path)
    assert any(e.startswith("template ") and "first.html:2" in e for e in errors), errors
    assert any("reminder.txt" in e and "no_such_thing" in e for e in errors), errors


def test_it_names_a_bad_portal_placeholder() -> None:
    portal = PortalSettings(reconnect_url="https://p.example/{acount}")
    [error] = validate(NotifySettings(email=GOOD), None, portal=portal)
    assert error.startswith("portal.reconnect_url: bad placeholder")


def test_an_override_folder_replaces_only_the_files_it_has(tmp_path: Path) -> None:
    (tmp_path / "first.subject").write_text("Custom: {{ accounts | length }} broken\n")
    env = environment(tmp_path)
    b = Broken("a1", ((Service.IMAP, Cause.AUTH_FAILED, None),), True, 0.0)
    intent = Intent("o1/1/first", Kind.FIRST, "o1", "first", (b,))
    out = render(
        env,
        Kind.FIRST,
        context(intent, {"a1": account("a1")}, PortalSettings(), None, NotifySettings()),
    )
    assert out.subject == "Custom: 1 broken"
    assert "a1@example.com" in out.text  # the shipped body


def test_html_is_escaped_and_text_is_not() -> None:
    a = account("a1")
    from dataclasses import replace

    a = replace(a, address="<b>x&y</b>@example.com")
    b = Broken("a1", ((Service.IMAP, Cause.AUTH_FAILED, None),), True, 0.0)
    intent = Intent("o1/1/first", Kind.FIRST, "o1", "first", (b,))
    out = render(
        environment(None),
        Kind.FIRST,
        context(intent, {"a1": a}, PortalSettings(), None, NotifySettings()),
    )
    assert "&lt;b&gt;x&amp;y&lt;/b&gt;@example.com" in out.html
    assert "<b>x&y</b>@example.com" in out.text


def test_templates_dir_resolution(tmp_path: Path) -> None:
    cfg = tmp_path / "syncwatch.yml"
    assert resolve_templates_dir(NotifySettings(), cfg) is None
    (tmp_path / "templates").mkdir()
    assert resolve_templates_dir(NotifySettings(), cfg) == tmp_path / "templates"
    explicit = NotifySettings(templates_dir=Path("/elsewhere"))
    assert resolve_templates_dir(explicit, cfg) == Path("/elsewhere")
