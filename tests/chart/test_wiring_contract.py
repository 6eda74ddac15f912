"""The rendered objects point at each other: Falco at the webhook Service, the APIService at the
metrics Service, the metrics server at the webhook replicas, files at the volumes that hold them."""

from __future__ import annotations

import base64
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa

from teflon.metrics.config import parse_config
from teflon.webhook.policy import parse_policy

from .falco_config import falco_container, falco_daemonset, load_from_render
from .rendering import NAMESPACE, SCENARIO_PATHS, SCENARIOS, Manifest, Rendered, env_of, mounted_path, render

ALL = [None, *SCENARIOS]


def _falco_config(rendered: Rendered) -> dict[str, Any]:
    """falco.yaml as Falco loads it: the wiring variables expanded from the Falco pod's environment."""
    return load_from_render(rendered).config


def _falco(rendered: Rendered) -> Manifest:
    workload = falco_daemonset(rendered)
    assert workload is not None, "no Falco DaemonSet rendered"
    return workload


def _service_for(rendered: Rendered, host: str) -> Manifest:
    name, namespace, svc = host.split(".", 2)
    assert svc == "svc", f"{host} is not a cluster Service name"
    return rendered.get("Service", name, namespace)


def _selects(service: Manifest, workload: Manifest) -> bool:
    labels = workload["spec"]["template"]["metadata"]["labels"]
    return all(labels.get(k) == v for k, v in service["spec"]["selector"].items())


def _container_port(workload: Manifest, target: str | int) -> int:
    (container,) = workload["spec"]["template"]["spec"]["containers"]
    for port in container["ports"]:
        if target in (port["name"], port["containerPort"]):
            return int(port["containerPort"])
    raise AssertionError(f"no container port {target!r} in {workload['metadata']['name']}")


def _service_port(service: Manifest, port: int) -> Manifest:
    matches: list[Manifest] = [p for p in service["spec"]["ports"] if p["port"] == port]
    assert matches, f"Service {service['metadata']['name']} has no port {port}"
    return matches[0]


@pytest.mark.parametrize("scenario", [s for s in ALL if s != "byo-falco-values.yaml"])
def test_falco_http_output_names_the_webhook_service_and_its_ingest_port(scenario: str | None) -> None:
    rendered = render(scenario)
    url = urlsplit(_falco_config(rendered)["http_output"]["url"])
    service = _service_for(rendered, url.hostname or "")
    webhook = rendered.workload("webhook")
    assert _selects(service, webhook)
    port = _service_port(service, url.port or 0)
    (container,) = webhook["spec"]["template"]["spec"]["containers"]
    assert _container_port(webhook, port["targetPort"]) == int(
        env_of(container)["TEFLON_WEBHOOK_PORT"]["value"]
    )
    assert url.path == "/v1/falco"


@pytest.mark.parametrize("scenario", ALL)
def test_falco_uses_https_with_a_mounted_client_certificate_exactly_when_the_webhook_requires_one(
    scenario: str | None,
) -> None:
    rendered = render(scenario)
    (container,) = rendered.workload("webhook")["spec"]["template"]["spec"]["containers"]
    mtls = "TEFLON_WEBHOOK_TLS_CLIENT_CA_FILE" in env_of(container)
    if scenario == "byo-falco-values.yaml":
        assert falco_daemonset(rendered) is None
        return
    http = _falco_config(rendered)["http_output"]
    assert urlsplit(http["url"]).scheme == ("https" if mtls else "http")
    assert http.get("mtls", False) is mtls
    falco = _falco(rendered)
    falco_container_ = falco_container(falco)
    if mtls:
        for key in ("client_cert", "client_key", "ca_cert"):
            volume, _ = mounted_path(falco, falco_container_, http[key])
            assert "secret" in volume
    else:
        volumes = falco["spec"]["template"]["spec"]["volumes"]
        assert not [v for v in volumes if "secret" in v], "Falco mounts a certificate nobody asks for"


