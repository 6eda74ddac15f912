"""The backend registry: every backend the config file can set is built by exactly one factory."""

from __future__ import annotations

import typing
from pathlib import Path

import pytest

from teflon.common import kube
from teflon.metrics.backends.prometheus import PromQLBackend
from teflon.metrics.backends.registry import BACKENDS, BackendContext, build_backends, configured
from teflon.metrics.backends.teflon import TeflonRates
from teflon.metrics.config import Backends, ConfigError, parse_config
from teflon.metrics.telemetry import Telemetry


def test_every_backend_of_the_config_file_has_one_factory_for_its_model() -> None:
    assert list(BACKENDS) == list(Backends.model_fields)
    hints = typing.get_type_hints(Backends)
    for name, kind in BACKENDS.items():
        assert typing.get_args(hints[name]) == (kind.config, type(None)), name


async def test_the_configured_backends_are_built_and_no_others(tmp_path: Path, telemetry: Telemetry) -> None:
    token = tmp_path / "token"
    token.write_text("secret\n")
    config = parse_config(
        "backends:\n"
        "  teflon: {service: teflon-webhook, namespace: teflon}\n"
        f"  sysdig: {{region: eu1, tokenFile: {token}}}\n"
    )
    assert list(configured(config.backends)) == ["teflon", "sysdig"]
    client = kube.KubeClient(kube.Credentials("http://127.0.0.1:9", None, None, None, False, None))
    built = build_backends(config, BackendContext(client, telemetry))
    try:
        assert list(built) == ["teflon", "sysdig"]
        assert isinstance(built["teflon"], TeflonRates)
        assert isinstance(built["sysdig"], PromQLBackend)
    finally:
        for backend in built.values():
            await backend.aclose()
        await client.aclose()


def test_a_metric_naming_an_unknown_backend_is_refused_naming_the_known_ones() -> None:
    with pytest.raises(ConfigError, match="unknown backend 'graphite'; known: teflon, prometheus, sysdig"):
        parse_config("metrics: [{name: x, backend: graphite, resources: [pods], query: up}]")
