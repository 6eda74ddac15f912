"""Authentication over real TLS connections with real certificates.

uvicorn serves the API app with the certificate-aware protocol; clients connect with and without client
certificates from a front-proxy CA, a client CA and an untrusted CA. Access reviews are answered by a
recording fake here; ``test_cluster_auth.py`` has the real kube-apiserver answer them.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from teflon.metrics.app import Components, create_app
from teflon.metrics.auth import AuthConfig, Authenticator, Authorizer, UserInfo
from teflon.metrics.config import parse_config
from teflon.metrics.provider import ConfiguredProvider
from teflon.metrics.telemetry import Telemetry
from teflon.metrics.tls import ServerTLS, _WithTLS, verify_client_chain
from tests.harness.certs import CertificateAuthority

from .fakes import FakeAccess, FakeBackend, FakeObjects, FakeTokens
from .tlsserver import client, serve_https

DISCOVERY = "/apis/custom.metrics.k8s.io/v1beta2"
HPA = "system:serviceaccount:kube-system:horizontal-pod-autoscaler"
HEADERS = {"X-Remote-User": HPA, "X-Remote-Group": "system:serviceaccounts"}


class MutableAuthConfig:
    def __init__(self, cfg: AuthConfig) -> None:
        self.current: AuthConfig | None = cfg


@dataclass
class Pki:
    tmp: Path
    serving_ca: CertificateAuthority
    front_proxy_ca: CertificateAuthority
    client_ca: CertificateAuthority
    rogue_ca: CertificateAuthority

    def pair(self, ca: CertificateAuthority, cn: str, orgs: list[str] | None = None) -> tuple[Path, Path]:
        kp = ca.issue(self.tmp / f"{ca.common_name}-{cn}", cn, organizations=orgs, server=False, client=True)
        return kp.cert_file, kp.key_file

    @property
    def serving_ca_file(self) -> Path:
        return self.serving_ca.write(self.tmp / "serving-ca").cert_file


@pytest.fixture
def pki(tmp_path: Path) -> Pki:
    return Pki(
        tmp_path,
        CertificateAuthority.create("serving-ca"),
        CertificateAuthority.create("front-proxy-ca"),
        CertificateAuthority.create("client-ca"),
        CertificateAuthority.create("rogue-ca"),
    )


@dataclass
class Server:
    url: str
    access: FakeAccess
    auth: MutableAuthConfig
    server_tls: ServerTLS
    telemetry: Telemetry


def auth_config(pki: Pki, allowed: tuple[str, ...] = ("front-proxy-client",)) -> AuthConfig:
    return AuthConfig(
        client_cas=(pki.client_ca.cert,),
        requestheader_cas=(pki.front_proxy_ca.cert,),
        allowed_names=allowed,
        username_headers=("x-remote-user",),
        group_headers=("x-remote-group",),
        extra_prefixes=("x-remote-extra-",),
    )


@pytest.fixture
async def server(pki: Pki, telemetry: Telemetry) -> AsyncIterator[Server]:
    serving = pki.serving_ca.issue(
        pki.tmp / "serving", "metrics.teflon.svc", dns_names=["metrics.teflon.svc"], ips=["127.0.0.1"]
    )
    server_tls = ServerTLS(str(serving.cert_file), str(serving.key_file))
    auth = MutableAuthConfig(auth_config(pki))
    assert auth.current is not None
    server_tls.trust_client_cas(auth.current.all_cas())
    access = FakeAccess(allow={HPA, "jane", "token-user"})
    tokens = FakeTokens({"good-token": UserInfo("token-user", groups=("system:authenticated",))})
    config = parse_config("backends: {teflon: {service: wh, namespace: teflon}}")
    components = Components(
        provider=ConfiguredProvider(config, {"teflon": FakeBackend()}, FakeObjects(), telemetry),
        authenticator=Authenticator(auth, tokens, telemetry),
        authorizer=Authorizer(access),
        telemetry=telemetry,
        registry=telemetry.registry,
        ready=lambda: True,
    )
    async with serve_https(create_app(components).api, server_tls) as url:
        yield Server(url, access, auth, server_tls, telemetry)


async def test_front_proxy_certificate_with_allowed_cn_makes_identity_headers_trusted(
    pki: Pki, server: Server
) -> None:
    async with client(pki.serving_ca_file, pki.pair(pki.front_proxy_ca, "front-proxy-client")) as c:
        resp = await c.get(
            server.url + DISCOVERY,
            headers=[
                ("X-Remote-User", HPA),
                ("X-Remote-Group", "system:serviceaccounts"),
                ("X-Remote-Group", "system:authenticated"),
                ("X-Remote-Extra-Authentication.kubernetes.io%2Fpod-Name", "kcm-0"),
            ],
        )
    assert resp.status_code == 200
    assert resp.json()["kind"] == "APIResourceList"
    user, attrs = server.access.asked[0]
    assert user.name == HPA
    assert user.groups == ("system:serviceaccounts", "system:authenticated")
    assert user.extra_dict() == {"authentication.kubernetes.io/pod-name": ["kcm-0"]}
    assert attrs.path == DISCOVERY


async def test_front_proxy_certificate_with_another_cn_has_its_headers_ignored(
    pki: Pki, server: Server
) -> None:
    async with client(pki.serving_ca_file, pki.pair(pki.front_proxy_ca, "intruder")) as c:
        resp = await c.get(server.url + DISCOVERY, headers=HEADERS)
    assert resp.status_code == 401
    assert resp.json()["reason"] == "Unauthorized"
    assert server.access.asked == []
    assert (
        server.telemetry.registry.get_sample_value(
            "teflon_metrics_authentications_total", {"method": "frontproxy", "result": "name_not_allowed"}
        )
        == 1
    )


async def test_an_empty_allowed_names_list_accepts_any_cn_from_the_front_proxy_ca(
    pki: Pki, server: Server
) -> None:
    server.auth.current = auth_config(pki, allowed=())
    async with client(pki.serving_ca_file, pki.pair(pki.front_proxy_ca, "some-aggregator")) as c:
        resp = await c.get(server.url + DISCOVERY, headers=HEADERS)
    assert resp.status_code == 200
    assert server.access.asked[0][0].name == HPA


async def test_spoofed_identity_headers_without_a_certificate_are_refused(pki: Pki, server: Server) -> None:
    async with client(pki.serving_ca_file) as c:
        resp = await c.get(server.url + DISCOVERY, headers={**HEADERS, "X-Remote-Group": "system:masters"})
    assert resp.status_code == 401
    assert resp.json() == {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": "Unauthorized",
        "reason": "Unauthorized",
        "code": 401,
        "details": None,
    }
    assert server.access.asked == []


async def test_identity_headers_over_a_client_ca_certificate_are_ignored(pki: Pki, server: Server) -> None:
    async with client(pki.serving_ca_file, pki.pair(pki.client_ca, "jane", ["devs"])) as c:
        resp = await c.get(server.url + DISCOVERY, headers=HEADERS)
    assert resp.status_code == 200
    user = server.access.asked[0][0]
    assert (user.name, user.groups, user.method) == ("jane", ("devs", "system:authenticated"), "clientcert")


async def test_a_bearer_token_is_reviewed_and_identity_headers_ignored(pki: Pki, server: Server) -> None:
    async with client(pki.serving_ca_file) as c:
        resp = await c.get(server.url + DISCOVERY, headers={**HEADERS, "Authorization": "Bearer good-token"})
        bad = await c.get(server.url + DISCOVERY, headers={"Authorization": "Bearer forged"})
    assert resp.status_code == 200
    assert server.access.asked[0][0].name == "token-user"
    assert bad.status_code == 401


async def test_anonymous_requests_are_refused(pki: Pki, server: Server) -> None:
    async with client(pki.serving_ca_file) as c:
        resp = await c.get(
            server.url + "/apis/custom.metrics.k8s.io/v1beta2/namespaces/a/pods/*/falco_alerts_per_minute"
        )
        health = await c.get(server.url + "/healthz")
    assert resp.status_code == 401
    assert health.status_code == 200


async def test_a_certificate_from_an_untrusted_ca_fails_the_handshake(pki: Pki, server: Server) -> None:
    async with client(pki.serving_ca_file, pki.pair(pki.rogue_ca, "front-proxy-client")) as c:
        with pytest.raises(httpx.HTTPError):
            await c.get(server.url + DISCOVERY, headers=HEADERS)
    assert server.access.asked == []


async def test_a_front_proxy_ca_removed_from_the_config_grants_nothing(pki: Pki, server: Server) -> None:
    # OpenSSL keeps accepting the old CA in the handshake; the app checks against the current config.
    replacement = CertificateAuthority.create("front-proxy-ca-2")
    server.auth.current = AuthConfig(
        requestheader_cas=(replacement.cert,),
        allowed_names=("front-proxy-client",),
        username_headers=("x-remote-user",),
        group_headers=("x-remote-group",),
    )
    async with client(pki.serving_ca_file, pki.pair(pki.front_proxy_ca, "front-proxy-client")) as c:
        resp = await c.get(server.url + DISCOVERY, headers=HEADERS)
    assert resp.status_code == 401


async def test_system_masters_through_the_front_proxy_need_no_access_review(pki: Pki, server: Server) -> None:
    async with client(pki.serving_ca_file, pki.pair(pki.front_proxy_ca, "front-proxy-client")) as c:
        resp = await c.get(
            server.url + DISCOVERY,
            headers={"X-Remote-User": "system:kube-aggregator", "X-Remote-Group": "system:masters"},
        )
    assert resp.status_code == 200
    assert server.access.asked == []


async def test_a_refused_front_proxy_user_gets_403(pki: Pki, server: Server) -> None:
    async with client(pki.serving_ca_file, pki.pair(pki.front_proxy_ca, "front-proxy-client")) as c:
        resp = await c.get(server.url + DISCOVERY, headers={"X-Remote-User": "mallory"})
    assert resp.status_code == 403
    assert resp.json()["reason"] == "Forbidden"
    assert server.access.asked[0][0].name == "mallory"


async def test_the_serving_certificate_is_reloaded_when_its_files_change(
    pki: Pki, server: Server, tmp_path: Path
) -> None:
    async with client(pki.serving_ca_file) as c:
        await c.get(server.url + "/healthz")
    new = pki.serving_ca.issue(tmp_path / "serving", "metrics-renewed.teflon.svc", ips=["127.0.0.1"])
    assert server.server_tls.reload_if_changed()
    host, port = server.url.removeprefix("https://").split(":")
    ctx = ssl.create_default_context(cafile=str(pki.serving_ca_file))
    _, writer = await asyncio.open_connection(host, int(port), ssl=ctx)
    der = writer.get_extra_info("ssl_object").getpeercert(binary_form=True)
    writer.close()
    await writer.wait_closed()
    assert x509.load_der_x509_certificate(der) == x509.load_pem_x509_certificate(new.cert_pem)


def _cert(
    issuer: CertificateAuthority,
    cn: str,
    *,
    days: int = 1,
    usages: list[x509.ObjectIdentifier] | None = None,
    ca: bool = False,
) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.now(UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)]))
        .issuer_name(issuer.cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(days=2))
        .not_valid_after(now + timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if usages is not None:
        builder = builder.add_extension(x509.ExtendedKeyUsage(usages), critical=False)
    return builder.sign(issuer.key, hashes.SHA256()), key


def test_chain_verification_checks_signature_validity_and_client_usage() -> None:
    root = CertificateAuthority.create("root")
    other = CertificateAuthority.create("other")
    good, _ = _cert(root, "ok", usages=[ExtendedKeyUsageOID.CLIENT_AUTH])
    expired, _ = _cert(root, "old", days=-1)
    server_only, _ = _cert(root, "srv", usages=[ExtendedKeyUsageOID.SERVER_AUTH])
    no_eku, _ = _cert(root, "plain")
    assert verify_client_chain([good], [root.cert])
    assert verify_client_chain([no_eku], [root.cert])
    assert not verify_client_chain([good], [other.cert])
    assert not verify_client_chain([expired], [root.cert])
    assert not verify_client_chain([server_only], [root.cert])
    assert not verify_client_chain([], [root.cert])
    assert not verify_client_chain([good], [])


def test_chain_verification_follows_intermediates_that_are_cas() -> None:
    root = CertificateAuthority.create("root")
    inter_cert, inter_key = _cert(root, "intermediate", ca=True)
    inter = CertificateAuthority("intermediate", inter_cert, inter_key)
    leaf, _ = _cert(inter, "leaf", usages=[ExtendedKeyUsageOID.CLIENT_AUTH])
    assert verify_client_chain([leaf, inter_cert], [root.cert])
    assert not verify_client_chain([leaf], [root.cert])
    not_ca_cert, not_ca_key = _cert(root, "not-a-ca")
    forged, _ = _cert(CertificateAuthority("not-a-ca", not_ca_cert, not_ca_key), "leaf")
    assert not verify_client_chain([forged, not_ca_cert], [root.cert])


async def test_a_tls_extension_filled_by_the_server_is_kept() -> None:
    seen: list[dict[str, object]] = []

    async def app(scope: dict[str, object], receive: object, send: object) -> None:
        seen.append(scope)

    offered = {"client_cert_chain": ["from-the-server"]}
    ours = {"client_cert_chain": ["from-the-transport"]}
    wrapped = _WithTLS(app, ours)  # type: ignore[arg-type]
    await wrapped({"type": "http", "extensions": {"tls": offered}}, None, None)  # type: ignore[arg-type]
    await wrapped({"type": "http"}, None, None)  # type: ignore[arg-type]
    assert [s["extensions"]["tls"] for s in seen] == [offered, ours]  # type: ignore[index]
