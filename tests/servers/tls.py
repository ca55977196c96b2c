"""Certificates for test servers: a private CA, a leaf for localhost/127.0.0.1 signed by it,
and the broken kinds (self-signed, expired, issued for another name)."""

from __future__ import annotations

import datetime as dt
import ssl
from dataclasses import dataclass
from ipaddress import ip_address
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID


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


def _key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _write(
    dir: Path, name: str, cert: x509.Certificate, key: ec.EllipticCurvePrivateKey
) -> CertPair:
    c = dir / f"{name}.crt"
    k = dir / f"{name}.key"
    c.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    k.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.TraditionalOpenSSL,
            serialization.NoEncryption(),
        )
    )
    c.chmod(0o644)
    k.chmod(0o644)
    return CertPair(c, k)


def _leaf(
    name: str,
    sans: list[x509.GeneralName],
    issuer_key: ec.EllipticCurvePrivateKey,
    issuer: x509.Name | None,
    *,
    not_before: dt.datetime,
    not_after: dt.datetime,
) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    key = _key() if issuer is not None else issuer_key
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer or subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.SubjectAlternativeName(sans), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .sign(issuer_key, hashes.SHA256())
    )
    return cert, key


def make_pki(dir: Path) -> TestPKI:
    dir.mkdir(parents=True, exist_ok=True)
    dir.chmod(0o755)
    now = dt.datetime.now(dt.UTC)
    ca_key = _key()
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "syncwatch test CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .sign(ca_key, hashes.SHA256())
    )
    ca_pair = _write(dir, "ca", ca, ca_key)
    local = [x509.DNSName("localhost"), x509.IPAddress(ip_address("127.0.0.1"))]
    good = _leaf(
        "localhost",
        local,
        ca_key,
        ca_name,
        not_before=now - dt.timedelta(days=1),
        not_after=now + dt.timedelta(days=30),
    )
    expired = _leaf(
        "localhost",
        local,
        ca_key,
        ca_name,
        not_before=now - dt.timedelta(days=30),
        not_after=now - dt.timedelta(days=1),
    )
    wrong = _leaf(
        "mail.other.example",
        [x509.DNSName("mail.other.example")],
        ca_key,
        ca_name,
        not_before=now - dt.timedelta(days=1),
        not_after=now + dt.timedelta(days=30),
    )
    ss_key = _key()
    ss = _leaf(
        "localhost",
        local,
        ss_key,
        None,
        not_before=now - dt.timedelta(days=1),
        not_after=now + dt.timedelta(days=30),
    )
    return TestPKI(
        ca=ca_pair.cert,
        good=_write(dir, "good", *good),
        self_signed=_write(dir, "self-signed", *ss),
        expired=_write(dir, "expired", *expired),
        wrong_host=_write(dir, "wrong-host", *wrong),
    )


@pytest.fixture(scope="session")
def pki(tmp_path_factory: pytest.TempPathFactory) -> TestPKI:
    return make_pki(tmp_path_factory.mktemp("pki"))
