"""The one error every config problem becomes: where (file, line, account, field) and what."""

from __future__ import annotations


class ConfigError(Exception):
    """A config file (or inventory record) is wrong. `str()` is one line, never a secret:

    ``config/agent.yaml:14: account acc-1001: imap.port: expected an integer ...``
    """

    def __init__(
        self,
        message: str,
        *,
        file: str,
        line: int | None = None,
        account: str | None = None,
        field: str = "",
    ) -> None:
        self.file = file
        self.line = line
        self.account = account
        self.field = field
        self.message = message
        super().__init__(str(self))

    def __str__(self) -> str:
        parts = [self.file if self.line is None else f"{self.file}:{self.line}"]
        if self.account is not None:
            parts.append(f"account {self.account}")
        if self.field:
            parts.append(self.field)
        parts.append(self.message)
        return ": ".join(parts)

    def __reduce__(self) -> tuple[object, ...]:  # picklable despite keyword-only arguments
        return (_rebuild, (self.message, self.file, self.line, self.account, self.field))


def _rebuild(
    message: str, file: str, line: int | None, account: str | None, field: str
) -> ConfigError:
    return ConfigError(message, file=file, line=line, account=account, field=field)
