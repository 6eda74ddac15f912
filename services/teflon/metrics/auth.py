"""Who is asking, and may they: authentication and authorization as an extension API server does it.

Authentication follows ``k8s.io/apiserver``'s delegating authenticator, in its order:

1. **Front proxy.** A connection whose client certificate chains to the ``requestheader-client-ca-file``
   CA and whose CN is in ``requestheader-allowed-names`` (an empty list allows any CN from that CA) may
   assert a user with the configured headers (``X-Remote-User``, ``X-Remote-Group``,
   ``X-Remote-Extra-*``). On any other connection those headers are ignored, whatever they say.
2. **Client certificate.** A certificate that chains to ``client-ca-file``: user = CN, groups = O plus
   ``system:authenticated``.
3. **Bearer token.** ``Authorization: Bearer`` checked with a TokenReview (answers, failures included,
   cached 10 s; at most 10 reviews of new tokens a second, the rest refused unreviewed).

Everyone else is anonymous and refused. The CAs and header names come from the
``kube-system/extension-apiserver-authentication`` ConfigMap, re-read periodically because CAs rotate.

Authorization asks the API server with a SubjectAccessReview (answers cached a few seconds); members of
``system:masters`` are allowed without asking, as the aggregator's availability probe must never wait.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol
from urllib.parse import unquote

from cryptography import x509

from teflon.common import kube
from teflon.metrics.telemetry import Telemetry
from teflon.metrics.tls import common_name, organizations, verify_client_chain

log = logging.getLogger(__name__)

AUTH_CONFIGMAP = kube.RESOURCES["ConfigMap"].path("kube-system", "extension-apiserver-authentication")
SYSTEM_MASTERS = "system:masters"
SYSTEM_AUTHENTICATED = "system:authenticated"


class AuthError(Exception):
    """Authentication or authorization could not be decided (the review API failed)."""


@dataclass(frozen=True)
class UserInfo:
    name: str
    uid: str = ""
    groups: tuple[str, ...] = ()
    extra: tuple[tuple[str, tuple[str, ...]], ...] = ()
    method: str = ""

    def extra_dict(self) -> dict[str, list[str]]:
        return {k: list(v) for k, v in self.extra}


@dataclass(frozen=True)
class AuthConfig:
    """The parsed ``extension-apiserver-authentication`` ConfigMap."""

    client_cas: tuple[x509.Certificate, ...] = ()
    requestheader_cas: tuple[x509.Certificate, ...] = ()
    allowed_names: tuple[str, ...] = ()
    username_headers: tuple[str, ...] = ()
    uid_headers: tuple[str, ...] = ()
    group_headers: tuple[str, ...] = ()
    extra_prefixes: tuple[str, ...] = ()

    def all_cas(self) -> list[x509.Certificate]:
        return [*self.requestheader_cas, *self.client_cas]


def _pem_certs(text: str, what: str) -> tuple[x509.Certificate, ...]:
    if not text.strip():
        return ()
    try:
        return tuple(x509.load_pem_x509_certificates(text.encode("ascii")))
    except ValueError as exc:
        raise ValueError(f"{what}: not a PEM certificate bundle: {exc}") from exc


def _json_list(data: dict[str, str], key: str) -> tuple[str, ...]:
    raw = data.get(key, "")
    if not raw.strip():
        return ()
    try:
        value = json.loads(raw)
    except ValueError as exc:
        raise ValueError(f"{key}: not a JSON list: {exc}") from exc
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ValueError(f"{key}: expected a JSON list of strings")
    return tuple(value)


def _lower(values: tuple[str, ...]) -> tuple[str, ...]:
    # header names compare case-insensitively; ASGI hands them over lower-cased
    return tuple(v.lower() for v in values)


def parse_auth_config(data: dict[str, str]) -> AuthConfig:
    """Parse the ConfigMap's ``data``; ``ValueError`` naming the bad key."""
    return AuthConfig(
        client_cas=_pem_certs(data.get("client-ca-file", ""), "client-ca-file"),
        requestheader_cas=_pem_certs(
            data.get("requestheader-client-ca-file", ""), "requestheader-client-ca-file"
        ),
        allowed_names=_json_list(data, "requestheader-allowed-names"),
        username_headers=_lower(_json_list(data, "requestheader-username-headers")),
        uid_headers=_lower(_json_list(data, "requestheader-uid-headers")),
        group_headers=_lower(_json_list(data, "requestheader-group-headers")),
        extra_prefixes=_lower(_json_list(data, "requestheader-extra-headers-prefix")),
    )


