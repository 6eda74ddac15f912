"""Asynchronous access to the Kubernetes API, and the only module that imports the Kubernetes client.

The official client library is used for what it does best and what is easy to get wrong: finding and
loading credentials (in-cluster ServiceAccount tokens with rotation, kubeconfig files with client
certificates, tokens or exec plugins). Requests themselves go through one pooled ``httpx.AsyncClient``,
so every caller stays on the event loop instead of parking threads on a synchronous client.

Errors are raised as a small hierarchy that keeps the API server's ``Status`` body and chains the cause,
so callers can branch on meaning (``NotFound``, ``Conflict``, ``TooManyRequests``) instead of codes.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypeVar

import httpx
from kubernetes import client as k8s_client
from kubernetes import config as k8s_config

JSON = dict[str, Any]

log = logging.getLogger(__name__)
_T = TypeVar("_T")


class KubeError(Exception):
    """A Kubernetes API call failed; ``status`` is the HTTP code (0 when the server was not reached)."""

    def __init__(self, message: str, *, status: int = 0, body: JSON | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.body = body or {}

    @property
    def reason(self) -> str:
        return str(self.body.get("reason", ""))


class Unreachable(KubeError):
    """The API server did not answer (connection refused, TLS failure, timeout)."""


class BadRequest(KubeError):
    """400 or 422: the request itself is wrong; retrying will not help."""


class Unauthorized(KubeError):
    """401: our credentials were rejected."""


class Forbidden(KubeError):
    """403: RBAC refuses the call."""


class NotFound(KubeError):
    """404: the object (or the resource type) does not exist."""


class Conflict(KubeError):
    """409: a precondition (UID, resourceVersion) failed or the object already exists."""


class TooManyRequests(KubeError):
    """429: throttled, or an eviction refused by a PodDisruptionBudget."""


class ServerError(KubeError):
    """5xx: the API server failed; retrying later may help."""


_BY_STATUS: dict[int, type[KubeError]] = {
    400: BadRequest,
    401: Unauthorized,
    403: Forbidden,
    404: NotFound,
    409: Conflict,
    422: BadRequest,
    429: TooManyRequests,
}

RETRYABLE: tuple[type[KubeError], ...] = (Unreachable, ServerError, TooManyRequests)


@dataclass(frozen=True)
class RetryPolicy:
    """Which errors a repeated call may get past, for calls that are safe to repeat."""

    name: str
    retry_on: tuple[type[KubeError], ...]


# Reads: every error a later attempt may not hit, throttling included.
READS = RetryPolicy("reads", RETRYABLE)
# Writes guarded by a UID or resourceVersion precondition, or by a fixed object name. A 429 is an
# answer to a write (a PodDisruptionBudget refusing an eviction), not throttling to retry through.
WRITES = RetryPolicy("writes", tuple(e for e in RETRYABLE if e is not TooManyRequests))


@dataclass(frozen=True)
class Retrier:
    """Repeats a call with exponential backoff, ``attempts`` times at most, under a ``RetryPolicy``."""

    attempts: int = 4
    backoff_seconds: float = 0.2

    async def __call__(self, call: Callable[[], Awaitable[_T]], policy: RetryPolicy) -> _T:
        delay = self.backoff_seconds
        for attempt in range(1, self.attempts + 1):
            try:
                return await call()
            except policy.retry_on as exc:
                if attempt == self.attempts:
                    raise
                log.warning(
                    "kubernetes call failed, retrying",
                    extra={"error": str(exc), "attempt": attempt, "retry_policy": policy.name},
                )
                await asyncio.sleep(delay)
                delay *= 2
        raise AssertionError("unreachable")  # pragma: no cover


@dataclass(frozen=True)
class Resource:
    """One Kubernetes resource type: how its objects are named in REST paths."""

    kind: str
    api_version: str  # ``v1`` or ``group/version``
    plural: str
    namespaced: bool = True

    @property
    def group(self) -> str:
        return self.api_version.rpartition("/")[0]

    def path(self, namespace: str | None = None, name: str | None = None) -> str:
        """The collection path (``name`` None) or the object path, in ``namespace`` if namespaced."""
        base = "/api/v1" if self.api_version == "v1" else f"/apis/{self.api_version}"
        if self.namespaced:
            base = f"{base}/namespaces/{namespace}"
        return f"{base}/{self.plural}" + (f"/{name}" if name is not None else "")


# The one table of resource paths: every Kubernetes resource teflon reads or writes, by kind.
RESOURCES: dict[str, Resource] = {
    r.kind: r
    for r in (
        Resource("Pod", "v1", "pods"),
        Resource("Service", "v1", "services"),
        Resource("ConfigMap", "v1", "configmaps"),
        Resource("Namespace", "v1", "namespaces", namespaced=False),
        Resource("Node", "v1", "nodes", namespaced=False),
        Resource("Deployment", "apps/v1", "deployments"),
        Resource("StatefulSet", "apps/v1", "statefulsets"),
        Resource("DaemonSet", "apps/v1", "daemonsets"),
        Resource("ReplicaSet", "apps/v1", "replicasets"),
        Resource("Job", "batch/v1", "jobs"),
        Resource("CronJob", "batch/v1", "cronjobs"),
        Resource("Ingress", "networking.k8s.io/v1", "ingresses"),
        Resource("NetworkPolicy", "networking.k8s.io/v1", "networkpolicies"),
        Resource("Lease", "coordination.k8s.io/v1", "leases"),
        Resource("Event", "events.k8s.io/v1", "events"),
        Resource("EndpointSlice", "discovery.k8s.io/v1", "endpointslices"),
        Resource("TokenReview", "authentication.k8s.io/v1", "tokenreviews", namespaced=False),
        Resource("SubjectAccessReview", "authorization.k8s.io/v1", "subjectaccessreviews", namespaced=False),
    )
}


def resource_of(api_version: str, kind: str) -> Resource | None:
    """The known resource of ``kind`` served at exactly ``api_version``, or None."""
    found = RESOURCES.get(kind)
    return found if found is not None and found.api_version == api_version else None


def micro_time(when: datetime) -> str:
    """A MicroTime as the API server parses it: exactly six fractional digits, UTC, ``Z``."""
    return when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def error_for(status: int, body: JSON | None, what: str) -> KubeError:
    """Build the typed error for an HTTP ``status`` with the server's ``Status`` ``body``."""
    kind = _BY_STATUS.get(status, ServerError if status >= 500 else KubeError)
    message = str((body or {}).get("message") or f"HTTP {status}")
    return kind(f"{what}: {message}", status=status, body=body)


