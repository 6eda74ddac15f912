"""HTTPS for the API port: a reloading server context, and the client certificate in the ASGI scope.

The aggregator proves itself with a front-proxy client certificate, and the app must know whether a
connection presented one before it may trust ``X-Remote-User``. Released uvicorn does not pass the peer
certificate to the application, so ``TLSH11Protocol`` reads it from the TLS transport when a connection
is made and publishes it per the ASGI TLS extension as ``scope["extensions"]["tls"]`` with
``client_cert_chain`` (PEM strings, leaf first, with the intermediates the client sent). If a server
already fills that extension, its value is kept.

The SSL context *requests* a client certificate without requiring one (``CERT_OPTIONAL``): the kubelet,
token clients and the aggregator share the port, and the app decides per request. OpenSSL checks a
presented certificate against every CA ever trusted here; the app verifies the chain again against the
*current* CA set and checks the CN, so a rotated-out CA that OpenSSL still knows grants nothing.
"""

from __future__ import annotations

import _ssl
import asyncio
import logging
import ssl
from collections.abc import Awaitable, Callable, MutableMapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import uvicorn
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import ExtendedKeyUsageOID

from teflon.common.serving import BoundedH11Protocol

log = logging.getLogger(__name__)

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]
_PEM = Encoding.PEM

_TLS_VERSIONS = {"TLSv1.2": 0x0303, "TLSv1.3": 0x0304}
_MAX_CHAIN = 5


def peer_chain_der(sslobj: Any) -> list[bytes]:
    """The certificates the client sent, leaf first, as DER (intermediates included).

    ``getpeercert`` gives the leaf alone, and a front-proxy certificate issued by an intermediate CA
    (which kube-apiserver accepts) must be verified with the intermediates its client sent. Python 3.13
    has ``get_unverified_chain``; before it, 3.10 to 3.12 have the same method on the inner object.
    """
    public = getattr(sslobj, "get_unverified_chain", None)
    if public is not None:
        return [bytes(c) for c in public() or [] if c is not None]
    inner = getattr(getattr(sslobj, "_sslobj", None), "get_unverified_chain", None)
    if inner is not None:
        # Without a client certificate 3.11 answers a list holding None.
        return [c.public_bytes(_ssl.ENCODING_DER) for c in inner() or [] if c is not None]
    der = sslobj.getpeercert(binary_form=True)
    return [der] if der else []


def peer_tls_info(transport: asyncio.BaseTransport) -> dict[str, Any] | None:
    """The ASGI TLS extension dictionary for a TLS ``transport``; None for plain TCP."""
    sslobj = transport.get_extra_info("ssl_object")
    if sslobj is None:
        return None
    chain: list[str] = []
    name: str | None = None
    for i, der in enumerate(peer_chain_der(sslobj)[:_MAX_CHAIN]):
        cert = x509.load_der_x509_certificate(der)
        chain.append(cert.public_bytes(encoding=_PEM).decode("ascii"))
        if i == 0:
            name = cert.subject.rfc4514_string()
    cipher = sslobj.cipher()
    return {
        "server_cert": None,
        "client_cert_chain": chain,
        "client_cert_name": name,
        "client_cert_error": None,
        "tls_version": _TLS_VERSIONS.get(sslobj.version() or ""),
        "cipher_suite": None if cipher is None else cipher[0],
    }


class _WithTLS:
    """Wraps the app for one connection, adding that connection's TLS details to each request scope."""

    def __init__(self, app: ASGIApp, tls: dict[str, Any]) -> None:
        self._app = app
        self._tls = tls

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            extensions: dict[str, Any] = scope.setdefault("extensions", {})
            extensions.setdefault("tls", self._tls)
        await self._app(scope, receive, send)


class TLSH11Protocol(BoundedH11Protocol):
    """uvicorn's h11 protocol (with a request deadline) that publishes the client certificate to the app."""

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        tls = peer_tls_info(transport)
        if tls is not None:
            self.app = _WithTLS(self.app, tls)


def client_chain(scope: Scope) -> list[x509.Certificate]:
    """The client certificate chain of the request's connection (leaf first); [] when none."""
    extensions: dict[str, Any] = scope.get("extensions") or {}
    tls: dict[str, Any] = extensions.get("tls") or {}
    pems = tls.get("client_cert_chain") or []
    return [x509.load_pem_x509_certificate(p.encode("ascii")) for p in pems]


