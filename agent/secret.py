"""Secrets that cannot leak by accident, and a redactor for anything a server echoes."""

from __future__ import annotations

import base64
from collections.abc import Iterable

REDACTED = "<redacted>"


class Secret:
    """A credential. Its str/repr never show the value; call `reveal()` where it is sent."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Secret(<redacted>)"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(("Secret", self._value))

    def __bool__(self) -> bool:
        return bool(self._value)


class Redactor:
    """Replaces every known secret (and its common encodings) in text with <redacted>."""

    def __init__(self, secrets: Iterable[str | Secret] = ()) -> None:
        self._needles: set[str] = set()
        for s in secrets:
            self.add(s)

    def add(self, secret: str | Secret | None) -> None:
        if secret is None:
            return
        value = secret.reveal() if isinstance(secret, Secret) else secret
        if len(value) < 3:
            return
        self._needles.add(value)
        raw = value.encode()
        self._needles.add(base64.b64encode(raw).decode())
        # SASL strings embed the secret after other fields; base64 of the secret at each
        # alignment catches most of them, the full SASL blob is added by the probe itself.
        for pad in (b"\0", b"\0\0"):
            enc = base64.b64encode(pad + raw).decode()
            self._needles.add(enc[4:-4] if len(enc) > 12 else enc)

    def __call__(self, text: str) -> str:
        for needle in sorted(self._needles, key=len, reverse=True):
            if needle and needle in text:
                text = text.replace(needle, REDACTED)
        return text
