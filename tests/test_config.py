"""Config loading: the examples load, every invalid file fails with its exact error, secrets
come from env and files and never show in an error or a repr."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from agent.config.durations import format_duration, parse_duration
from agent.config.load import ConfigError, load_config, parse_account
from agent.config.types import AuthKind, OwnerSettings, Security
from agent.secret import Secret

ROOT = Path(__file__).resolve().parent.parent
DATA = Path("tests/data/config")  # relative, as an operator would type it
DATA_ABS = ROOT / DATA

EXAMPLE_ENV = {
    "GOOGLE_CLIENT_SECRET": "google-client-secret-value",
    "MICROSOFT_CLIENT_SECRET": "microsoft-client-secret-value",
    "ICLOUD_APP_PASSWORD_ACC_1003": "icloud-app-password-value",
    "FASTMAIL_APP_PASSWORD_ACC_1004": "fastmail-app-password-value",
    "SYNCWATCH_API_TOKEN": "api-token-value",
    "SYNCWATCH_NOTIFY_URL": "mailtos://relay.example.com:465?user=u&pass=relay-pass&from=a@example.com",
    "SYNCWATCH_INVENTORY_TOKEN": "inventory-token-value",
}
SECRET_FILES = {
    "secrets/acc-1001.refresh-token": "refresh-1001-value",
    "secrets/acc-1002.refresh-token": "refresh-1002-value",
    "secrets/acc-1005.password": "password-1005-value",
    "examples/secrets/u-42-gmail.token": "refresh-gmail-value",
    "examples/secrets/u-57-outlook.token": "refresh-outlook-value",
}


@pytest.fixture
def config_copy(tmp_path: Path) -> Path:
    """config/ copied to a temp folder, with the secret files the examples name."""
    dst = tmp_path / "config"
    shutil.copytree(ROOT / "config", dst)
    for rel, value in SECRET_FILES.items():
        (dst / rel).parent.mkdir(parents=True, exist_ok=True)
        (dst / rel).write_text(value + "\n")
    return dst


def with_cwd_root(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(ROOT)


# ---------------------------------------------------------------- examples


def test_agent_yaml_loads_without_any_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    with_cwd_root(monkeypatch)
    config = load_config(Path("config/agent.yaml"), environ={})
    assert [a.id for a in config.accounts] == ["demo-1"]
    demo = config.accounts[0]
    assert demo.owner.email == "demo.owner@example.com"
    assert demo.imap is not None and demo.imap.port == 10143
    assert demo.caldav is not None
    assert config.schedule.interval == 300
    assert config.notify.reminders == (86400.0, 3 * 86400.0, 7 * 86400.0, 14 * 86400.0)
    assert config.store.path == ROOT / "var/syncwatch.sqlite3"


def test_accounts_example_loads_with_env_and_secret_files(config_copy: Path) -> None:
    config = load_config(config_copy / "examples/accounts-file.yaml", environ=EXAMPLE_ENV)
    by_id = {a.id: a for a in config.accounts}
    assert list(by_id) == ["acc-1001", "acc-1002", "acc-1003", "acc-1004", "acc-1005"]
    gmail = by_id["acc-1001"]
    assert gmail.provider == "gmail"
    assert gmail.imap is not None and gmail.imap.auth is AuthKind.XOAUTH2
    assert gmail.imap.password is None and gmail.imap.port == 993
    assert gmail.oauth2 is not None
    assert gmail.oauth2.refresh_token == Secret("refresh-1001-value")  # trailing newline gone
    assert gmail.oauth2.client_secret == Secret("google-client-secret-value")
    outlook = by_id["acc-1002"]
    assert outlook.smtp is not None and outlook.smtp.security is Security.STARTTLS
    assert outlook.smtp.port == 587
    icloud = by_id["acc-1003"]
    assert icloud.owner.email == "alice@example.com"  # from owners:
    assert icloud.address == "alice.martin@icloud.com"
    assert icloud.caldav is not None
    assert icloud.caldav.password == Secret("icloud-app-password-value")
    assert by_id["acc-1004"].interval == 120
    generic = by_id["acc-1005"]
    assert generic.owner.name == "Bruno Keller" and generic.imap is not None
    assert generic.imap.port == 143 and generic.imap.timeout == 30
    assert generic.imap.password == Secret("password-1005-value")
    assert config.accounts_file == config_copy / "accounts.example.yaml"
    assert config.api.tokens == (Secret("api-token-value"),)
    assert config.owners["u-88"].mute is True


def test_oauth_example_loads(config_copy: Path) -> None:
    config = load_config(config_copy / "examples/oauth.yaml", environ=EXAMPLE_ENV)
    assert [a.id for a in config.accounts] == ["gmail-alice", "outlook-bruno"]
    assert config.accounts[0].caldav is not None
    assert config.accounts[0].caldav.scopes == ("https://www.googleapis.com/auth/calendar",)


def test_http_inventory_example_loads(config_copy: Path) -> None:
    config = load_config(config_copy / "examples/http-inventory.yaml", environ=EXAMPLE_ENV)
    assert config.accounts == ()
    assert config.inventory_http is not None
    assert config.inventory_http.token == Secret("inventory-token-value")
    assert config.inventory_http.poll_interval == 60


def test_accounts_file_with_relative_secret_file(monkeypatch: pytest.MonkeyPatch) -> None:
    with_cwd_root(monkeypatch)
    config = load_config(DATA / "valid-accounts-file.yaml", environ={})
    (acc,) = config.accounts
    assert acc.imap is not None and acc.imap.password == Secret("pw-from-file-9")
    assert acc.address == "nine@example.com"


# ---------------------------------------------------------------- invalid files

MISSING = str(DATA_ABS / "secrets/missing.txt")

# file -> (file the error names, line, account, field, message)
INVALID: dict[str, tuple[str | None, int | None, str | None, str, str]] = {
    "invalid-yaml-syntax.yaml": (
        None,
        3,
        None,
        "",
        "invalid YAML: expected <block end>, but found '<block mapping start>' "
        "(check the indentation)",
    ),
    "invalid-not-mapping.yaml": (None, 1, None, "", "expected a mapping, got a list"),
    "invalid-duplicate-key.yaml": (None, 3, None, "", "duplicate key 'interval' (first at line 2)"),
    "invalid-unknown-key.yaml": (
        None,
        2,
        None,
        "schedule.intervall",
        "unknown key 'intervall' (did you mean 'interval'?)",
    ),
    "invalid-unknown-account-key.yaml": (
        None,
        7,
        "acc-1",
        "imap.pasword",
        "unknown key 'pasword' (did you mean 'password'?)",
    ),
    "invalid-missing-host.yaml": (None, 5, "acc-1", "imap.host", "required field missing"),
    "invalid-missing-id.yaml": (None, 5, None, "accounts[1].id", "required field missing"),
    "invalid-bad-id.yaml": (
        None,
        2,
        None,
        "accounts[0].id",
        "expected 1-128 characters of A-Z a-z 0-9 . _ : -, got 'acc 1'",
    ),
    "invalid-port.yaml": (
        None,
        6,
        "acc-1",
        "imap.port",
        "expected an integer from 1 to 65535, got 'abc'",
    ),
    "invalid-duration.yaml": (
        None,
        2,
        None,
        "schedule.interval",
        "expected a duration such as 90s, 5m, 1h or 1d (or a number of seconds), got '5 minutes'",
    ),
    "invalid-duplicate-id.yaml": (
        None,
        8,
        "acc-1",
        "id",
        "duplicate account id (first defined at line 2)",
    ),
    "invalid-env-unset.yaml": (
        None,
        7,
        "acc-1",
        "imap.password",
        "environment variable SYNCWATCH_TEST_UNSET is not set",
    ),
    "invalid-inventory-token.yaml": (
        None,
        4,
        None,
        "inventory.http.token",
        "environment variable SYNCWATCH_TEST_UNSET is not set",
    ),
    "invalid-secret-file.yaml": (
        None,
        7,
        "acc-1",
        "smtp.password",
        f"cannot read secret file {MISSING}: No such file or directory",
    ),
    "invalid-number-password.yaml": (
        None,
        4,
        "acc-1",
        "imap.password",
        "expected a string, {env: NAME} or {file: PATH} (quote numbers), got an integer",
    ),
    "invalid-xoauth2-no-oauth2.yaml": (
        None,
        8,
        "gmail-1",
        "imap.auth",
        "auth xoauth2 needs an oauth2 block (token_url, client_id, refresh_token) in this account",
    ),
    "invalid-password-missing.yaml": (
        None,
        5,
        "acc-1",
        "smtp.password",
        "required with auth: password",
    ),
    "invalid-oauth2-unused.yaml": (
        None,
        5,
        "gmail-1",
        "imap.password",
        "required with auth: password (or set auth: xoauth2 to use the oauth2 block)",
    ),
    "invalid-password-with-xoauth2.yaml": (
        None,
        8,
        "gmail-1",
        "imap.password",
        "not allowed with auth: xoauth2 (the token comes from oauth2)",
    ),
    "invalid-security.yaml": (
        None,
        6,
        "acc-1",
        "imap.security",
        "expected one of tls, starttls, plain, got 'ssl'",
    ),
    "invalid-url.yaml": (
        None,
        5,
        "acc-1",
        "caldav.url",
        "expected an https:// or http:// URL with a host, got 'dav.example.com/calendars/one'",
    ),
    "invalid-no-service.yaml": (
        None,
        2,
        "acc-1",
        "",
        "needs at least one of imap, smtp, caldav",
    ),
    "invalid-accounts-and-file.yaml": (
        None,
        2,
        None,
        "accounts",
        "accounts and accounts_file are both given; use only one",
    ),
    "invalid-no-accounts.yaml": (
        None,
        None,
        None,
        "accounts",
        "no accounts: give accounts, accounts_file or inventory",
    ),
    "invalid-accounts-file.yaml": (
        "accounts-broken.yaml",
        8,
        "acc-7",
        "smtp.tls_verify",
        "expected true or false, got 'yes'",
    ),
    "invalid-owner-disagrees.yaml": (
        None,
        5,
        "acc-1",
        "owner.email",
        "'other@example.com' disagrees with owners.u-1.email 'one@example.com'",
    ),
    "invalid-owner-unknown.yaml": (
        None,
        5,
        "acc-1",
        "owner",
        "owner u-2 has no email: write owner: {id, email} or set owners.u-2.email",
    ),
    "invalid-owner-inconsistent.yaml": (
        None,
        7,
        "acc-2",
        "owner",
        "owner u-1 differs from account acc-1 at line 2 ('uno@example.com' vs 'one@example.com'); "
        "list it once under owners:",
    ),
    "invalid-transient-after.yaml": (
        None,
        4,
        None,
        "notify.transient_after",
        "must be at least schedule.transient_grace (2h), got 30m",
    ),
    "invalid-breaker.yaml": (
        None,
        2,
        None,
        "schedule.breaker_max",
        "must be at least schedule.breaker_min (2d), got 1d",
    ),
    "invalid-apprise-email.yaml": (
        None,
        2,
        None,
        "notify.email",
        "not a valid Apprise URL (scheme 'bogus')",
    ),
    "invalid-apprise-sre.yaml": (None, 4, None, "notify.sre[1]", "not a valid Apprise URL"),
    "invalid-apprise-owner.yaml": (
        None,
        4,
        None,
        "owners.u-1.notify_urls[0]",
        "not a valid Apprise URL (scheme 'http')",
    ),
    "invalid-per-account.yaml": (
        None,
        2,
        None,
        "metrics.per_account",
        "expected one of all, failing, none, got 'some'",
    ),
    "invalid-placeholder.yaml": (
        None,
        2,
        None,
        "portal.reconnect_url",
        "unknown placeholder {user_id}; allowed: {account_id}, {owner_id}",
    ),
    "invalid-listen.yaml": (
        None,
        2,
        None,
        "http.listen",
        "expected HOST:PORT such as 127.0.0.1:9477, got 9477",
    ),
}


def test_every_invalid_file_has_an_expected_error() -> None:
    assert sorted(p.name for p in DATA_ABS.glob("invalid-*.yaml")) == sorted(INVALID)


@pytest.mark.parametrize("name", sorted(INVALID))
def test_invalid_config_fails_with_exact_error(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    with_cwd_root(monkeypatch)
    file, line, account, field, message = INVALID[name]
    with pytest.raises(ConfigError) as info:
        load_config(DATA / name, environ={"SOME_VAR": "some-secret-value"})
    e = info.value
    expected_file = str(DATA / (file or name))
    assert (e.file, e.line, e.account, e.field, e.message) == (
        expected_file,
        line,
        account,
        field,
        message,
    )
    where = expected_file if line is None else f"{expected_file}:{line}"
    parts = [where] + ([f"account {account}"] if account else []) + ([field] if field else [])
    assert str(e) == ": ".join([*parts, message])
    assert "\n" not in str(e)
    assert "some-secret-value" not in str(e)
    assert "pw-literal-1" not in str(e)


def test_unreadable_config_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(tmp_path / "nope.yaml")
    assert str(info.value) == f"{tmp_path / 'nope.yaml'}: cannot read: No such file or directory"


# ---------------------------------------------------------------- secrets


ACCOUNT = """
accounts:
  - id: acc-1
    owner: {{id: u-1, email: one@example.com}}
    imap:
      host: imap.example.com
      username: one@example.com
      password: {password}