def _valid_at(cert: x509.Certificate, now: datetime) -> bool:
    return cert.not_valid_before_utc <= now <= cert.not_valid_after_utc


def _is_ca(cert: x509.Certificate) -> bool:
    try:
        return bool(cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca)
    except x509.ExtensionNotFound:
        return False


def _issued_by(cert: x509.Certificate, issuer: x509.Certificate) -> bool:
    if cert.issuer != issuer.subject:
        return False
    try:
        cert.verify_directly_issued_by(issuer)
    except (InvalidSignature, ValueError, TypeError):
        return False
    return True


def verify_client_chain(
    chain: list[x509.Certificate], roots: list[x509.Certificate], now: datetime | None = None
) -> bool:
    """Whether ``chain[0]`` is a currently valid client certificate that chains to one of ``roots``.

    Intermediates may follow the leaf in ``chain``. Checks signatures, validity periods, that issuers
    are CAs, and that the leaf allows client authentication when it restricts its key usage.
    """
    if not chain or not roots:
        return False
    now = now or datetime.now(UTC)
    leaf = chain[0]
    if not _valid_at(leaf, now):
        return False
    try:
        eku = leaf.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
        usages = set(eku)
        if not usages & {ExtendedKeyUsageOID.CLIENT_AUTH, ExtendedKeyUsageOID.ANY_EXTENDED_KEY_USAGE}:
            return False
    except x509.ExtensionNotFound:
        pass
    current = leaf
    intermediates = chain[1:]
    for _ in range(_MAX_CHAIN):
        for root in roots:
            if _valid_at(root, now) and _is_ca(root) and _issued_by(current, root):
                return True
        step = next(
            (c for c in intermediates if _valid_at(c, now) and _is_ca(c) and _issued_by(current, c)), None
        )
        if step is None:
            return False
        current = step
    return False


def common_name(cert: x509.Certificate) -> str:
    attrs = cert.subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)
    return str(attrs[0].value) if attrs else ""


def organizations(cert: x509.Certificate) -> list[str]:
    return [str(a.value) for a in cert.subject.get_attributes_for_oid(x509.NameOID.ORGANIZATION_NAME)]


class ServerTLS:
    """The API port's SSL context; reloads the serving certificate in place when its files change."""

    def __init__(self, cert_file: str, key_file: str) -> None:
        self._cert = Path(cert_file)
        self._key = Path(key_file)
        self.context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.context.minimum_version = ssl.TLSVersion.TLSv1_2
        self.context.verify_mode = ssl.CERT_OPTIONAL
        self._stamp = self._mtimes()
        self.context.load_cert_chain(str(self._cert), str(self._key))
        self._trusted: set[str] = set()

    def _mtimes(self) -> tuple[float, float]:
        return (self._cert.stat().st_mtime, self._key.stat().st_mtime)

    def reload_if_changed(self) -> bool:
        """Load the certificate and key again if either file changed; new connections then use them.

        A half-written pair (a Secret update in progress) fails to load; the old pair stays in use and
        the next check tries again.
        """
        try:
            stamp = self._mtimes()
        except OSError as exc:
            log.warning("serving certificate unreadable; keeping the loaded one", extra={"error": str(exc)})
            return False
        if stamp == self._stamp:
            return False
        try:
            self.context.load_cert_chain(str(self._cert), str(self._key))
        except (OSError, ssl.SSLError) as exc:
            log.warning("serving certificate did not load; keeping the old one", extra={"error": str(exc)})
            return False
        self._stamp = stamp
        log.info("serving certificate reloaded", extra={"cert_file": str(self._cert)})
        return True

    def trust_client_cas(self, certs: list[x509.Certificate]) -> None:
        """Let OpenSSL accept client certificates issued by ``certs`` (the app still checks each one)."""
        for cert in certs:
            pem = cert.public_bytes(_PEM).decode("ascii")
            if pem not in self._trusted:
                self.context.load_verify_locations(cadata=pem)
                self._trusted.add(pem)


def https_config(
    app: Any,
    *,
    host: str,
    port: int,
    server_tls: ServerTLS,
    protocol: type[BoundedH11Protocol] = TLSH11Protocol,
    **kwargs: Any,
) -> uvicorn.Config:
    """A uvicorn config serving ``app`` over ``server_tls`` with the certificate-aware ``protocol``."""
    return uvicorn.Config(
        app,
        host=host,
        port=port,
        http=protocol,
        ssl_context_factory=lambda _cfg, _default: server_tls.context,
        log_config=None,
        **kwargs,
    )
