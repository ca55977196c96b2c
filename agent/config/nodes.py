"""A parsed document that remembers line numbers, and the typed readers the loader uses.

YAML is composed (not loaded) so every value keeps the line it came from; JSON from the HTTP
inventory is wrapped the same way without lines. Readers validate as they convert and raise
ConfigError naming the file, line, account and dotted field. A secret's value never goes
into a message.
"""

from __future__ import annotations

import difflib
import os
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from enum import StrEnum
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit, urlunsplit

import yaml

from agent.config.durations import parse_duration
from agent.config.errors import ConfigError
from agent.secret import Secret

T = TypeVar("T")
E = TypeVar("E", bound=StrEnum)
Reader = Callable[["Ctx", "Node", str], T]


@dataclass
class Node:
    """A value with its line (1-based; None for JSON). Mappings hold Nodes by key, lists
    hold Nodes; `keys` has the line of each mapping key."""

    value: Any
    line: int | None = None
    keys: dict[str, int | None] = field(default_factory=dict)


@dataclass(frozen=True)
class Ctx:
    """Where we are: the file (or inventory source), its folder, the account being read."""

    file: str
    base_dir: Path
    environ: Mapping[str, str]
    account: str | None = None
    secret_refs: bool = True  # allow {env: ...} and {file: ...} secrets
    read: list[Path] = field(default_factory=list)  # secret files read (shared by copies)

    def error(self, where: Node | int | None, path: str, message: str) -> ConfigError:
        line = where.line if isinstance(where, Node) else where
        return ConfigError(message, file=self.file, line=line, account=self.account, field=path)

    def for_account(self, account_id: str) -> Ctx:
        return replace(self, account=account_id)


# ---------------------------------------------------------------- building the tree


# libyaml when PyYAML was built with it (2-3x faster on a large accounts file); the nodes
# and their marks are the same.
_LOADER: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def compose_yaml(text: str, file: str) -> Node | None:
    """Parse YAML text into Nodes; a syntax error becomes a ConfigError with its line."""
    try:
        try:
            root = yaml.compose(text, Loader=_LOADER)
        except yaml.YAMLError:
            # libyaml says less: let the pure-Python parser explain the error
            root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        line = mark.line + 1 if mark is not None else None
        what = e.problem or e.context or "invalid YAML"
        if "block" in what or "indent" in what:
            what += " (check the indentation)"
        raise ConfigError(f"invalid YAML: {what}", file=file, line=line) from None
    except yaml.YAMLError as e:
        raise ConfigError(f"invalid YAML: {e}", file=file) from None
    if root is None:
        return None
    return _from_yaml(root, file, yaml.constructor.SafeConstructor(), set())


_STR = "tag:yaml.org,2002:str"


def _from_yaml(
    node: yaml.Node, file: str, cons: yaml.constructor.SafeConstructor, stack: set[int]
) -> Node:
    line = node.start_mark.line + 1
    if id(node) in stack:
        raise ConfigError("invalid YAML: recursive alias", file=file, line=line)
    if isinstance(node, yaml.MappingNode):
        stack.add(id(node))
        explicit: dict[str, int] = {}
        for k, _ in node.value:
            kline = k.start_mark.line + 1
            if not isinstance(k, yaml.ScalarNode):
                raise ConfigError(
                    "invalid YAML: a key must be a plain value", file=file, line=kline
                )
            if k.tag == "tag:yaml.org,2002:merge":
                continue
            key = str(k.value)
            if key in explicit:
                raise ConfigError(
                    f"duplicate key {key!r} (first at line {explicit[key]})", file=file, line=kline
                )
            explicit[key] = kline
        cons.flatten_mapping(node)  # `<<: *anchor` merges: merged pairs first, own keys win
        items: dict[str, Node] = {}
        keys: dict[str, int | None] = {}
        for k, v in node.value:
            key = str(k.value)
            keys[key] = explicit.get(key, k.start_mark.line + 1)
            items[key] = _from_yaml(v, file, cons, stack)
        stack.discard(id(node))
        return Node(items, line, keys)
    if isinstance(node, yaml.SequenceNode):
        stack.add(id(node))
        out = Node([_from_yaml(v, file, cons, stack) for v in node.value], line)
        stack.discard(id(node))
        return out
    if node.tag == _STR:
        return Node(node.value, line)  # most scalars: no constructor needed
    try:
        value = cons.construct_object(node, deep=True)
    except yaml.YAMLError as e:
        raise ConfigError(
            f"invalid YAML: {getattr(e, 'problem', e)}", file=file, line=line
        ) from None
    return Node(value, line)


