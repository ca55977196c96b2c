"""A throwaway certificate authority and certificates for local servers.

`syncwatch demo` (and benches) run Dovecot with TLS: the agent verifies it against this CA
(`tls_ca_file`), exactly as it verifies a real provider, so the demo never turns TLS
verification off. The test PKI (tests/servers/tls.py) builds its broken certificates
(self-signed, expired, for another name) from the same pieces.

    pki = make_local_pki(Path("/tmp/demo/pki"))
    Dovecot(dir, pki.cert, pki.key)   # clients trust pki.ca
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from ipaddress import ip_address
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

__all__ = ["LOCAL_NAMES", "Issuer", "LocalPKI", "issue", "make_local_pki", "new_ca", "write_pair"]

Key = ec.EllipticCurvePrivateKey
LOCAL_NAMES: list[x509.GeneralName] = [
    x509.DNSName("localhost"),
    x509.IPAddress(ip_address("127.0.0.1")),
]


@dataclass(frozen=True)
class LocalPKI:
    ca: Path  # the CA certificate clients trust (tls_ca_file)
    cert: Path  # leaf for localhost and 127.0.0.1, signed by the CA
    key: Path  # the leaf's private key (unencrypted PEM)


@dataclass(frozen=True)
class Issuer:
    cert: x509.Certificate
    key: Key

    @property
    def name(self) -> x509.Name:
        return self.cert.subject


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def new_ca(cn: str, not_before: dt.datetime, not_after: dt.datetime) -> Issuer:
    key = ec.generate_private_key(ec.SECP256R1())
    usage = x509.KeyUsage(
        digital_signature=True,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=True,
        crl_sign=True,
        encipher_only=False,
        decipher_only=False,
    )
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(cn))
        .issuer_name(_name(cn))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(usage, critical=True)
        .sign(key, hashes.SHA256())
    )
    return Issuer(cert, key)


def issue(
    issuer: Issuer | None,
    cn: str,
    sans: list[x509.GeneralName],
    not_before: dt.datetime,
    not_after: dt.datetime,
) -> tuple[x509.Certificate, Key]:
    """A server certificate signed by `issuer`, or self-signed when it is None."""
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(cn))
        .issuer_name(issuer.name if issuer else _name(cn))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.SubjectAlternativeName(sans), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .sign(issuer.key if issuer else key, hashes.SHA256())
    )
    return cert, key


def write_pair(
    dir: Path, name: str, cert: x509.Certificate, key: Key | None = None
) -> tuple[Path, Path | None]:
    """Write NAME.crt (and NAME.key), mode 0644: Dovecot's unprivileged processes read them."""
    crt = dir / f"{name}.crt"
    crt.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    crt.chmod(0o644)
    if key is None:
        return crt, None
    pem = dir / f"{name}.key"
    pem.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.TraditionalOpenSSL,
            serialization.NoEncryption(),
        )
    )
    pem.chmod(0o644)
    return crt, pem


def make_local_pki(dir: Path, *, days: int = 7) -> LocalPKI:
    """Write ca.crt, localhost.crt and localhost.key into `dir` (a folder of mode 0755)."""
    dir.mkdir(parents=True, exist_ok=True)
    dir.chmod(0o755)
    now = dt.datetime.now(dt.UTC)
    start, end = now - dt.timedelta(days=1), now + dt.timedelta(days=days)
    ca = new_ca("syncwatch local CA", start, end)
    ca_path, _ = write_pair(dir, "ca", ca.cert)
    cert, key = issue(ca, "localhost", LOCAL_NAMES, start, end)
    crt, pem = write_pair(dir, "localhost", cert, key)
    assert pem is not None
    return LocalPKI(ca=ca_path, cert=crt, key=pem)
