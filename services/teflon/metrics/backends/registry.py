"""The backend registry: each backend's name, its configuration model and the factory that builds it.

``teflon.metrics.config.Backends`` has one optional field per backend (the ``backends:`` section of the
config file); this table says how to build each configured one. A new PromQL-style backend is a config
model and a ``Backends`` field, a module with its factory (``PromQLBackend`` over ``PromQueryClient``
does the querying), one entry here, and its chart values (CONTRIBUTING.md walks the files).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from pydantic import BaseModel

from teflon.common import kube
from teflon.metrics.backends import Backend
from teflon.metrics.backends.prometheus import prometheus_backend
from teflon.metrics.backends.sysdig import sysdig_backend
from teflon.metrics.backends.teflon import EndpointSliceReplicas, TeflonRates
from teflon.metrics.config import Backends, MetricsConfig, PrometheusBackend, SysdigBackend, TeflonBackend
from teflon.metrics.telemetry import Telemetry

C = TypeVar("C", bound=BaseModel)


@dataclass(frozen=True)
class BackendContext:
    """What a factory may use besides its own configuration."""

    client: kube.KubeClient
    telemetry: Telemetry


@dataclass(frozen=True)
class BackendKind(Generic[C]):
    """One backend: its configuration model and how to build it from that configuration."""

    config: type[C]
    build: Callable[[C, BackendContext], Backend]

    def create(self, cfg: BaseModel, ctx: BackendContext) -> Backend:
        if not isinstance(cfg, self.config):  # pragma: no cover - Backends and this table agree (tested)
            raise TypeError(f"expected {self.config.__name__}, got {type(cfg).__name__}")
        return self.build(cfg, ctx)


def _teflon(cfg: TeflonBackend, ctx: BackendContext) -> Backend:
    finder = EndpointSliceReplicas(ctx.client, cfg.namespace, cfg.service, cfg.port_name)
    return TeflonRates(cfg, finder, ctx.telemetry)


def _prometheus(cfg: PrometheusBackend, ctx: BackendContext) -> Backend:
    return prometheus_backend(cfg, ctx.telemetry)


def _sysdig(cfg: SysdigBackend, ctx: BackendContext) -> Backend:
    return sysdig_backend(cfg, ctx.telemetry)


#: Every backend by the name metric definitions use (``backend: <name>``) and ``backends.<name>`` sets.
BACKENDS: dict[str, BackendKind[Any]] = {
    "teflon": BackendKind(TeflonBackend, _teflon),
    "prometheus": BackendKind(PrometheusBackend, _prometheus),
    "sysdig": BackendKind(SysdigBackend, _sysdig),
}


def configured(backends: Backends) -> dict[str, BaseModel]:
    """The configuration of each backend the config file sets, by name."""
    return {name: cfg for name in Backends.model_fields if (cfg := getattr(backends, name)) is not None}


def build_backends(config: MetricsConfig, ctx: BackendContext) -> dict[str, Backend]:
    """One backend for each configured in ``config``."""
    return {name: BACKENDS[name].create(cfg, ctx) for name, cfg in configured(config.backends).items()}
