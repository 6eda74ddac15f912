"""Metric values from any Prometheus-compatible HTTP API, through PromQL templates."""

from __future__ import annotations

import httpx

from teflon.metrics.backends import BackendError, Series, Target
from teflon.metrics.backends.promql import (
    FileSecret,
    PromQueryClient,
    render_query,
    tls_verify,
)
from teflon.metrics.config import MetricDef, PrometheusBackend
from teflon.metrics.selectors import Selector
from teflon.metrics.telemetry import Telemetry

#: The label that names the described object in the result, per resource (kube-state-metrics and
#: cAdvisor conventions). A metric overrides it with ``objectLabels``.
PROMETHEUS_OBJECT_LABELS = {
    "pods": "pod",
    "services": "service",
    "namespaces": "namespace",
    "nodes": "node",
    "deployments.apps": "deployment",
    "statefulsets.apps": "statefulset",
    "daemonsets.apps": "daemonset",
    "replicasets.apps": "replicaset",
    "jobs.batch": "job_name",
    "cronjobs.batch": "cronjob",
    "ingresses.networking.k8s.io": "ingress",
}


def match_series(
    series: list[Series], metric: MetricDef, target: Target, default_labels: dict[str, str]
) -> dict[str, float]:
    """Assign each series to the object its label names.

    A single series without that label answers a single-object question (``sum(...)`` queries).
    Two series for one object are an error: the query must aggregate, the server will not guess.
    """
    resource = target.rtype.resource
    label = metric.object_labels.get(resource) or default_labels.get(resource, "")
    wanted = set(target.names)
    if len(series) == 1 and label not in series[0].labels and len(target.names) == 1:
        return {target.names[0]: series[0].value}
    out: dict[str, float] = {}
    for s in series:
        obj = s.labels.get(label)
        if obj is None or obj not in wanted:
            continue
        if obj in out:
            raise BackendError(
                f"query for {metric.name} returned several series for {resource} {obj}; "
                f"aggregate them, e.g. sum by ({label}) (...)"
            )
        out[obj] = s.value
    return out


class PromQLBackend:
    """``Backend`` for Prometheus-compatible APIs; Sysdig reuses it with its own client."""

    def __init__(self, client: PromQueryClient, object_labels: dict[str, str]) -> None:
        self._client = client
        self._labels = object_labels

    async def fetch(self, metric: MetricDef, target: Target) -> dict[str, float]:
        namespace = target.namespace or (target.names[0] if len(target.names) == 1 else "")
        query = render_query(
            metric.query,
            namespace=namespace,
            names=target.names,
            selector=target.metric_selector,
            window_seconds=metric.window_seconds,
        )
        return match_series(await self._client.query(query), metric, target, self._labels)

    async def fetch_external(self, metric: MetricDef, namespace: str, selector: Selector) -> list[Series]:
        query = render_query(
            metric.query,
            namespace=namespace,
            names=(),
            selector=selector,
            window_seconds=metric.window_seconds,
        )
        return await self._client.query(query)

    async def aclose(self) -> None:
        await self._client.aclose()


def prometheus_backend(
    cfg: PrometheusBackend, telemetry: Telemetry, *, http: httpx.AsyncClient | None = None
) -> PromQLBackend:
    token = FileSecret(cfg.bearer_token_file) if cfg.bearer_token_file else None

    def headers() -> dict[str, str]:
        out = dict(cfg.headers)
        if token is not None:
            out["Authorization"] = f"Bearer {token.value()}"
        return out

    client = PromQueryClient(
        backend="prometheus",
        query_url=f"{cfg.url}/api/v1/query",
        headers=headers,
        timeout=cfg.timeout_seconds,
        telemetry=telemetry,
        verify=tls_verify(cfg.ca_file),
        http=http,
    )
    return PromQLBackend(client, PROMETHEUS_OBJECT_LABELS)
