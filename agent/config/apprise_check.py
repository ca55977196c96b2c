"""Is a string an Apprise URL Apprise can use? Apprise is imported only when asked."""

from __future__ import annotations

import contextlib
import logging
import warnings
from collections.abc import Iterator
from functools import lru_cache

from agent.config.nodes import Ctx, Node, describe, secret


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """Apprise logs rejected URLs (which may hold a password): keep it silent meanwhile."""
    log = logging.getLogger("apprise")
    was = log.disabled
    log.disabled = True
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*imghdr.*", category=DeprecationWarning)
            yield
    finally:
        log.disabled = was


@lru_cache(maxsize=1024)
def is_valid(url: str) -> bool:
    with _quiet():
        import apprise

        return bool(apprise.Apprise().add(url))


def apprise_url(ctx: Ctx, node: Node, path: str) -> str:
    """An Apprise URL, given as is or (when it holds a password) as {env: ...} / {file: ...}."""
    v = node.value
    if isinstance(v, dict):
        v = secret(ctx, node, path).reveal()
    if not isinstance(v, str) or not v.strip():
        raise ctx.error(node, path, f"expected an Apprise URL, got {describe(v)}")
    if not is_valid(v):
        scheme = v.partition("://")[0] if "://" in v else ""
        what = f" (scheme {scheme!r})" if scheme and scheme.isascii() and scheme.isalnum() else ""
        raise ctx.error(node, path, f"not a valid Apprise URL{what}")
    return v
