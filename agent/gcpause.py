"""Pause the cyclic garbage collector around work that makes hundreds of thousands of
acyclic objects (parsing a large accounts file, rendering /metrics for a large fleet):
the collector would walk them again and again for nothing. Reference counting still frees
everything as usual. Safe to nest and to use from several threads at once."""

from __future__ import annotations

import contextlib
import gc
import threading
from collections.abc import Iterator

_lock = threading.Lock()
_depth = 0
_was_enabled = True


@contextlib.contextmanager
def paused_gc() -> Iterator[None]:
    global _depth, _was_enabled
    with _lock:
        if _depth == 0:
            _was_enabled = gc.isenabled()
            gc.disable()
        _depth += 1
    try:
        yield
    finally:
        with _lock:
            _depth -= 1
            if _depth == 0 and _was_enabled:
                gc.enable()