@pytest.mark.parametrize("scenario", [s for s in ALL if s != "byo-falco-values.yaml"])
def test_falco_alerts_carry_the_pod_uid_and_the_node_name(scenario: str | None) -> None:
    rendered = render(scenario)
    config = _falco_config(rendered)
    assert config["json_output"] is True
    assert config["json_include_output_fields_property"] is True
    extra = [a for a in config["append_output"] if a.get("match", {}).get("source") == "syscall"]
    assert any("k8s.pod.uid" in a["extra_fields"] for a in extra)
    assert {"log", "alert"} <= set(config["syscall_event_drops"]["actions"])
    container = falco_container(_falco(rendered))
    assert env_of(container)["FALCO_HOSTNAME"]["valueFrom"] == {"fieldRef": {"fieldPath": "spec.nodeName"}}


@pytest.mark.parametrize("scenario", [s for s in ALL if s != "byo-falco-values.yaml"])
def test_the_webhook_network_policy_admits_the_release_s_own_falco_pods(scenario: str | None) -> None:
    rendered = render(scenario)
    labels = _falco(rendered)["spec"]["template"]["metadata"]["labels"]
    (policy,) = rendered.component("NetworkPolicy", "webhook")
    (ingest,) = [r for r in policy["spec"]["ingress"] if {"port": "ingest", "protocol": "TCP"} in r["ports"]]
    own = [
        peer
        for peer in ingest["from"]
        if "namespaceSelector" not in peer
        and all(labels.get(k) == v for k, v in peer["podSelector"]["matchLabels"].items())
    ]
    assert own, "the ingest port does not admit this release's Falco pods"


@pytest.mark.parametrize("scenario", ALL)
def test_every_apiservice_points_at_the_metrics_service_and_its_https_port(scenario: str | None) -> None:
    rendered = render(scenario)
    metrics = rendered.workload("metrics")
    (container,) = metrics["spec"]["template"]["spec"]["containers"]
    api_services = rendered.of_kind("APIService")
    assert {a["metadata"]["name"] for a in api_services} >= {
        "v1beta1.custom.metrics.k8s.io",
        "v1beta2.custom.metrics.k8s.io",
    }
    for api in api_services:
        ref = api["spec"]["service"]
        service = rendered.get("Service", ref["name"], ref["namespace"])
        assert _selects(service, metrics)
        port = _service_port(service, ref["port"])
        assert _container_port(metrics, port["targetPort"]) == int(
            env_of(container)["TEFLON_METRICS_PORT"]["value"]
        )
        assert api["metadata"]["name"] == f"{api['spec']['version']}.{api['spec']['group']}"
        assert not api["spec"].get("insecureSkipTLSVerify")


def test_v1beta2_is_the_preferred_custom_metrics_version() -> None:
    rendered = render()
    priority = {
        a["spec"]["version"]: a["spec"]["versionPriority"]
        for a in rendered.of_kind("APIService")
        if a["spec"]["group"] == "custom.metrics.k8s.io"
    }
    assert priority["v1beta2"] > priority["v1beta1"]


def _verify_signed_by(cert: x509.Certificate, ca: x509.Certificate) -> None:
    key = ca.public_key()
    assert cert.signature_hash_algorithm is not None
    if isinstance(key, rsa.RSAPublicKey):
        key.verify(
            cert.signature, cert.tbs_certificate_bytes, padding.PKCS1v15(), cert.signature_hash_algorithm
        )
    elif isinstance(key, ec.EllipticCurvePublicKey):
        key.verify(cert.signature, cert.tbs_certificate_bytes, ec.ECDSA(cert.signature_hash_algorithm))
    else:
        pytest.fail(f"unexpected CA key type {type(key).__name__}")


def _pem(b64: str) -> x509.Certificate:
    return x509.load_pem_x509_certificate(base64.b64decode(b64))


def test_the_apiservice_ca_bundle_verifies_the_generated_serving_certificate_for_the_service_name() -> None:
    rendered = render()
    (secret,) = [s for s in rendered.of_kind("Secret") if s["metadata"]["name"] == "teflon-metrics-tls"]
    metrics = rendered.workload("metrics")
    volumes = {v["name"]: v for v in metrics["spec"]["template"]["spec"]["volumes"]}
    assert volumes["tls"]["secret"]["secretName"] == secret["metadata"]["name"]
    cert = _pem(secret["data"]["tls.crt"])
    for api in rendered.of_kind("APIService"):
        ca = _pem(api["spec"]["caBundle"])
        _verify_signed_by(cert, ca)
        names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        service = api["spec"]["service"]
        assert f"{service['name']}.{service['namespace']}.svc" in names.get_values_for_type(x509.DNSName)