"""


def write(tmp_path: Path, text: str, name: str = "agent.yaml") -> Path:
    p = tmp_path / name
    p.write_text(text)
    return p


def test_secret_from_env(tmp_path: Path) -> None:
    p = write(tmp_path, ACCOUNT.format(password="{env: IMAP_PW}"))
    config = load_config(p, environ={"IMAP_PW": "env-secret-value"})
    imap = config.accounts[0].imap
    assert imap is not None and imap.password == Secret("env-secret-value")


def test_secret_from_file_relative_to_config_folder(tmp_path: Path) -> None:
    (tmp_path / "pw").mkdir()
    (tmp_path / "pw/imap").write_text("file-secret-value\r\n")
    p = write(tmp_path, ACCOUNT.format(password="{file: pw/imap}"))
    imap = load_config(p, environ={}).accounts[0].imap
    assert imap is not None and imap.password == Secret("file-secret-value")


@pytest.mark.parametrize(
    ("password", "environ", "message"),
    [
        ("{env: EMPTY}", {"EMPTY": ""}, "environment variable EMPTY is empty"),
        ('""', {}, "must not be empty"),
        (
            "{env: A, file: b}",
            {},
            "expected a string, {env: NAME} or {file: PATH}, got a mapping with keys env, file",
        ),
        ("[1, 2]", {}, "expected a string, {env: NAME} or {file: PATH}, got a list"),
    ],
)
def test_bad_secret_forms(
    tmp_path: Path, password: str, environ: dict[str, str], message: str
) -> None:
    p = write(tmp_path, ACCOUNT.format(password=password))
    with pytest.raises(ConfigError) as info:
        load_config(p, environ=environ)
    assert info.value.message == message
    assert info.value.field == "imap.password"


def test_empty_secret_file(tmp_path: Path) -> None:
    (tmp_path / "empty").write_text("\n")
    p = write(tmp_path, ACCOUNT.format(password="{file: empty}"))
    with pytest.raises(ConfigError) as info:
        load_config(p, environ={})
    assert info.value.message == f"secret file {tmp_path / 'empty'} is empty"


SECRET = "Tr0ub4dor-and-3"


@pytest.mark.parametrize(
    "text",
    [
        # a literal password where it is not allowed
        ACCOUNT.format(password=SECRET).replace("username:", "auth: xoauth2\n      username:"),
        # a secret next to the wrong key
        ACCOUNT.format(password=f"{{env: X, value: {SECRET}}}"),
        # a secret in an invalid Apprise URL
        ACCOUNT.format(password="x") + f'notify:\n  email: "bogus://u:{SECRET}@relay"\n',
        # a secret in the userinfo of a bad URL
        ACCOUNT.format(password="x")
        .replace(
            "imap:", "caldav:\n      url: ftp://u:" + SECRET + "@dav.example.com/\n    imap:", 1
        )
        .replace("caldav:\n      url", "caldav:\n      username: u\n      url"),
        # a secret as the duplicate of a key
        ACCOUNT.format(password=SECRET) + f"      password: {SECRET}\n",
        # a secret in a mistyped key's value
        ACCOUNT.format(password="x") + f"      pasword: {SECRET}\n",
    ],
)
def test_secret_never_in_error(tmp_path: Path, text: str) -> None:
    p = write(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        load_config(p, environ={"X": SECRET})
    assert SECRET not in str(info.value)
    assert SECRET not in repr(info.value)
    assert SECRET not in info.value.message


def test_secret_never_in_repr_of_config(config_copy: Path) -> None:
    config = load_config(config_copy / "examples/accounts-file.yaml", environ=EXAMPLE_ENV)
    text = repr(config) + str(config)
    secrets = [v for k, v in EXAMPLE_ENV.items() if k != "SYNCWATCH_NOTIFY_URL"]
    for value in [*secrets, *SECRET_FILES.values()]:
        assert value not in text
    assert "Secret(<redacted>)" in text


# ---------------------------------------------------------------- defaults and rules


def test_ports_default_by_security(tmp_path: Path) -> None:
    text = """