def wrap(data: Any) -> Node:
    """Nodes (without lines) for plain data such as decoded JSON."""
    if isinstance(data, Mapping):
        items = {str(k): wrap(v) for k, v in data.items()}
        return Node(items, None, dict.fromkeys(items))
    if isinstance(data, list | tuple):
        return Node([wrap(v) for v in data], None)
    return Node(data, None)


# ---------------------------------------------------------------- describing values


def describe(value: Any) -> str:
    """A short, safe rendering of a (non-secret) value for an error message."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    if isinstance(value, str):
        text = value if len(value) <= 80 else value[:77] + "..."
        return repr(text)
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    return f"a {type(value).__name__}"


def kind(value: Any) -> str:
    """What a value is, without showing it (for secrets)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int):
        return "an integer"
    if isinstance(value, float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    return f"a {type(value).__name__}"


def join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


# ---------------------------------------------------------------- mappings


class Section:
    """A mapping at `path`: rejects unknown keys up front, then reads typed fields."""

    def __init__(self, ctx: Ctx, node: Node | None, path: str, known: Iterable[str]) -> None:
        self.ctx = ctx
        self.path = path
        self.line = node.line if node is not None else None
        if node is None or node.value is None:
            self.items: dict[str, Node] = {}
            self.keys: dict[str, int | None] = {}
            return
        if not isinstance(node.value, dict):
            raise ctx.error(node, path, f"expected a mapping, got {describe(node.value)}")
        self.items = node.value
        self.keys = node.keys
        allowed = sorted(known)
        for key in self.items:
            if key not in allowed:
                hint = difflib.get_close_matches(key, allowed, n=1, cutoff=0.6)
                msg = f"unknown key {key!r}"
                msg += (
                    f" (did you mean {hint[0]!r}?)"
                    if hint
                    else f"; known keys: {', '.join(allowed)}"
                )
                raise ctx.error(node.keys.get(key, node.line), join(path, key), msg)

    def field(self, key: str) -> str:
        return join(self.path, key)

    def node(self, key: str) -> Node | None:
        """The value at key, or None when absent or null (null means: use the default)."""
        n = self.items.get(key)
        return None if n is None or n.value is None else n

    def has(self, key: str) -> bool:
        return self.node(key) is not None

    def req(self, key: str, conv: Callable[[Ctx, Node, str], T]) -> T:
        n = self.node(key)
        if n is None:
            raise self.missing(key)
        return conv(self.ctx, n, self.field(key))

    def opt(self, key: str, conv: Callable[[Ctx, Node, str], T], default: T) -> T:
        n = self.node(key)
        return default if n is None else conv(self.ctx, n, self.field(key))

    def missing(self, key: str, message: str = "required field missing") -> ConfigError:
        where = self.items.get(key, self.line)
        return self.ctx.error(where, self.field(key), message)


# ---------------------------------------------------------------- scalar readers


def string(ctx: Ctx, node: Node, path: str) -> str:
    if not isinstance(node.value, str) or not node.value.strip():
        raise ctx.error(node, path, f"expected a non-empty string, got {describe(node.value)}")
    return node.value


def ident(ctx: Ctx, node: Node, path: str) -> str:
    """An account or owner id: [A-Za-z0-9._:-]{1,128}; integers (from JSON) are accepted."""
    value = node.value
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        value = str(value)
    if not isinstance(value, str) or not _IDENT.fullmatch(value):
        raise ctx.error(
            node, path, f"expected 1-128 characters of A-Z a-z 0-9 . _ : -, got {describe(value)}"
        )
    return value


_IDENT = re.compile(r"[A-Za-z0-9._:-]{1,128}")
_EMAIL = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s]+")
_HOST = re.compile(r"[A-Za-z0-9_]([A-Za-z0-9_.-]{0,251}[A-Za-z0-9_])?|[0-9A-Fa-f:.]+")


