"""Client TLS contexts, one per set of settings, shared by every probe and client.

Verification is on unless `tls_verify: false` is set for that service; `tls_ca_file`, when
given, is the only trust anchor (instead of the system's). Building a context loads a CA
store (~20 ms of CPU, ten times a TLS handshake), so contexts are cached per settings and
version (mtime, size) of the CA file. An SSLContext is safe to share; callers must not
change the one they get.
"""

from __future__ import annotations

import functools
import os
import ssl
from pathlib import Path

from agent.config.types import TlsSettings


def client_context(tls: TlsSettings) -> ssl.SSLContext:
    stamp: tuple[int, int] | None = None
    if tls.ca_file is not None:
        try:
            st = os.stat(tls.ca_file)
            stamp = (st.st_mtime_ns, st.st_size)
        except OSError:
            stamp = None  # loading it below raises the error, as a probe failure
    return _shared(tls.verify, tls.ca_file, stamp)


@functools.lru_cache(maxsize=64)
def _shared(verify: bool, ca_file: Path | None, stamp: tuple[int, int] | None) -> ssl.SSLContext:
    if not verify:
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        return ctx
    return ssl.create_default_context(cafile=str(ca_file) if ca_file is not None else None)