@dataclass(frozen=True)
class Credentials:
    """Where the API server is and how to prove who we are, as loaded by the client library."""

    server: str
    ca_file: str | None
    cert_file: str | None
    key_file: str | None
    verify: bool
    _configuration: Any

    def authorization(self) -> str | None:
        """The current ``Authorization`` header value; re-read each call so rotated tokens are used.

        The client library files bearer tokens (kubeconfig ``token``, in-cluster ServiceAccount) under
        ``BearerToken``; older releases used ``authorization``.
        """
        value = self._configuration.get_api_key_with_prefix("BearerToken", alias="authorization")
        return str(value) if value else None


def load_credentials(kubeconfig: str | None = None, context: str | None = None) -> Credentials:
    """Load credentials from ``kubeconfig`` if given, else in-cluster, else the default kubeconfig.

    Raises ``KubeError`` with a readable message when none can be found.
    """
    cfg = k8s_client.Configuration()
    try:
        if kubeconfig:
            k8s_config.load_kube_config(config_file=kubeconfig, context=context, client_configuration=cfg)
        else:
            try:
                k8s_config.load_incluster_config(client_configuration=cfg)
            except k8s_config.ConfigException:
                k8s_config.load_kube_config(context=context, client_configuration=cfg)
    except (k8s_config.ConfigException, OSError, TypeError, ValueError) as exc:
        raise KubeError(f"no usable Kubernetes credentials: {exc}") from exc
    return Credentials(
        server=str(cfg.host).rstrip("/"),
        ca_file=cfg.ssl_ca_cert,
        cert_file=cfg.cert_file,
        key_file=cfg.key_file,
        verify=bool(cfg.verify_ssl),
        _configuration=cfg,
    )


def _ssl_context(creds: Credentials) -> ssl.SSLContext | bool:
    if not creds.server.startswith("https"):
        return False
    if creds.verify:
        ctx = ssl.create_default_context(cafile=creds.ca_file)
    else:  # the kubeconfig says insecure-skip-tls-verify; honour it as kubectl does
        ctx = ssl._create_unverified_context()  # noqa: S323
    if creds.cert_file and creds.key_file:
        ctx.load_cert_chain(creds.cert_file, creds.key_file)
    return ctx


class KubeClient:
    """A small JSON client for the Kubernetes REST API.

    ``request`` returns the decoded body, or raises a ``KubeError`` subclass. Nothing here retries:
    callers decide what is safe to repeat.
    """

    def __init__(
        self,
        creds: Credentials,
        *,
        timeout: float = 10.0,
        user_agent: str = "teflon",
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        """``transport`` replaces the network (tests and traces); TLS settings then do not apply."""
        self._creds = creds
        self._http = httpx.AsyncClient(
            base_url=creds.server,
            transport=transport,
            verify=_ssl_context(creds),
            timeout=timeout,
            headers={"User-Agent": user_agent, "Accept": "application/json"},
            limits=httpx.Limits(max_connections=32, max_keepalive_connections=8),
        )

    @classmethod
    def from_config(cls, kubeconfig: str | None = None, *, timeout: float = 10.0) -> KubeClient:
        return cls(load_credentials(kubeconfig), timeout=timeout)

    @property
    def server(self) -> str:
        return self._creds.server

    async def request(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, str | int | bool] | None = None,
        body: Any = None,
        content_type: str = "application/json",
    ) -> JSON:
        headers = {"Content-Type": content_type}
        auth = self._creds.authorization()
        if auth:
            headers["Authorization"] = auth
        what = f"{method} {path}"
        try:
            resp = await self._http.request(method, path, params=params, json=body, headers=headers)
        except httpx.HTTPError as exc:
            raise Unreachable(f"{what}: {type(exc).__name__}: {exc}") from exc
        try:
            doc = resp.json() if resp.content else {}
        except ValueError:
            doc = {"message": resp.text[:500]}
        if not isinstance(doc, dict):
            doc = {"items": doc}
        if resp.status_code >= 400:
            raise error_for(resp.status_code, doc, what)
        return doc

    async def get(self, path: str, *, params: Mapping[str, str | int | bool] | None = None) -> JSON:
        return await self.request("GET", path, params=params)

    async def post(self, path: str, body: Any) -> JSON:
        return await self.request("POST", path, body=body)

    async def patch(self, path: str, body: Any, *, patch_type: str = "merge") -> JSON:
        types = {
            "merge": "application/merge-patch+json",
            "strategic": "application/strategic-merge-patch+json",
            "json": "application/json-patch+json",
        }
        return await self.request("PATCH", path, body=body, content_type=types[patch_type])

    async def delete(self, path: str, body: Any = None) -> JSON:
        return await self.request("DELETE", path, body=body)

    async def aclose(self) -> None:
        await self._http.aclose()
