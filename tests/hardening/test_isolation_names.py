"""Two pods whose long names share a prefix get two isolation NetworkPolicies, never one between them.

Pod names may be 253 characters long and the policy's name adds ``teflon-isolate-``: cut to fit, the
names of two such pods collided, and isolating the second re-pointed the first pod's policy at it,
which let the first pod out.
"""

from __future__ import annotations

import re

import pytest

from teflon.common.kube import KubeClient
from teflon.webhook.actions import ISOLATE_LABEL, Outcome, isolation_policy_name
from teflon.webhook.kube_actions import KubeClusterActions
from teflon.webhook.objects import PodRef

_SUBDOMAIN = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")
SHARED = "w" * 240


@pytest.mark.parametrize(
    ("first", "second"),
    [
        (SHARED + "-a", SHARED + "-b"),
        ("p" * 253, "p" * 252 + "q"),
        ("x" * 237 + ".-" + "y" * 14, "x" * 237 + ".-" + "z" * 14),  # the cut lands on a dot and a dash
    ],
)
def test_long_names_that_share_a_prefix_get_distinct_valid_policy_names(first: str, second: str) -> None:
    a, b = isolation_policy_name(first), isolation_policy_name(second)
    assert a != b
    for name in (a, b):
        assert len(name) <= 253
        assert name.startswith("teflon-isolate-")
        assert _SUBDOMAIN.fullmatch(name), name


def test_names_that_fit_are_unchanged() -> None:
    assert isolation_policy_name("web-0") == "teflon-isolate-web-0"
    assert isolation_policy_name("a" * 238) == "teflon-isolate-" + "a" * 238


def pod(name: str) -> dict[str, object]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "labels": {"app": "long"}},
        "spec": {
            "nodeName": "teflon-worker-1",
            "containers": [{"name": "app", "image": "registry.invalid/a:1"}],
        },
    }


async def test_isolating_the_second_of_two_such_pods_keeps_the_first_isolated(
    kube: KubeClient, namespace: str
) -> None:
    actions = KubeClusterActions(kube, reporting_instance="hardening", backoff_seconds=0.05)
    refs = []
    for name in (SHARED + "-a", SHARED + "-b"):
        created = await kube.post(f"/api/v1/namespaces/{namespace}/pods", pod(name))
        refs.append(PodRef(namespace, name, created["metadata"]["uid"]))
    for ref in refs:
        assert (await actions.isolate_pod(ref)).outcome is Outcome.APPLIED
    policies = await kube.get(f"/apis/networking.k8s.io/v1/namespaces/{namespace}/networkpolicies")
    selected = sorted(p["spec"]["podSelector"]["matchLabels"][ISOLATE_LABEL] for p in policies["items"])
    assert selected == sorted(ref.uid for ref in refs)
