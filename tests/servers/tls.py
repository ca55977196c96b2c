"""Certificates for test servers: a private CA, a leaf for localhost/127.0.0.1 signed by it,
and the broken kinds (self-signed, expired, issued for another name). Built from the same
pieces as the demo's PKI (agent/localservers/pki.py)."""

from __future__ import annotations

import datetime as dt
import ssl
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography import x509

from agent.localservers.pki import LOCAL_NAMES, Issuer, issue, new_ca, write_pair


@dataclass(frozen=True)
class CertPair:
    cert: Path
    key: Path

    def server_context(self) -> ssl.SSLContext:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(str(self.cert), str(self.key))
        return ctx


@dataclass(frozen=True)
class TestPKI:
    __test__ = False  # not a test class, whatever pytest thinks of the name

    ca: Path  # the CA certificate clients trust with tls_ca_file
    good: CertPair  # localhost + 127.0.0.1, signed by the CA
    self_signed: CertPair  # localhost, self-signed
    expired: CertPair  # localhost, signed by the CA, expired yesterday
    wrong_host: CertPair  # mail.other.example, signed by the CA


def make_pki(dir: Path) -> TestPKI:
    dir.mkdir(parents=True, exist_ok=True)
    dir.chmod(0o755)
    now = dt.datetime.now(dt.UTC)
    day = dt.timedelta(days=1)
    ca = new_ca("syncwatch test CA", now - day, now + 30 * day)
    ca_path, _ = write_pair(dir, "ca", ca.cert)

    def pair(
        name: str,
        issuer: Issuer | None,
        cn: str,
        sans: list[x509.GeneralName],
        not_before: dt.datetime,
        not_after: dt.datetime,
    ) -> CertPair:
        cert, key = issue(issuer, cn, sans, not_before, not_after)
        crt, pem = write_pair(dir, name, cert, key)
        assert pem is not None
        return CertPair(crt, pem)

    other: list[x509.GeneralName] = [x509.DNSName("mail.other.example")]
    return TestPKI(
        ca=ca_path,
        good=pair("good", ca, "localhost", LOCAL_NAMES, now - day, now + 30 * day),
        self_signed=pair("self-signed", None, "localhost", LOCAL_NAMES, now - day, now + 30 * day),
        expired=pair("expired", ca, "localhost", LOCAL_NAMES, now - 30 * day, now - day),
        wrong_host=pair("wrong-host", ca, "mail.other.example", other, now - day, now + 30 * day),
    )


@pytest.fixture(scope="session")
def pki(tmp_path_factory: pytest.TempPathFactory) -> TestPKI:
    return make_pki(tmp_path_factory.mktemp("pki"))
