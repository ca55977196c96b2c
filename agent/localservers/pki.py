"""A throwaway certificate authority and a localhost certificate for local servers.

`syncwatch demo` (and benches) run Dovecot with TLS: the agent verifies it against this CA
(`tls_ca_file`), exactly as it verifies a real provider, so the demo never turns TLS
verification off.

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

__all__ = ["LocalPKI", "make_local_pki"]


@dataclass(frozen=True)
class LocalPKI:
    ca: Path  # the CA certificate clients trust (tls_ca_file)
    cert: Path  # leaf for localhost and 127.0.0.1, signed by the CA
    key: Path  # the leaf's private key (unencrypted PEM)


def _pem_key(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption(),
    )


def make_local_pki(dir: Path, *, days: int = 7) -> LocalPKI:
    """Write ca.crt, localhost.crt and localhost.key into `dir` (mode 0755, files 0644:
    Dovecot's unprivileged processes read them)."""
    dir.mkdir(parents=True, exist_ok=True)
    dir.chmod(0o755)
    now = dt.datetime.now(dt.UTC)
    start, end = now - dt.timedelta(days=1), now + dt.timedelta(days=days)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "syncwatch local CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(end)
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
    key = ec.generate_private_key(ec.SECP256R1())
    leaf = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(end)
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    out = LocalPKI(ca=dir / "ca.crt", cert=dir / "localhost.crt", key=dir / "localhost.key")
    out.ca.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    out.cert.write_bytes(leaf.public_bytes(serialization.Encoding.PEM))
    out.key.write_bytes(_pem_key(key))
    for p in (out.ca, out.cert, out.key):
        p.chmod(0o644)
    return out