def test_generated_mtls_certificates_come_from_one_ca_per_direction() -> None:
    rendered = render(
        webhook={"tls": {"enabled": True}},
        falco={"certs": {"existingClientSecret": "teflon-falco-client-tls"}},
    )
    secrets = {s["metadata"]["name"]: s["data"] for s in rendered.of_kind("Secret")}
    server, client = secrets["teflon-webhook-tls"], secrets["teflon-falco-client-tls"]
    client_ca, server_ca = _pem(server["ca.crt"]), _pem(client["ca.crt"])
    # Falco verifies the webhook with the server CA; the webhook accepts clients of the client CA.
    _verify_signed_by(_pem(server["tls.crt"]), server_ca)
    _verify_signed_by(_pem(client["tls.crt"]), client_ca)
    # helm issues every certificate for server and client use alike: with one CA the webhook's own
    # serving certificate (mounted in its pod) would pass as a Falco client certificate.
    assert client_ca.subject != server_ca.subject
    with pytest.raises(InvalidSignature):
        _verify_signed_by(_pem(server["tls.crt"]), client_ca)
    names = _pem(server["tls.crt"]).extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert f"teflon-webhook.{NAMESPACE}.svc" in names.get_values_for_type(x509.DNSName)


@pytest.mark.parametrize("scenario", ALL)
def test_the_metrics_config_is_valid_and_its_teflon_backend_names_the_headless_webhook_service(
    scenario: str | None,
) -> None:
    rendered = render(scenario)
    metrics = rendered.workload("metrics")
    (container,) = metrics["spec"]["template"]["spec"]["containers"]
    path = env_of(container)["TEFLON_METRICS_CONFIG_FILE"]["value"]
    volume, key = mounted_path(metrics, container, path)
    config_map = rendered.get("ConfigMap", volume["configMap"]["name"], NAMESPACE)
    config = parse_config(config_map["data"][key], path)
    teflon = config.backends.teflon
    assert teflon is not None
    service = rendered.get("Service", teflon.service, teflon.namespace)
    assert service["spec"]["clusterIP"] == "None"
    assert _selects(service, rendered.workload("webhook"))
    assert teflon.port_name in {p["name"] for p in service["spec"]["ports"]}
    if config.backends.sysdig is not None:
        token_volume, token_key = mounted_path(metrics, container, config.backends.sysdig.token_file)
        assert token_key in {item["path"] for item in token_volume["secret"]["items"]}


@pytest.mark.parametrize("scenario", ALL)
def test_the_policy_config_map_is_a_valid_policy_at_the_path_the_webhook_reads(scenario: str | None) -> None:
    rendered = render(scenario)
    webhook = rendered.workload("webhook")
    (container,) = webhook["spec"]["template"]["spec"]["containers"]
    path = env_of(container)["TEFLON_WEBHOOK_POLICY_FILE"]["value"]
    volume, key = mounted_path(webhook, container, path)
    config_map = rendered.get("ConfigMap", volume["configMap"]["name"], NAMESPACE)
    parse_policy(config_map["data"][key])


@pytest.mark.parametrize("scenario", ALL)
def test_tls_files_named_in_env_are_mounted_from_secrets(scenario: str | None) -> None:
    rendered = render(scenario)
    for component in ("webhook", "metrics"):
        workload = rendered.workload(component)
        (container,) = workload["spec"]["template"]["spec"]["containers"]
        for name, var in env_of(container).items():
            if name.endswith("_FILE") and "TLS" in name:
                volume, key = mounted_path(workload, container, var["value"])
                assert "secret" in volume, f"{name} is not read from a Secret"
                assert key in {"tls.crt", "tls.key", "ca.crt"}


def test_the_hpa_controller_is_bound_to_read_custom_metrics() -> None:
    rendered = render()
    bindings = [
        b
        for b in rendered.of_kind("ClusterRoleBinding")
        if {"kind": "ServiceAccount", "name": "horizontal-pod-autoscaler", "namespace": "kube-system"}
        in b["subjects"]
    ]
    assert len(bindings) == 1
    role = rendered.get("ClusterRole", bindings[0]["roleRef"]["name"])
    assert {
        "apiGroups": ["custom.metrics.k8s.io"],
        "resources": ["*"],
        "verbs": ["get", "list", "watch"],
    } in role["rules"]


