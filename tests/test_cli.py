"""The syncwatch command: check-config, probe against a real Dovecot, logging, no secrets out."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from agent.cli import configure_logging, main, redact_in_logs
from agent.localservers.dovecot import Dovecot
from agent.localservers.radicale import Radicale
from tests.conftest import free_port
from tests.servers import tls

ROOT = Path(__file__).resolve().parent.parent
ALICE_PW = "alice-pw"
WRONG_PW = "Wr0ng-but-secret-pw"


@pytest.fixture(autouse=True)
def restore_logging() -> Iterator[None]:
    """The CLI configures the root logger; put it back for the other tests."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


def run(*args: str, env: dict[str, str] | None = None) -> Result:
    return CliRunner().invoke(main, list(args), env=env, catch_exceptions=False)


def write_config(tmp_path: Path, dovecot: Dovecot | None, pki: tls.TestPKI) -> Path:
    """Accounts on `dovecot` (or on closed ports when None)."""
    closed = free_port()
    imaps = dovecot.imaps_port if dovecot else free_port()
    submission = dovecot.submission_port if dovecot else free_port()
    text = f"""
store: {{path: var/syncwatch.sqlite3}}
notify: {{email: null}}
accounts:
  - id: acc-ok
    owner: {{id: u-1, email: alice@example.com}}
    address: alice@example.com
    imap: &imap
      host: 127.0.0.1
      port: {imaps}
      username: alice
      password: {{env: ALICE_PW}}
      tls_ca_file: {pki.ca}
      timeout: 10s
    smtp:
      host: 127.0.0.1
      port: {submission}
      security: starttls
      username: alice
      password: {{env: ALICE_PW}}
      tls_ca_file: {pki.ca}
      timeout: 10s
  - id: acc-wrong-password
    owner: u-1
    address: alice@example.com
    imap:
      <<: *imap
      password: {{env: WRONG_PW}}
  - id: acc-closed
    owner: u-1
    address: alice@example.com
    imap:
      <<: *imap
      port: {closed}
owners:
  u-1: {{email: alice@example.com}}
"""
    p = tmp_path / "agent.yaml"
    p.write_text(text)
    return p


ENV = {"ALICE_PW": ALICE_PW, "WRONG_PW": WRONG_PW}


# ---------------------------------------------------------------- check-config


