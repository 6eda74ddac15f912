"""The webhook's ingest TLS follows its files: a renewed certificate, key or client CA needs no restart.

Files are rotated the way the kubelet updates a mounted Secret (new files, then one rename); the next
handshake must present the new serving certificate, accept a client certificate of the new client CA
and refuse one of the old. Real handshakes through asyncio's TLS, as uvicorn serves them.
"""

from __future__ import annotations

import asyncio
import os
import ssl
from pathlib import Path

from cryptography import x509

from teflon.common.tls import ReloadingServerTLS
from teflon.webhook.__main__ import server_configs, server_tls
from teflon.webhook.settings import Settings
from tests.harness.certs import CertificateAuthority, KeyPair


class Files:
    """The mounted Secret: tls.crt, tls.key, ca.crt in ``dir``, replaced atomically."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.dir = root / "secret"
        self.generation = 0

    @property
    def cert(self) -> Path:
        return self.dir / "tls.crt"

    @property
    def key(self) -> Path:
        return self.dir / "tls.key"

    @property
    def ca(self) -> Path:
        return self.dir / "ca.crt"

    def write(self, serving: KeyPair, client_ca: CertificateAuthority) -> None:
        self.generation += 1
        staged = self.root / f"..data-{self.generation}"
        staged.mkdir()
        (staged / "tls.crt").write_bytes(serving.cert_file.read_bytes())
        (staged / "tls.key").write_bytes(serving.key_file.read_bytes())
        (staged / "ca.crt").write_bytes(client_ca.cert_pem)
        link = self.root / "secret.tmp"
        link.symlink_to(staged.name)
        os.replace(link, self.dir)  # one rename swaps all three files, as the kubelet does


async def handshake(
    port: int, client: KeyPair, trust: CertificateAuthority, tmp: Path
) -> x509.Certificate | None:
    """The serving certificate the server presented, or None if it refused ``client``."""
    ctx = ssl.create_default_context(cafile=str(trust.write(tmp / f"trust-{trust.common_name}").cert_file))
    ctx.check_hostname = False
    ctx.load_cert_chain(str(client.cert_file), str(client.key_file))
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=ctx)
        data = await reader.read()
    except (ssl.SSLError, ConnectionResetError):
        return None
    sslobj = writer.get_extra_info("ssl_object")
    der = sslobj.getpeercert(binary_form=True)
    writer.close()
    if data != b"ok":
        return None  # TLS 1.3: the server's refusal of the client certificate arrives after the handshake
    return x509.load_der_x509_certificate(der)


async def test_rotated_files_are_used_by_the_next_handshake(tmp_path: Path) -> None:
    files = Files(tmp_path)
    serving_ca_1, serving_ca_2 = (
        CertificateAuthority.create("serving-ca-1"),
        CertificateAuthority.create("serving-ca-2"),
    )
    client_ca_1, client_ca_2 = (
        CertificateAuthority.create("client-ca-1"),
        CertificateAuthority.create("client-ca-2"),
    )
    files.write(serving_ca_1.issue(tmp_path / "serving-1", "webhook-1", ips=["127.0.0.1"]), client_ca_1)
    tls = ReloadingServerTLS(files.cert, files.key, files.ca)

    async def answer(_reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"ok")
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(answer, "127.0.0.1", 0, ssl=tls.context)
    port = server.sockets[0].getsockname()[1]
    falco_1 = client_ca_1.issue(tmp_path / "falco-1", "falco", server=False, client=True)
    falco_2 = client_ca_2.issue(tmp_path / "falco-2", "falco", server=False, client=True)
    try:
        before = await handshake(port, falco_1, serving_ca_1, tmp_path)
        assert before is not None
        assert before.subject.rfc4514_string() == "CN=webhook-1"
        assert tls.reload_if_changed() is False  # nothing changed yet

        files.write(serving_ca_2.issue(tmp_path / "serving-2", "webhook-2", ips=["127.0.0.1"]), client_ca_2)
        assert tls.reload_if_changed() is True
        after = await handshake(port, falco_2, serving_ca_2, tmp_path)
        assert after is not None
        assert after.subject.rfc4514_string() == "CN=webhook-2"
        # The rotated-out client CA is no longer trusted, though OpenSSL never forgets a loaded CA.
        assert await handshake(port, falco_1, serving_ca_2, tmp_path) is None
    finally:
        server.close()
        await server.wait_closed()


async def test_a_half_written_secret_keeps_the_loaded_certificate(tmp_path: Path) -> None:
    files = Files(tmp_path)
    ca = CertificateAuthority.create("serving-ca")
    client_ca = CertificateAuthority.create("client-ca")
    files.write(ca.issue(tmp_path / "serving-1", "webhook-1"), client_ca)
    tls = ReloadingServerTLS(files.cert, files.key, files.ca)
    loaded = tls.current
    other = ca.issue(tmp_path / "serving-2", "webhook-2")
    files.write(other, client_ca)
    files.key.chmod(0o644)
    # The key of the first pair with the certificate of the second: a Secret caught mid-update.
    (files.dir / "tls.key").write_bytes((tmp_path / "serving-1.key").read_bytes())
    assert tls.reload_if_changed() is False
    assert tls.current is loaded


def test_the_ingest_server_is_configured_with_the_reloading_context(tmp_path: Path) -> None:
    ca = CertificateAuthority.create("serving-ca")
    pair = ca.issue(tmp_path / "serving", "webhook")
    client_ca = ca.write(tmp_path / "client-ca")
    settings = Settings(
        tls_cert_file=pair.cert_file, tls_key_file=pair.key_file, tls_client_ca_file=client_ca.cert_file
    )
    reloading = server_tls(settings)
    assert reloading is not None
    ingest, ops = server_configs(settings, object(), object(), reloading)
    assert ingest.ssl_context_factory is not None
    assert ingest.ssl_context_factory(ingest, ssl.create_default_context) is reloading.context
    assert ops.ssl_context_factory is None
    assert reloading.context.verify_mode is ssl.CERT_REQUIRED
