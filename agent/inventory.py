"""Where the accounts come from, behind one interface.

- YamlInventory: the config file's `accounts:` or `accounts_file:` (default; demo and tests).
- HttpInventory: the portal serves its connected accounts as JSON, each with a `version`;
  polled with ETag, and one account re-fetched on demand (recheck after a reconnect).

Portal JSON: `GET url` -> `{"accounts": [ACCOUNT, ...]}`; `GET url/{id}` -> `ACCOUNT` or 404,
where ACCOUNT has the same keys as an account in the YAML config plus `version`.
"""

from __future__ import annotations

import asyncio
import json
import logging
import ssl
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import quote

import aiohttp

from agent.config.load import ConfigError, load_config, parse_account
from agent.config.types import Account, Config, OwnerSettings
from agent.config.types import HttpInventory as HttpInventorySettings
from agent.probes.tls import client_context

log = logging.getLogger(__name__)

MAX_INVENTORY_BYTES = 512 * 1024 * 1024


class InventoryError(Exception):
    """The inventory could not be read; the previous accounts stay in force."""


class Inventory(Protocol):
    async def load(self) -> list[Account] | None:
        """All accounts, or None when nothing changed since the last load (ETag)."""
        ...

    async def fetch(self, account_id: str) -> Account | None:
        """One account, fresh from the source; None when it no longer exists."""
        ...

    async def close(self) -> None: ...


class YamlInventory:
    """Accounts from the config file (inline or accounts_file). A recheck after an edit of
    the file, or of a secret file it names, sees the new credentials; while none of those
    files changed, the parsed accounts are reused (a large file takes seconds to parse)."""

    def __init__(self, config_path: Path, environ: Mapping[str, str] | None = None) -> None:
        self._path = config_path
        self._environ = environ
        self._sources: tuple[Path, ...] = (config_path,)
        self._cache: tuple[tuple[object, ...], list[Account]] | None = None

    async def load(self) -> list[Account] | None:
        before = _stamp(self._sources)  # stamped before reading: an edit meanwhile shows
        if self._cache is not None and self._cache[0] == before:
            return list(self._cache[1])
        try:
            config = await asyncio.to_thread(load_config, self._path, environ=self._environ)
        except ConfigError as e:
            raise InventoryError(str(e)) from None
        sources = config.sources or (self._path,)
        if sources == self._sources:
            self._cache = (before, list(config.accounts))
        else:  # other files than last time: learn them now, cache from the next read on
            self._sources, self._cache = sources, None
        return list(config.accounts)

    async def fetch(self, account_id: str) -> Account | None:
        accounts = await self.load() or []
        return next((a for a in accounts if a.id == account_id), None)

    async def close(self) -> None:
        return None


def _stamp(files: tuple[Path, ...]) -> tuple[object, ...]:
    out: list[object] = []
    for f in files:
        try:
            st = f.stat()
            out.append((st.st_mtime_ns, st.st_size, st.st_ino))
        except OSError:
            out.append(None)
    return tuple(out)


class HttpInventory:
    def __init__(
        self,
        settings: HttpInventorySettings,
        *,
        base_dir: Path,
        owners: Mapping[str, OwnerSettings],
        environ: Mapping[str, str] | None = None,
        timeout: float = 30.0,
    ) -> None:
        self._settings = settings
        self._base_dir = base_dir
        self._owners = owners
        self._environ = environ
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._etag: str | None = None
        self._session: aiohttp.ClientSession | None = None

    def _headers(self) -> dict[str, str]:
        h = {"Accept": "application/json"}
        if self._settings.token is not None:
            h["Authorization"] = f"Bearer {self._settings.token.reveal()}"
        return h

    def _ssl(self) -> ssl.SSLContext | bool:
        return client_context(self._settings.tls)

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                timeout=self._timeout, connector=aiohttp.TCPConnector(ssl=self._ssl())
            )
        return self._session

    async def _get(self, url: str, etag: str | None) -> tuple[int, Any, str | None]:
        headers = self._headers()
        if etag:
            headers["If-None-Match"] = etag
        try:
            async with self._client().get(url, headers=headers, allow_redirects=False) as r:
                if r.status == 304:
                    return 304, None, etag
                if r.status == 404:
                    return 404, None, None
                if r.status != 200:
                    raise InventoryError(f"inventory {url}: HTTP {r.status}")
                body = await r.content.read(MAX_INVENTORY_BYTES + 1)
                if len(body) > MAX_INVENTORY_BYTES:
                    raise InventoryError(f"inventory {url}: response too large")
                return 200, json.loads(body), r.headers.get("ETag")
        except (aiohttp.ClientError, TimeoutError, json.JSONDecodeError) as e:
            raise InventoryError(f"inventory {url}: {type(e).__name__}: {e}") from None

    def _parse(self, data: Any, source: str) -> Account:
        if not isinstance(data, dict):
            raise InventoryError(f"{source}: an account must be an object")
        try:
            return parse_account(
                data,
                source=source,
                base_dir=self._base_dir,
                owners=self._owners,
                environ=self._environ,
                secret_refs=False,  # portal data must not make us read local files or env
            )
        except ConfigError as e:
            raise InventoryError(str(e)) from None

    async def load(self) -> list[Account] | None:
        status, data, etag = await self._get(self._settings.url, self._etag)
        if status == 304:
            return None
        if status == 404 or not isinstance(data, dict) or "accounts" not in data:
            raise InventoryError(f"inventory {self._settings.url}: expected {{'accounts': [...]}}")
        accounts: list[Account] = []
        bad = 0
        for i, item in enumerate(data["accounts"]):
            try:
                accounts.append(self._parse(item, f"{self._settings.url} accounts[{i}]"))
            except InventoryError as e:
                bad += 1
                log.warning("inventory account skipped: %s", e)
        self._etag = etag
        if bad:
            log.warning("inventory: %d accounts skipped as invalid", bad)
        return accounts

    async def fetch(self, account_id: str) -> Account | None:
        url = self._settings.url.rstrip("/") + "/" + quote(account_id, safe="")
        status, data, _ = await self._get(url, None)
        if status == 404:
            return None
        return self._parse(data, url)

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()


def inventory_for(config: Config, environ: Mapping[str, str] | None = None) -> Inventory:
    if config.inventory_http is not None:
        return HttpInventory(
            config.inventory_http,
            base_dir=config.path.parent,
            owners=config.owners,
            environ=environ,
        )
    return YamlInventory(config.path, environ)