accounts:
  - id: a
    owner: {id: o, email: o@example.com}
    imap: {host: h, username: u, password: p, security: starttls}
    smtp: {host: h, username: u, password: p, security: plain}
  - id: b
    owner: {id: o, email: o@example.com}
    imap: {host: h, username: u, password: p}
    smtp: {host: h, username: u, password: p}
"""
    a, b = load_config(write(tmp_path, text), environ={}).accounts
    assert a.imap and a.smtp and b.imap and b.smtp
    assert (a.imap.port, a.smtp.port, b.imap.port, b.smtp.port) == (143, 25, 993, 465)
    assert b.imap.security is Security.TLS and b.imap.tls.verify is True
    assert b.imap.timeout == 20.0
    assert a.address == "" and a.provider == "generic"


def test_null_means_default(tmp_path: Path) -> None:
    text = "schedule: {interval: null}\napi: {listen: null}\n" + ACCOUNT.format(password="p")
    config = load_config(write(tmp_path, text), environ={})
    assert config.schedule.interval == 300 and config.api.listen is None


def test_accounts_file_as_mapping_and_owner_by_id(tmp_path: Path) -> None:
    write(
        tmp_path, "owners:\n  u-1: {email: one@example.com, name: One}\naccounts_file: acc.yaml\n"
    )
    write(
        tmp_path,
        "accounts:\n  - id: a1\n    owner: u-1\n"
        "    smtp: {host: smtp.example.com, username: u, password: p}\n",
        "acc.yaml",
    )
    config = load_config(tmp_path / "agent.yaml", environ={})
    assert config.accounts[0].owner.name == "One"
    assert config.owners["u-1"].email == "one@example.com"


# ---------------------------------------------------------------- inventory records


def test_parse_account_from_json_names_source_and_account() -> None:
    data = {
        "id": "acc-77",
        "version": "v3",
        "owner": {"id": "u-1", "email": "one@example.com"},
        "imap": {
            "host": "imap.example.com",
            "username": "one@example.com",
            "port": 0,
            "password": "json-secret",
        },
    }
    with pytest.raises(ConfigError) as info:
        parse_account(
            data,
            source="https://crm.example.com/accounts",
            base_dir=Path("."),
            owners={},
            environ={},
        )
    assert str(info.value) == (
        "https://crm.example.com/accounts: account acc-77: imap.port: "
        "expected an integer from 1 to 65535, got 0"
    )
    data["imap"]["port"] = 993  # type: ignore[index]
    acc = parse_account(data, source="inv", base_dir=Path("."), owners={}, environ={})
    assert acc.version == "v3" and acc.imap is not None
    assert acc.imap.password == Secret("json-secret")


def test_parse_account_uses_owner_table() -> None:
    owners = {"u-1": OwnerSettings(email="one@example.com", name="One")}
    acc = parse_account(
        {
            "id": 5,
            "owner": "u-1",
            "caldav": {"url": "https://dav.example.com/", "username": "x", "password": "p"},
        },
        source="inv",
        base_dir=Path("."),
        owners=owners,
        environ={},
    )
    assert acc.id == "5" and acc.owner.email == "one@example.com"


def test_parse_account_can_refuse_secret_references(tmp_path: Path) -> None:
    data = {
        "id": "a",
        "owner": {"id": "o", "email": "o@example.com"},
        "imap": {"host": "h", "username": "u", "password": {"file": "/etc/passwd"}},
    }
    with pytest.raises(ConfigError) as info:
        parse_account(
            data, source="inv", base_dir=tmp_path, owners={}, environ={}, secret_refs=False
        )
    assert info.value.message == "{file: ...} is not allowed here; give the value itself"


# ---------------------------------------------------------------- durations


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("90s", 90),
        ("5m", 300),
        ("1h", 3600),
        ("1d", 86400),
        ("1w", 604800),
        ("1h30m", 5400),
        ("250ms", 0.25),
        (45, 45),
        (1.5, 1.5),
        ("30", 30),
        ("0s", 0),
    ],
)
def test_parse_duration(text: object, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "5 minutes", "-1s", "1y", True, None, [], "s", "1.s", -3])
def test_parse_duration_rejects(text: object) -> None:
    with pytest.raises(ValueError):
        parse_duration(text)


@pytest.mark.parametrize(
    ("seconds", "text"), [(86400, "1d"), (5400, "1h30m"), (1.5, "1.5s"), (0, "0s"), (90, "1m30s")]
)
def test_format_duration(seconds: float, text: str) -> None:
    assert format_duration(seconds) == text