def test_hpa_targets_ask_for_metrics_the_metrics_server_serves() -> None:
    rendered = render("hpa-values.yaml")
    metrics = rendered.workload("metrics")
    (container,) = metrics["spec"]["template"]["spec"]["containers"]
    volume, key = mounted_path(metrics, container, env_of(container)["TEFLON_METRICS_CONFIG_FILE"]["value"])
    served = {
        m.name
        for m in parse_config(
            rendered.get("ConfigMap", volume["configMap"]["name"])["data"][key]
        ).all_metrics()
    }
    hpas = rendered.of_kind("HorizontalPodAutoscaler")
    assert hpas
    for hpa in hpas:
        assert hpa["apiVersion"] == "autoscaling/v2"
        for metric in hpa["spec"]["metrics"]:
            spec = metric[metric["type"].lower()]
            assert spec["metric"]["name"] in served


def _user_secrets(scenario: str | None) -> set[str]:
    """Secret names the scenario says the user creates (existingSecret-style values)."""
    if scenario is None:
        return set()
    found: set[str] = set()

    def walk(node: object) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                if key in {"existingSecret", "clientExistingSecret"} and isinstance(value, str):
                    found.add(value)
                walk(value)
        elif isinstance(node, list):
            for item in node:
                walk(item)

    walk(yaml.safe_load(SCENARIO_PATHS[scenario].read_text()))
    return found


@pytest.mark.parametrize("scenario", ALL)
def test_every_secret_a_pod_mounts_is_rendered_by_the_chart_or_named_by_the_user(
    scenario: str | None,
) -> None:
    rendered = render(scenario)
    provided = {s["metadata"]["name"] for s in rendered.of_kind("Secret")} | _user_secrets(scenario)
    provided |= {c["spec"]["secretName"] for c in rendered.of_kind("Certificate")}
    for kind in ("Deployment", "DaemonSet"):
        for workload in rendered.of_kind(kind):
            for volume in workload["spec"]["template"]["spec"]["volumes"]:
                if "secret" in volume:
                    assert volume["secret"]["secretName"] in provided, (
                        f"{workload['metadata']['name']} mounts Secret {volume['secret']['secretName']}, "
                        "which nothing creates"
                    )


def test_the_metrics_server_keeps_its_serving_certificate_when_verification_is_skipped() -> None:
    rendered = render(metrics={"apiService": {"insecureSkipTLSVerify": True}})
    names = {s["metadata"]["name"] for s in rendered.of_kind("Secret")}
    volumes = rendered.workload("metrics")["spec"]["template"]["spec"]["volumes"]
    assert {v["secret"]["secretName"] for v in volumes if "secret" in v} <= names


@pytest.mark.parametrize("webhook_enabled", [True, False])
def test_the_helm_test_script_is_valid_python(webhook_enabled: bool) -> None:
    overrides: dict[str, Any] = (
        {} if webhook_enabled else {"webhook": {"enabled": False}, "falco": {"enabled": False}}
    )
    (pod,) = [
        p
        for p in render(**overrides).of_kind("Pod")
        if p["metadata"]["annotations"]["helm.sh/hook"] == "test"
    ]
    (container,) = pod["spec"]["containers"]
    assert container["command"][:2] == ["python", "-c"]
    compile(container["command"][2], "helm-test", "exec")


@pytest.mark.parametrize("scenario", [s for s in ALL if s != "byo-falco-values.yaml"])
def test_every_enabled_runtime_socket_is_mounted_where_the_container_plugin_looks(
    scenario: str | None,
) -> None:
    rendered = render(scenario)
    (plugin,) = [p for p in _falco_config(rendered)["plugins"] if p["name"] == "container"]
    falco = _falco(rendered)
    container = falco_container(falco)
    host_root = env_of(container)["HOST_ROOT"]["value"]
    mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
    volumes = {v["name"]: v for v in falco["spec"]["template"]["spec"]["volumes"]}
    enabled = [e for e in plugin["init_config"]["engines"].values() if e["enabled"] and "sockets" in e]
    assert enabled
    for engine in enabled:
        for socket in engine["sockets"]:
            volume = volumes[mounts[host_root + socket]]
            assert volume["hostPath"]["path"] == socket
