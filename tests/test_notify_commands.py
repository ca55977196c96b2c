"""`syncwatch notifications`: reads the store named by the config, no bodies, no URLs."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner

from agent.notify.commands import notifications_command
from agent.store.base import OutboxItem
from agent.store.sqlite import SqliteStore
from tests.test_notify_support import T0


def item(key: str, account: str, **kw: object) -> OutboxItem:
    base = {
        "key": key,
        "kind": "first",
        "owner_id": "o1",
        "account_ids": (account,),
        "payload": {
            "target": "email",
            "to": "o1@example.com",
            "subject": "S",
            "html": "<p>BODY</p>",
        },
        "status": "pending",
        "created_at": T0,
        "not_before": T0,
    }
    return OutboxItem(**{**base, **kw})  # type: ignore[arg-type]


def test_it_lists_sent_and_pending_rows(tmp_path: Path) -> None:
    cfg = tmp_path / "syncwatch.yml"
    cfg.write_text("store:\n  path: s.db\naccounts: []\n")
    store = SqliteStore.open(tmp_path / "s.db")
    store.enqueue(item("o1/1/first", "a1"))
    store.enqueue(
        item("o1/1/first#abc", "a1", payload={"target": "url", "url_id": "abc", "subject": "S"})
    )
    store.enqueue(item("o2/1/first", "a2", owner_id="o2"))
    [claimed, *_] = store.claim_due(T0, "w", 60)
    store.mark_sent(claimed.key, "w", T0 + 1)
    store.close()

    runner = CliRunner()
    out = runner.invoke(notifications_command, ["--config", str(cfg), "--json"])
    assert out.exit_code == 0, out.output
    rows = {r["key"]: r for r in json.loads(out.output)}
    assert set(rows) == {"o1/1/first", "o1/1/first#abc", "o2/1/first"}
    assert rows["o1/1/first"]["status"] == "sent"
    assert rows["o1/1/first"]["to"] == "o1@example.com"
    assert rows["o1/1/first#abc"]["to"] == "url:abc"
    assert "BODY" not in out.output

    out = runner.invoke(notifications_command, ["--config", str(cfg), "--account", "a2"])
    assert out.exit_code == 0, out.output
    assert "o2/1/first" in out.output and "o1/1/first" not in out.output
    assert out.output.startswith("pending")


def test_a_bad_config_is_a_clear_error(tmp_path: Path) -> None:
    out = CliRunner().invoke(notifications_command, ["--config", str(tmp_path / "missing.yml")])
    assert out.exit_code != 0
    assert "missing.yml" in out.output