def test_check_config_ok_for_the_shipped_config(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(ROOT)
    result = run("check-config", "--config", "config/agent.yaml")
    assert result.exit_code == 0
    assert result.stdout == "config OK: 1 account, 1 owner\n"


def test_check_config_error_names_file_account_and_field(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(ROOT)
    result = run("check-config", "--config", "tests/data/config/invalid-port.yaml")
    assert result.exit_code == 2
    assert result.stdout == ""
    assert result.stderr == (
        "tests/data/config/invalid-port.yaml:6: account acc-1: imap.port: "
        "expected an integer from 1 to 65535, got 'abc'\n"
    )


def test_check_config_counts_accounts_and_owners(tmp_path: Path) -> None:
    cfg = tmp_path / "a.yaml"
    cfg.write_text(
        "owners: {u-9: {mute: true}}\naccounts:\n"
        + "".join(
            f"  - {{id: a{i}, owner: {{id: u-{i % 2}, email: u{i % 2}@example.com}}, "
            f"imap: {{host: h, username: u, password: {{env: PW}}}}}}\n"
            for i in range(5)
        )
    )
    result = run("check-config", "--config", str(cfg), env={"PW": "x"})
    assert (result.exit_code, result.stdout) == (0, "config OK: 5 accounts, 3 owners\n")


def test_check_config_unset_env_var_is_named(tmp_path: Path) -> None:
    cfg = tmp_path / "a.yaml"
    cfg.write_text(
        "accounts:\n  - id: a1\n    owner: {id: u, email: u@example.com}\n"
        "    imap: {host: h, username: u, password: {env: SYNCWATCH_TEST_NOPE}}\n"
    )
    result = run("check-config", "--config", str(cfg))
    assert result.exit_code == 2
    assert result.stderr == (
        f"{cfg}:4: account a1: imap.password: environment variable SYNCWATCH_TEST_NOPE is not set\n"
    )


def test_console_script_and_version() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "agent", "--version"], capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == "syncwatch, version 0.1.0"


def test_help_lists_commands() -> None:
    result = run("--help")
    assert result.exit_code == 0
    for name in ("check-config", "probe", "notifications"):
        assert name in result.stdout


# ---------------------------------------------------------------- probe


def test_probe_json_ok_against_dovecot(tmp_path: Path, dovecot: Dovecot, pki: tls.TestPKI) -> None:
    cfg = write_config(tmp_path, dovecot, pki)
    result = run("probe", "acc-ok", "--config", str(cfg), "--json", env=ENV)
    doc = json.loads(result.stdout)  # exactly one object
    assert result.exit_code == 0, result.stdout
    assert doc["account"] == "acc-ok" and doc["ok"] is True
    assert [s["service"] for s in doc["services"]] == ["imap", "smtp"]
    assert all(s["ok"] and s["cause"] is None for s in doc["services"])
    assert all(s["steps"] for s in doc["services"])
    assert "transcript" not in doc["services"][0]


def test_probe_wrong_password_is_auth_failed_and_never_printed(
    tmp_path: Path, dovecot: Dovecot, pki: tls.TestPKI
) -> None:
    cfg = write_config(tmp_path, dovecot, pki)
    result = run(
        "--log-level",
        "debug",
        "probe",
        "acc-wrong-password",
        "--config",
        str(cfg),
        "--json",
        "--debug",
        env=ENV,
    )
    assert result.exit_code == 1
    doc = json.loads(result.stdout)
    (imap,) = doc["services"]
    assert doc["ok"] is False
    assert (imap["service"], imap["ok"], imap["cause"]) == ("imap", False, "auth_failed")
    assert imap["action_needed"] is True
    assert imap["transcript"]  # --debug adds the protocol lines
    assert WRONG_PW not in result.stdout and WRONG_PW not in result.stderr


def test_probe_text_debug_never_prints_the_password(
    tmp_path: Path, dovecot: Dovecot, pki: tls.TestPKI
) -> None:
    cfg = write_config(tmp_path, dovecot, pki)
    result = run(
        "--log-level", "debug", "probe", "acc-ok", "--config", str(cfg), "--debug", env=ENV
    )
    assert result.exit_code == 0, result.stdout
    assert result.stdout.startswith("account acc-ok (generic): ok\n")
    assert "transcript:" in result.stdout
    assert "LOGIN" in result.stdout.upper() or "AUTH" in result.stdout.upper()
    assert ALICE_PW not in result.stdout and ALICE_PW not in result.stderr


def test_probe_closed_port_is_server_unavailable(
    tmp_path: Path, dovecot: Dovecot, pki: tls.TestPKI
) -> None:
    cfg = write_config(tmp_path, dovecot, pki)
    result = run("probe", "acc-closed", "--config", str(cfg), "--json", env=ENV)
    assert result.exit_code == 1
    (imap,) = json.loads(result.stdout)["services"]
    assert imap["cause"] == "server_unavailable"
    assert imap["action_needed"] is False


def test_probe_text_output_explains_failure(
    tmp_path: Path, dovecot: Dovecot, pki: tls.TestPKI
) -> None:
    cfg = write_config(tmp_path, dovecot, pki)
    result = run("probe", "acc-closed", "--config", str(cfg), env=ENV)
    assert result.exit_code == 1
    out = result.stdout
    assert "imap: FAILING: server_unavailable" in out
    assert "user must act: no" in out and "server said:" in out and "steps:" in out


def test_probe_service_filter(tmp_path: Path, dovecot: Dovecot, pki: tls.TestPKI) -> None:
    cfg = write_config(tmp_path, dovecot, pki)
    result = run("probe", "acc-ok", "--config", str(cfg), "--json", "--service", "smtp", env=ENV)
    assert result.exit_code == 0
    assert [s["service"] for s in json.loads(result.stdout)["services"]] == ["smtp"]


def test_probe_unknown_account_exits_2_naming_it(tmp_path: Path, pki: tls.TestPKI) -> None:
    cfg = write_config(tmp_path, None, pki)
    result = run("probe", "acc-nope", "--config", str(cfg), env=ENV)
    assert result.exit_code == 2
    assert result.stderr == f"{cfg}: account acc-nope: not found\n"


def test_probe_service_the_account_lacks_exits_2(tmp_path: Path, pki: tls.TestPKI) -> None:
    cfg = write_config(tmp_path, None, pki)
    result = run("probe", "acc-closed", "--config", str(cfg), "--service", "caldav", env=ENV)
    assert result.exit_code == 2
    assert result.stderr == f"{cfg}: account acc-closed: has no caldav settings\n"


def test_probe_with_bad_config_exits_2(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(ROOT)
    result = run("probe", "acc-1", "--config", "tests/data/config/invalid-security.yaml")
    assert result.exit_code == 2
    assert "imap.security" in result.stderr


def test_probe_bad_service_name_is_usage_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(ROOT)
    result = CliRunner().invoke(main, ["probe", "demo-1", "--service", "pop3"])
    assert result.exit_code == 2


# ---------------------------------------------------------------- logging


def test_json_logs_are_one_object_per_line_and_redacted(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging("info", "json")
    redact_in_logs(["very-secret-token"])
    logging.getLogger("agent.test").info(
        "probe done with %s", "very-secret-token", extra={"account_id": "acc-1"}
    )
    logging.getLogger("agent.test").debug("not shown at info")
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 1
    doc = json.loads(lines[0])
    assert doc["level"] == "info" and doc["logger"] == "agent.test"
    assert doc["account_id"] == "acc-1"
    assert doc["msg"] == "probe done with <redacted>"


def test_logs_shorten_email_addresses(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging("info", "text")
    logging.getLogger("apprise").info("Sent Email to dave.smith+crm@example.com")
    logging.getLogger("agent.test").info("to <a@b.example.org>, x@y.io; not: me@localhost, @z.com")
    err = capsys.readouterr().err
    assert "Sent Email to d***@example.com" in err
    assert "to <a***@b.example.org>, x***@y.io; not: me@localhost, @z.com" in err
    assert "dave" not in err.replace("d***@", "")


def test_text_logs(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging("warning", "text")
    logging.getLogger("agent.test").warning("inventory: %d accounts skipped", 3)
    err = capsys.readouterr().err
    assert err.endswith("WARNING agent.test: inventory: 3 accounts skipped\n")


def test_probe_oauth_account_uses_token_endpoint_and_hides_refresh_token(tmp_path: Path) -> None:
    """The token endpoint is down: the probe fails (exit 1) without printing any secret."""
    refresh, client_secret = "1//refresh-token-value-xyz", "client-secret-value-xyz"
    cfg = tmp_path / "agent.yaml"
    cfg.write_text(
        f"""
accounts:
  - id: gmail-1
    owner: {{id: u-1, email: alice@example.com}}
    provider: gmail
    imap: {{host: 127.0.0.1, port: {free_port()}, username: alice@example.com, auth: xoauth2,
            timeout: 5s}}
    oauth2:
      token_url: http://127.0.0.1:{free_port()}/token
      client_id: cid
      client_secret: {{env: CLIENT_SECRET}}
      refresh_token: {{env: REFRESH}}
"""
    )
    env = {"REFRESH": refresh, "CLIENT_SECRET": client_secret}
    result = run(
        "--log-level",
        "debug",
        "probe",
        "gmail-1",
        "--config",
        str(cfg),
        "--json",
        "--debug",
        env=env,
    )
    assert result.exit_code == 1
    (imap,) = json.loads(result.stdout)["services"]
    assert imap["ok"] is False and imap["cause"] is not None
    for secret in (refresh, client_secret):
        assert secret not in result.stdout and secret not in result.stderr


def test_probe_after_the_user_changed_their_password_at_the_provider(
    tmp_path: Path, dovecot: Dovecot, pki: tls.TestPKI
) -> None:
    cfg = write_config(tmp_path, dovecot, pki)
    assert run("probe", "acc-ok", "--config", str(cfg), "--json", env=ENV).exit_code == 0
    dovecot.set_password("alice", "changed-at-the-provider")
    result = run("probe", "acc-ok", "--config", str(cfg), "--json", env=ENV)
    assert result.exit_code == 1
    doc = json.loads(result.stdout)
    causes = {s["service"]: (s["cause"], s["action_needed"]) for s in doc["services"]}
    assert causes == {"imap": ("auth_failed", True), "smtp": ("auth_failed", True)}
    assert ALICE_PW not in result.stdout


def test_probe_read_only_calendar_is_permission_denied(tmp_path: Path, radicale: Radicale) -> None:
    cfg = tmp_path / "agent.yaml"
    cfg.write_text(
        f"""
store: {{path: var/s.sqlite3}}
notify: {{email: null}}
accounts:
  - id: acc-bob
    owner: {{id: u-2, email: bob@example.com}}
    caldav: {{url: "{radicale.url}", username: bob, password: bob-pw, timeout: 10s}}
"""
    )
    result = run("probe", "acc-bob", "--config", str(cfg), "--json")
    assert result.exit_code == 1, result.stdout
    (dav,) = json.loads(result.stdout)["services"]
    assert (dav["service"], dav["cause"], dav["action_needed"]) == (
        "caldav",
        "permission_denied",
        True,
    )
    assert "bob-pw" not in result.stdout
