"""The Kubernetes API's answers to "who is this token" and "may this user": TokenReview and
SubjectAccessReview, each cached (``teflon.common.caching.TTLCache``) and bounded.

These implement the ``TokenReviewer`` and ``AccessReviewer`` Protocols of ``teflon.metrics.auth``;
tests pass fakes of those instead.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Callable
from typing import Any

from teflon.common import kube
from teflon.common.caching import TTLCache
from teflon.metrics.auth import Attributes, AuthError, UserInfo

# The auth logger: its refusal lines are throttled together with the rest of authentication.
log = logging.getLogger("teflon.metrics.auth")

# Answers kept per reviewer; a full cache drops expired answers first, then the oldest.
_CACHE_ENTRIES = 4096


class KubeTokenReviewer:
    """``TokenReviewer`` via ``authentication.k8s.io/v1`` TokenReview, answers cached ``ttl`` seconds.

    Failed reviews are cached like successful ones, so a token repeated is reviewed once per ``ttl``;
    tokens never seen before are reviewed at most ``per_second`` times a second. Past that they are
    refused unreviewed: a flood of random tokens must not become a flood of TokenReviews against the
    API server (whose own clients, the aggregator and the HPA controller, authenticate otherwise).
    """

    def __init__(
        self,
        client: kube.KubeClient,
        ttl: float = 10.0,
        *,
        per_second: int = 10,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._client = client
        self._cache: TTLCache[str, UserInfo | None] = TTLCache(ttl=ttl, cap=_CACHE_ENTRIES, clock=clock)
        self._per_second = per_second
        self._clock = clock
        self._second = -1.0
        self._reviews = 0
        self.unreviewed = 0

    def _may_review(self) -> bool:
        now = self._clock()
        if now - self._second >= 1.0:
            self._second, self._reviews = now, 0
        if self._reviews >= self._per_second:
            self.unreviewed += 1
            log.warning("TokenReview limit reached; new tokens are refused unreviewed for now")
            return False
        self._reviews += 1
        return True

    async def review(self, token: str) -> UserInfo | None:
        key = hashlib.sha256(token.encode()).hexdigest()  # never keep the token itself
        hit, value = self._cache.get(key)
        if hit:
            return value
        if not self._may_review():
            return None
        body = {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview", "spec": {"token": token}}
        try:
            doc = await self._client.post(kube.RESOURCES["TokenReview"].path(), body)
        except kube.KubeError as exc:
            raise AuthError(f"TokenReview failed: {exc}") from exc
        status = doc.get("status") or {}
        user: UserInfo | None = None
        if status.get("authenticated"):
            u = status.get("user") or {}
            user = UserInfo(
                name=str(u.get("username", "")),
                uid=str(u.get("uid", "")),
                groups=tuple(u.get("groups") or ()),
                extra=tuple(sorted((k, tuple(v)) for k, v in (u.get("extra") or {}).items())),
                method="token",
            )
            if not user.name:
                user = None
        self._cache.put(key, user)
        return user


class KubeAccessReviewer:
    """``AccessReviewer`` via ``authorization.k8s.io/v1`` SubjectAccessReview, cached ``ttl`` seconds."""

    def __init__(self, client: kube.KubeClient, ttl: float = 5.0) -> None:
        self._client = client
        self._cache: TTLCache[tuple[object, ...], tuple[bool, str]] = TTLCache(ttl=ttl, cap=_CACHE_ENTRIES)

    async def allowed(self, user: UserInfo, attrs: Attributes) -> tuple[bool, str]:
        key = (user.name, user.uid, user.groups, user.extra, attrs)
        hit, value = self._cache.get(key)
        if hit and value is not None:
            return value
        spec: dict[str, Any] = {"user": user.name, "groups": list(user.groups), **attrs.to_spec()}
        if user.uid:
            spec["uid"] = user.uid
        if user.extra:
            spec["extra"] = user.extra_dict()
        body = {"apiVersion": "authorization.k8s.io/v1", "kind": "SubjectAccessReview", "spec": spec}
        try:
            doc = await self._client.post(kube.RESOURCES["SubjectAccessReview"].path(), body)
        except kube.KubeError as exc:
            raise AuthError(f"SubjectAccessReview failed: {exc}") from exc
        status = doc.get("status") or {}
        result = (bool(status.get("allowed")), str(status.get("reason", "")))
        self._cache.put(key, result)
        return result
