"""300 random bearer tokens to the metrics server cost a bounded number of TokenReviews.

Every failed review is cached like a successful one, and tokens never seen before are reviewed at most
ten times a second: the rest are refused unreviewed, so the API server is not made to pay for a flood.
"""

from __future__ import annotations

import secrets
from typing import Any, cast

from teflon.common import kube
from teflon.metrics.reviews import KubeTokenReviewer

GOOD = "good-token"


class FakeApiServer:
    """Answers TokenReviews: only ``GOOD`` is authenticated. Counts what it was asked."""

    def __init__(self) -> None:
        self.reviews = 0

    async def post(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        assert path.endswith("/tokenreviews")
        self.reviews += 1
        if body["spec"]["token"] == GOOD:
            return {"status": {"authenticated": True, "user": {"username": "prometheus", "groups": ["g"]}}}
        return {"status": {"authenticated": False}}


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def test_a_flood_of_random_tokens_is_bounded_and_a_good_token_still_passes_afterwards() -> None:
    api, clock = FakeApiServer(), Clock()
    reviewer = KubeTokenReviewer(cast(kube.KubeClient, api), per_second=10, clock=clock)
    answers = []
    for _ in range(300):
        answers.append(await reviewer.review(secrets.token_urlsafe(32)))
        clock.now += 0.001  # 300 requests in 0.3 s
    assert answers == [None] * 300
    assert api.reviews == 10
    assert reviewer.unreviewed == 290

    clock.now += 1.0
    user = await reviewer.review(GOOD)
    assert user is not None
    assert user.name == "prometheus"
    assert api.reviews == 11


async def test_a_failed_review_is_cached_so_a_repeated_bad_token_is_reviewed_once() -> None:
    api, clock = FakeApiServer(), Clock()
    reviewer = KubeTokenReviewer(cast(kube.KubeClient, api), ttl=10.0, clock=clock)
    for _ in range(100):
        assert await reviewer.review("stolen-and-revoked") is None
        clock.now += 0.05
    assert api.reviews == 1
    clock.now += 10.0
    assert await reviewer.review("stolen-and-revoked") is None
    assert api.reviews == 2