class AuthConfigSource:
    """The current ``AuthConfig``, refreshed from the API server; ``on_change`` sees each new one."""

    def __init__(
        self,
        client: kube.KubeClient,
        *,
        on_change: Callable[[AuthConfig], None] | None = None,
    ) -> None:
        self._client = client
        self._on_change = on_change
        self.current: AuthConfig | None = None
        self._raw: dict[str, str] | None = None

    async def refresh(self) -> AuthConfig:
        try:
            doc = await self._client.get(AUTH_CONFIGMAP)
        except kube.KubeError as exc:
            raise AuthError(f"cannot read extension-apiserver-authentication: {exc}") from exc
        data = {str(k): str(v) for k, v in (doc.get("data") or {}).items()}
        if data != self._raw or self.current is None:
            try:
                cfg = parse_auth_config(data)
            except ValueError as exc:
                raise AuthError(f"extension-apiserver-authentication: {exc}") from exc
            self.current, self._raw = cfg, data
            if self._on_change is not None:
                self._on_change(cfg)
            log.info(
                "authentication config loaded",
                extra={
                    "requestheader_cas": len(cfg.requestheader_cas),
                    "client_cas": len(cfg.client_cas),
                    "allowed_names": list(cfg.allowed_names),
                },
            )
        return self.current

    async def run(self, every: float) -> None:
        """Refresh forever; a failed refresh keeps the last good config and is logged."""
        while True:
            await asyncio.sleep(every)
            try:
                await self.refresh()
            except AuthError as exc:
                log.warning("authentication config refresh failed", extra={"error": str(exc)})


class StaticAuthConfig:
    """A fixed ``AuthConfig`` (tests and benchmarks)."""

    def __init__(self, cfg: AuthConfig) -> None:
        self.current: AuthConfig | None = cfg


class HasAuthConfig(Protocol):
    @property
    def current(self) -> AuthConfig | None: ...


class TokenReviewer(Protocol):
    async def review(self, token: str) -> UserInfo | None:
        """The user a token belongs to, None if the API server says it is not authenticated."""
        ...


class AccessReviewer(Protocol):
    async def allowed(self, user: UserInfo, attrs: Attributes) -> tuple[bool, str]:
        """Whether ``user`` may do ``attrs``, and the reason given."""
        ...


@dataclass(frozen=True)
class Attributes:
    """What a request does, in SubjectAccessReview terms."""

    verb: str = "get"
    path: str = ""  # set for non-resource requests (discovery)
    namespace: str = ""
    group: str = ""
    version: str = ""
    resource: str = ""
    subresource: str = ""
    name: str = ""

    def to_spec(self) -> dict[str, Any]:
        if self.path:
            return {"nonResourceAttributes": {"path": self.path, "verb": self.verb}}
        return {
            "resourceAttributes": {
                "namespace": self.namespace,
                "verb": self.verb,
                "group": self.group,
                "version": self.version,
                "resource": self.resource,
                "subresource": self.subresource,
                "name": self.name,
            }
        }


@dataclass
class Headers:
    """Request headers as (lower-case name, value) pairs, repeated names kept."""

    pairs: Sequence[tuple[str, str]] = field(default_factory=list)

    def all(self, name: str) -> list[str]:
        return [v for k, v in self.pairs if k == name]

    def first(self, names: Sequence[str]) -> str:
        for name in names:
            for v in self.all(name):
                if v:
                    return v
        return ""