def email(ctx: Ctx, node: Node, path: str) -> str:
    if not isinstance(node.value, str) or not _EMAIL.fullmatch(node.value):
        raise ctx.error(node, path, f"expected an email address, got {describe(node.value)}")
    return node.value


def host(ctx: Ctx, node: Node, path: str) -> str:
    v = node.value
    if not isinstance(v, str) or not _HOST.fullmatch(v):
        raise ctx.error(node, path, f"expected a host name or IP address, got {describe(v)}")
    return v


def boolean(ctx: Ctx, node: Node, path: str) -> bool:
    if not isinstance(node.value, bool):
        raise ctx.error(node, path, f"expected true or false, got {describe(node.value)}")
    return node.value


def integer(lo: int, hi: int | None = None) -> Callable[[Ctx, Node, str], int]:
    def read(ctx: Ctx, node: Node, path: str) -> int:
        v = node.value
        ok = isinstance(v, int) and not isinstance(v, bool) and v >= lo and (hi is None or v <= hi)
        if not ok:
            want = f"from {lo} to {hi}" if hi is not None else f"of at least {lo}"
            raise ctx.error(node, path, f"expected an integer {want}, got {describe(v)}")
        return int(v)

    return read


def number(lo: float, hi: float, *, lo_open: bool = False) -> Callable[[Ctx, Node, str], float]:
    def read(ctx: Ctx, node: Node, path: str) -> float:
        v = node.value
        ok = isinstance(v, int | float) and not isinstance(v, bool)
        ok = ok and (v > lo if lo_open else v >= lo) and v <= hi
        if not ok:
            low = f"above {lo:g}" if lo_open else f"from {lo:g}"
            raise ctx.error(node, path, f"expected a number {low} to {hi:g}, got {describe(v)}")
        return float(v)

    return read


def duration(*, positive: bool = True) -> Callable[[Ctx, Node, str], float]:
    def read(ctx: Ctx, node: Node, path: str) -> float:
        try:
            seconds = parse_duration(node.value)
        except ValueError:
            seconds = -1.0
        if seconds < 0 or (positive and seconds == 0):
            raise ctx.error(
                node,
                path,
                "expected a duration such as 90s, 5m, 1h or 1d (or a number of seconds), "
                f"got {describe(node.value)}",
            )
        return seconds

    return read


def enum(cls: type[E]) -> Callable[[Ctx, Node, str], E]:
    def read(ctx: Ctx, node: Node, path: str) -> E:
        try:
            return cls(node.value)
        except ValueError:
            allowed = ", ".join(m.value for m in cls)
            raise ctx.error(
                node, path, f"expected one of {allowed}, got {describe(node.value)}"
            ) from None

    return read


def choice(*allowed: str) -> Callable[[Ctx, Node, str], str]:
    def read(ctx: Ctx, node: Node, path: str) -> str:
        if node.value not in allowed:
            raise ctx.error(
                node, path, f"expected one of {', '.join(allowed)}, got {describe(node.value)}"
            )
        return str(node.value)

    return read


