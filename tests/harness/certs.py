"""Certificates for test servers: a throwaway CA and the leaf certificates it signs.

    ca = CertificateAuthority.create("test-ca")
    serving = ca.issue(tmp_path / "serving", "my-svc.my-ns.svc", dns_names=["my-svc.my-ns.svc"])
    serving.cert_file, serving.key_file          # paths of PEM files
    ca.cert_pem                                  # bytes, e.g. for an APIService caBundle
    ca.write(tmp_path / "ca")                    # ca.crt / ca.key on disk

Keys are P-256; certificates are valid from a minute ago for one day.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID


def _name(common_name: str, organizations: list[str] | None = None) -> x509.Name:
    attrs = [x509.NameAttribute(NameOID.ORGANIZATION_NAME, org) for org in organizations or []]
    attrs.append(x509.NameAttribute(NameOID.COMMON_NAME, common_name))
    return x509.Name(attrs)


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def _validity() -> tuple[dt.datetime, dt.datetime]:
    now = dt.datetime.now(dt.UTC)
    return now - dt.timedelta(minutes=1), now + dt.timedelta(days=1)


@dataclass(frozen=True)
class KeyPair:
    """A certificate and its key, in memory and written to ``cert_file``/``key_file``."""

    cert_pem: bytes
    key_pem: bytes
    cert_file: Path
    key_file: Path


@dataclass(frozen=True)
class CertificateAuthority:
    common_name: str
    cert: x509.Certificate
    key: ec.EllipticCurvePrivateKey

    @classmethod
    def create(cls, common_name: str) -> CertificateAuthority:
        key = ec.generate_private_key(ec.SECP256R1())
        not_before, not_after = _validity()
        cert = (
            x509.CertificateBuilder()
            .subject_name(_name(common_name))
            .issuer_name(_name(common_name))
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(not_before)
            .not_valid_after(not_after)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
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
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
            .sign(key, hashes.SHA256())
        )
        return cls(common_name, cert, key)

    @property
    def cert_pem(self) -> bytes:
        return self.cert.public_bytes(serialization.Encoding.PEM)

    def write(self, stem: Path) -> KeyPair:
        """Write ``<stem>.crt`` and ``<stem>.key``."""
        return _write(stem, self.cert_pem, _key_pem(self.key))

    def issue(
        self,
        stem: Path,
        common_name: str,
        *,
        dns_names: list[str] | None = None,
        ips: list[str] | None = None,
        organizations: list[str] | None = None,
        server: bool = True,
        client: bool = False,
    ) -> KeyPair:
        """Sign a leaf certificate for ``common_name`` and write ``<stem>.crt``/``<stem>.key``."""
        key = ec.generate_private_key(ec.SECP256R1())
        not_before, not_after = _validity()
        usages = []
        if server:
            usages.append(ExtendedKeyUsageOID.SERVER_AUTH)
        if client:
            usages.append(ExtendedKeyUsageOID.CLIENT_AUTH)
        if not usages:
            raise ValueError("a certificate needs server or client usage")
        builder = (
            x509.CertificateBuilder()
            .subject_name(_name(common_name, organizations))
            .issuer_name(self.cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(not_before)
            .not_valid_after(not_after)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage(usages), critical=False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(self.key.public_key()), critical=False
            )
        )
        sans: list[x509.GeneralName] = [x509.DNSName(name) for name in dns_names or []]
        sans += [x509.IPAddress(ipaddress.ip_address(ip)) for ip in ips or []]
        if sans:
            builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
        cert = builder.sign(self.key, hashes.SHA256())
        return _write(stem, cert.public_bytes(serialization.Encoding.PEM), _key_pem(key))


def _write(stem: Path, cert_pem: bytes, key_pem: bytes) -> KeyPair:
    stem.parent.mkdir(parents=True, exist_ok=True)
    cert_file, key_file = stem.parent / f"{stem.name}.crt", stem.parent / f"{stem.name}.key"
    cert_file.write_bytes(cert_pem)
    key_file.touch(mode=0o600)
    key_file.write_bytes(key_pem)
    return KeyPair(cert_pem, key_pem, cert_file, key_file)