class Authenticator:
    """Decides who a request comes from; None means anonymous."""

    def __init__(self, config: HasAuthConfig, tokens: TokenReviewer, telemetry: Telemetry) -> None:
        self._config = config
        self._tokens = tokens
        self._telemetry = telemetry

    def _front_proxy_user(self, cfg: AuthConfig, headers: Headers) -> UserInfo | None:
        name = headers.first(cfg.username_headers)
        if not name:
            return None
        groups = tuple(g for h in cfg.group_headers for g in headers.all(h))
        # As k8s.io/apiserver's authenticator does: every authenticated user is in system:authenticated.
        # The aggregator's legacy discovery fetch names system:kube-aggregator with no group at all; only
        # through this group does RBAC's system:discovery let it read /apis/<group>/<version>. Without it
        # the aggregated discovery marks the group Stale and the HPA finds no metric versions.
        if SYSTEM_AUTHENTICATED not in groups:
            groups = (*groups, SYSTEM_AUTHENTICATED)
        extra: dict[str, list[str]] = {}
        for k, v in headers.pairs:
            for prefix in cfg.extra_prefixes:
                if k.startswith(prefix) and len(k) > len(prefix):
                    extra.setdefault(unquote(k[len(prefix) :]).lower(), []).append(v)
        return UserInfo(
            name=name,
            uid=headers.first(cfg.uid_headers),
            groups=groups,
            extra=tuple(sorted((k, tuple(v)) for k, v in extra.items())),
            method="frontproxy",
        )

    async def authenticate(self, headers: Headers, chain: list[x509.Certificate]) -> UserInfo | None:
        cfg = self._config.current
        if cfg is None:
            raise AuthError("authentication config not loaded yet")
        if chain:
            leaf = chain[0]
            if verify_client_chain(chain, list(cfg.requestheader_cas)):
                cn = common_name(leaf)
                if not cfg.allowed_names or cn in cfg.allowed_names:
                    user = self._front_proxy_user(cfg, headers)
                    if user is not None:
                        self._telemetry.auth.labels("frontproxy", "ok").inc()
                        return user
                else:
                    self._telemetry.auth.labels("frontproxy", "name_not_allowed").inc()
                    log.warning(
                        "front-proxy certificate CN not allowed; identity headers ignored", extra={"cn": cn}
                    )
            if verify_client_chain(chain, list(cfg.client_cas)):
                cn = common_name(leaf)
                if cn:
                    self._telemetry.auth.labels("clientcert", "ok").inc()
                    # Like the front-proxy path: k8s.io/apiserver puts every authenticated user in
                    # system:authenticated, and RBAC bindings to that group must apply here too.
                    groups = tuple(g for g in organizations(leaf) if g != SYSTEM_AUTHENTICATED)
                    return UserInfo(name=cn, groups=(*groups, SYSTEM_AUTHENTICATED), method="clientcert")
        auth = headers.first(["authorization"])
        scheme, _, token = auth.partition(" ")
        if scheme.lower() == "bearer" and token.strip():
            user = await self._tokens.review(token.strip())
            self._telemetry.auth.labels("token", "ok" if user else "rejected").inc()
            if user is not None:
                return user
        self._telemetry.auth.labels("anonymous", "refused").inc()
        return None


class Authorizer:
    """``system:masters`` passes; everyone else is asked about with a SubjectAccessReview."""

    def __init__(self, reviewer: AccessReviewer) -> None:
        self._reviewer = reviewer

    async def authorize(self, user: UserInfo, attrs: Attributes) -> tuple[bool, str]:
        if SYSTEM_MASTERS in user.groups:
            return True, "system:masters"
        return await self._reviewer.allowed(user, attrs)
