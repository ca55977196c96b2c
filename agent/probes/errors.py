"""Turn what a socket, resolver or TLS layer raised into Evidence, the same way for every
probe, so classification sees one vocabulary: refused, reset, unreachable, eof, dns_*,
tls_cert, tls_handshake."""

from __future__ import annotations

import errno
import ssl

from agent.model import Evidence
from agent.net import ResolveError

_UNREACHABLE = {errno.ENETUNREACH, errno.EHOSTUNREACH, errno.ENETDOWN, errno.EHOSTDOWN}


def network_kind(exc: BaseException) -> str | None:
    """The transport-level condition an exception stands for, or None if it is not one."""
    if isinstance(exc, ResolveError):
        return "dns_temporary" if exc.temporary else "dns_nxdomain"
    if isinstance(exc, ssl.SSLCertVerificationError):
        return "tls_cert"
    if isinstance(exc, ssl.SSLError):
        return "tls_handshake"
    if isinstance(exc, ConnectionRefusedError):
        return "refused"
    if isinstance(exc, ConnectionResetError | BrokenPipeError | ConnectionAbortedError):
        return "reset"
    if isinstance(exc, TimeoutError):
        return "timeout"
    if isinstance(exc, EOFError):
        return "eof"
    if isinstance(exc, OSError):
        if exc.errno in _UNREACHABLE:
            return "unreachable"
        if exc.errno == errno.ECONNREFUSED:
            return "refused"
        if exc.errno in (errno.ECONNRESET, errno.EPIPE):
            return "reset"
        if exc.errno == errno.ETIMEDOUT:
            return "timeout"
    return None


def evidence_from_exception(protocol: str, stage: str, exc: BaseException) -> Evidence:
    """Evidence for an exception caught at `stage`. Callers redact nothing here: the
    exception text of a socket or TLS error holds no secret; run_probe redacts anyway."""
    kind = network_kind(exc)
    text = f"{type(exc).__name__}: {exc}"
    if isinstance(exc, ssl.SSLCertVerificationError) and exc.verify_message:
        text = f"certificate verify failed: {exc.verify_message}"
    return Evidence(protocol=protocol, stage=stage, network=kind, exception=text[:500])
