"""Metric values from Sysdig Monitor through its Prometheus-compatible API.

Sysdig serves the standard Prometheus query API under ``{base}/prometheus/api/v1/query`` and takes a
Monitor API token (user, team or global service account) as ``Authorization: Bearer``. The base URL is a
region preset (``region: eu1``) or an explicit ``url``. Sysdig publishes no numeric rate limit; a 429
(or 503) is retried with ``Retry-After`` or jittered exponential backoff, within the query deadline.

Classic metrics map to PromQL names by entity prefix with dots replaced: the classic example of scaling
on a Service's HTTP request rate, ``net.http.request.count``, is ``sysdig_container_net_http_request_count``
(per container, labelled with ``kube_namespace_name``, ``kube_service_name``, ``kube_deployment_name``,
``kube_pod_name``); ``NET_HTTP_REQUEST_COUNT_QUERY`` below is the query, configured as::

    metrics:
      - name: net.http.request.count
        backend: sysdig
        resources: [services]
        query: >-
          sum by (kube_service_name) (sysdig_container_net_http_request_count{
          kube_namespace_name="{{ .namespace }}", kube_service_name=~"{{ .names }}"})
        windowSeconds: 60

Whether a Sysdig "count" sample is a per-second rate or a per-sample count depends on the account's
aggregation settings; check a value against the Sysdig UI before choosing an HPA target.
"""

from __future__ import annotations

import httpx

from teflon.metrics.backends.prometheus import PromQLBackend
from teflon.metrics.backends.promql import FileSecret, PromQueryClient, tls_verify
from teflon.metrics.config import SysdigBackend
from teflon.metrics.telemetry import Telemetry

#: HTTP request rate of a Service from the classic ``net.http.request.count`` metric.
NET_HTTP_REQUEST_COUNT_QUERY = (
    "sum by (kube_service_name) (sysdig_container_net_http_request_count{"
    'kube_namespace_name="{{ .namespace }}", kube_service_name=~"{{ .names }}"})'
)

#: Sysdig's Kubernetes labels for the described object of each resource.
SYSDIG_OBJECT_LABELS = {
    "pods": "kube_pod_name",
    "services": "kube_service_name",
    "namespaces": "kube_namespace_name",
    "nodes": "host_hostname",
    "deployments.apps": "kube_deployment_name",
    "statefulsets.apps": "kube_statefulset_name",
    "daemonsets.apps": "kube_daemonset_name",
    "replicasets.apps": "kube_replicaset_name",
    "jobs.batch": "kube_job_name",
    "cronjobs.batch": "kube_cronjob_name",
}


def sysdig_backend(
    cfg: SysdigBackend, telemetry: Telemetry, *, http: httpx.AsyncClient | None = None
) -> PromQLBackend:
    token = FileSecret(cfg.token_file)

    def headers() -> dict[str, str]:
        return {"Authorization": f"Bearer {token.value()}", "Accept": "application/json"}

    client = PromQueryClient(
        backend="sysdig",
        query_url=f"{cfg.base_url}/prometheus/api/v1/query",
        headers=headers,
        timeout=cfg.timeout_seconds,
        telemetry=telemetry,
        verify=tls_verify(cfg.ca_file),
        http=http,
        max_retries=cfg.max_retries,
    )
    return PromQLBackend(client, SYSDIG_OBJECT_LABELS)