def safe_url(url: str) -> str:
    """The URL without user:password@ (for messages)."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<unparsable>"
    if parts.username is None and parts.password is None:
        return url
    hostport = parts.netloc.rpartition("@")[2]
    return urlunsplit((parts.scheme, "<redacted>@" + hostport, parts.path, "", ""))


def url(*schemes: str) -> Callable[[Ctx, Node, str], str]:
    want = schemes or ("https", "http")

    def read(ctx: Ctx, node: Node, path: str) -> str:
        v = node.value
        ok = isinstance(v, str) and not any(c.isspace() for c in v)
        if ok:
            try:
                parts = urlsplit(v)
                ok = parts.scheme in want and bool(parts.hostname)
                _ = parts.port  # raises ValueError on a bad port
            except ValueError:
                ok = False
        if not ok:
            shown = describe(safe_url(v)) if isinstance(v, str) else describe(v)
            scheme = " or ".join(f"{s}://" for s in want)
            raise ctx.error(node, path, f"expected an {scheme} URL with a host, got {shown}")
        return str(v)

    return read


def listen_address(ctx: Ctx, node: Node, path: str) -> str:
    v = node.value
    m = (
        re.fullmatch(r"(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9_.-]*):(\d{1,5})", v)
        if isinstance(v, str)
        else None
    )
    if m is None or not 0 < int(m.group(2)) < 65536:
        raise ctx.error(node, path, f"expected HOST:PORT such as 127.0.0.1:9477, got {describe(v)}")
    return str(v)


def string_list(ctx: Ctx, node: Node, path: str) -> tuple[str, ...]:
    return list_of(string)(ctx, node, path)


def list_of(conv: Callable[[Ctx, Node, str], T]) -> Callable[[Ctx, Node, str], tuple[T, ...]]:
    def read(ctx: Ctx, node: Node, path: str) -> tuple[T, ...]:
        if not isinstance(node.value, list):
            raise ctx.error(node, path, f"expected a list, got {describe(node.value)}")
        return tuple(conv(ctx, item, f"{path}[{i}]") for i, item in enumerate(node.value))

    return read


# ---------------------------------------------------------------- paths and secrets


def path_value(ctx: Ctx, node: Node, path: str) -> Path:
    """A path; relative ones are relative to the folder of the file that names them."""
    v = node.value
    if not isinstance(v, str) or not v.strip():
        raise ctx.error(node, path, f"expected a file path, got {describe(v)}")
    return Path(os.path.normpath(ctx.base_dir / Path(v).expanduser()))


def readable_file(ctx: Ctx, node: Node, path: str) -> Path:
    p = path_value(ctx, node, path)
    try:
        with p.open("rb"):
            pass
    except OSError as e:
        raise ctx.error(node, path, f"cannot read {p}: {e.strerror or e}") from None
    return p


def directory(ctx: Ctx, node: Node, path: str) -> Path:
    p = path_value(ctx, node, path)
    if not p.is_dir():
        raise ctx.error(node, path, f"not a directory: {p}")
    return p


_SECRET_FORMS = "a string, {env: NAME} or {file: PATH}"  # noqa: S105


def secret(ctx: Ctx, node: Node, path: str) -> Secret:
    """A literal, `{env: NAME}` or `{file: PATH}` (content minus its trailing newline)."""
    v = node.value
    if isinstance(v, str):
        if not v:
            raise ctx.error(node, path, "must not be empty")
        return Secret(v)
    if not isinstance(v, dict) or set(v) not in ({"env"}, {"file"}):
        got = kind(v)
        if isinstance(v, dict):
            got = "a mapping with keys " + ", ".join(sorted(v))
        hint = " (quote numbers)" if isinstance(v, int | float) and not isinstance(v, bool) else ""
        raise ctx.error(node, path, f"expected {_SECRET_FORMS}{hint}, got {got}")
    ((form, ref),) = v.items()
    if not ctx.secret_refs:
        raise ctx.error(node, path, f"{{{form}: ...}} is not allowed here; give the value itself")
    name = string(ctx, ref, join(path, form))
    if form == "env":
        if name not in ctx.environ:
            raise ctx.error(ref, path, f"environment variable {name} is not set")
        value = ctx.environ[name]
        if not value:
            raise ctx.error(ref, path, f"environment variable {name} is empty")
        return Secret(value)
    p = Path(os.path.normpath(ctx.base_dir / Path(name).expanduser()))
    try:
        value = p.read_text(encoding="utf-8")
    except OSError as e:
        raise ctx.error(ref, path, f"cannot read secret file {p}: {e.strerror or e}") from None
    except UnicodeDecodeError:
        raise ctx.error(ref, path, f"secret file {p} is not UTF-8 text") from None
    ctx.read.append(p)
    if value.endswith("\n"):
        value = value[:-1]
        if value.endswith("\r"):
            value = value[:-1]
    if not value:
        raise ctx.error(ref, path, f"secret file {p} is empty")
    return Secret(value)
