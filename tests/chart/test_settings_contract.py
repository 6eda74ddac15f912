"""Every environment variable the chart renders is a field of the component's Settings, and the values
it renders are ones those Settings accept."""

from __future__ import annotations

import os

import pytest
from pydantic_settings import BaseSettings

from teflon.metrics.settings import Settings as MetricsSettings
from teflon.webhook.settings import Settings as WebhookSettings

from .rendering import SCENARIOS, containers, env_of, render

COMPONENTS: dict[str, tuple[str, type[BaseSettings]]] = {
    "webhook": ("TEFLON_WEBHOOK_", WebhookSettings),
    "metrics": ("TEFLON_METRICS_", MetricsSettings),
}
SCENARIO_COMPONENTS = [(s, c) for s in [None, *SCENARIOS] for c in COMPONENTS]


def _field_names(settings: type[BaseSettings]) -> set[str]:
    return set(settings.model_fields)


@pytest.mark.parametrize(("scenario", "component"), SCENARIO_COMPONENTS)
def test_every_rendered_env_var_is_a_settings_field(scenario: str | None, component: str) -> None:
    prefix, settings = COMPONENTS[component]
    workload = render(scenario).workload(component)
    for container in containers(workload):
        for name in env_of(container):
            assert name.startswith(prefix), f"{component} container renders {name} outside {prefix}"
            field = name.removeprefix(prefix).lower()
            assert field in _field_names(settings), (
                f"{name} is rendered for {component}, "
                f"but {settings.__module__}.Settings has no field {field!r}"
            )


@pytest.mark.parametrize(("scenario", "component"), SCENARIO_COMPONENTS)
def test_every_required_settings_field_is_rendered(scenario: str | None, component: str) -> None:
    prefix, settings = COMPONENTS[component]
    (container,) = render(scenario).workload(component)["spec"]["template"]["spec"]["containers"]
    rendered = {n.removeprefix(prefix).lower() for n in env_of(container)}
    required = {name for name, f in settings.model_fields.items() if f.is_required()}
    assert required <= rendered, f"required {component} settings not rendered: {sorted(required - rendered)}"


@pytest.mark.parametrize(("scenario", "component"), SCENARIO_COMPONENTS)
def test_rendered_env_values_are_accepted_by_the_settings_class(
    scenario: str | None, component: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    prefix, settings = COMPONENTS[component]
    (container,) = render(scenario).workload(component)["spec"]["template"]["spec"]["containers"]
    for name in list(os.environ):
        if name.startswith(prefix):
            monkeypatch.delenv(name)
    for name, var in env_of(container).items():
        # Downward-API values (namespace, pod name) come from the kubelet; stand in a plausible one.
        value = var.get("value", "teflon-0")
        monkeypatch.setenv(name, value)
    settings()  # raises ValidationError, naming the variable, if the chart renders a value it rejects


def test_large_numbers_are_rendered_as_plain_integers() -> None:
    (container,) = render().workload("webhook")["spec"]["template"]["spec"]["containers"]
    env = env_of(container)
    assert env["TEFLON_WEBHOOK_MAX_BODY_BYTES"]["value"] == "1048576"
    assert env["TEFLON_WEBHOOK_RATE_MAX_TRACKED"]["value"] == "50000"


def test_the_webhook_learns_its_namespace_and_pod_name_from_the_downward_api() -> None:
    (container,) = render().workload("webhook")["spec"]["template"]["spec"]["containers"]
    env = env_of(container)
    assert env["TEFLON_WEBHOOK_NAMESPACE"]["valueFrom"] == {"fieldRef": {"fieldPath": "metadata.namespace"}}
    assert env["TEFLON_WEBHOOK_POD_NAME"]["valueFrom"] == {"fieldRef": {"fieldPath": "metadata.name"}}


def test_ports_rendered_for_each_component_match_the_container_ports() -> None:
    rendered = render()
    for component, ports in {"webhook": ("PORT", "OPS_PORT"), "metrics": ("PORT", "OPS_PORT")}.items():
        prefix, _ = COMPONENTS[component]
        (container,) = rendered.workload(component)["spec"]["template"]["spec"]["containers"]
        env = env_of(container)
        container_ports = {p["containerPort"] for p in container["ports"]}
        for port in ports:
            assert int(env[prefix + port]["value"]) in container_ports
