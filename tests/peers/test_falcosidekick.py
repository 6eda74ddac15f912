"""falcosidekick 2.34.1 as a real client: its generic webhook output pointed at teflon's ingest.

Falco posts to falcosidekick (``POST /``), which re-encodes each alert as its webhook body (``uuid``
added, ``source`` defaulted to ``syscalls``, ``<>&`` escaped) and posts it to teflon. Every alert
falcosidekick accepts must arrive at teflon, be accepted (2xx) and be counted under its rule and
priority; anything teflon refuses shows up as a webhook error in falcosidekick's own counters and as a
shortfall in teflon's, and fails the test (``test_the_check_fails_when_teflon_refuses_forwarded_alerts``
proves that the check catches it).

Forwarded alerts get no special trust today: falcosidekick copies Falco's ``hostname`` into the
body, and the node check compares it with the pod's ``spec.nodeName`` as for an alert straight from
Falco; an alert whose ``hostname`` is not the pod's node is refused (``node_mismatch``).
"""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from teflon.common.wire import Priority
from tests.webhook.conftest import CONSTRUCTED_ALERTS, REAL_ALERTS, make_settings
from tests.webhook.fakes import FakeActions

from .conftest import Sidekick, StartSidekick, StartTeflon, Teflon

ALL_ALERTS = REAL_ALERTS + CONSTRUCTED_ALERTS


@dataclass
class Forwarded:
    """What happened to a set of alerts posted to falcosidekick in front of teflon."""

    accepted_by_sidekick: list[Path] = field(default_factory=list)
    refused_by_sidekick: dict[str, int] = field(default_factory=dict)
    sidekick_outputs: dict[str, float] = field(default_factory=dict)
    counted: Counter[tuple[str, str]] = field(default_factory=Counter)
    rejected: dict[str, float] = field(default_factory=dict)

    def expected(self) -> Counter[tuple[str, str]]:
        """(rule, priority) of each alert falcosidekick accepted, as teflon should count them."""
        out: Counter[tuple[str, str]] = Counter()
        for path in self.accepted_by_sidekick:
            doc = json.loads(path.read_text(encoding="utf-8"))
            out[(doc["rule"], Priority.parse(doc["priority"]).label)] += 1
        return out


async def forward(sidekick: Sidekick, teflon: Teflon, alerts: list[Path], seconds: float = 30) -> Forwarded:
    """Post ``alerts`` to falcosidekick one by one, then wait until it has sent each one on (ok or error)."""
    result = Forwarded()
    for path in alerts:
        status = await sidekick.post(path.read_bytes())
        if status == 200:
            result.accepted_by_sidekick.append(path)
        else:
            result.refused_by_sidekick[path.name] = status
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    while True:
        result.sidekick_outputs = await sidekick.webhook_outputs()
        if sum(result.sidekick_outputs.values()) >= len(result.accepted_by_sidekick):
            break
        if loop.time() > deadline:
            raise AssertionError(
                f"falcosidekick sent {result.sidekick_outputs} of {len(result.accepted_by_sidekick)} alerts "
                f"on within {seconds:g}s:\n{sidekick.log.read_text()[-4000:]}"
            )
        await asyncio.sleep(0.1)
    await teflon.drain()
    for labels, value in teflon.samples("teflon_webhook_alerts_total"):
        result.counted[(labels["rule"], labels["priority"])] += int(value)
    result.rejected = {
        labels["reason"]: value for labels, value in teflon.samples("teflon_webhook_alerts_rejected_total")
    }
    return result


def assert_all_delivered(result: Forwarded) -> None:
    """Every alert falcosidekick accepted reached teflon, was accepted and was counted; none refused."""
    assert result.accepted_by_sidekick, "falcosidekick accepted none of the alerts: nothing was tested"
    refused = {k: v for k, v in result.rejected.items() if v}
    assert not refused, f"teflon refused forwarded alerts: {refused}"
    assert result.sidekick_outputs.get("error", 0) == 0, (
        f"falcosidekick's webhook output failed: {result.sidekick_outputs}"
    )
    assert result.sidekick_outputs.get("ok", 0) == len(result.accepted_by_sidekick)
    assert result.counted == result.expected(), "teflon counted other alerts than falcosidekick forwarded"


async def test_every_fixture_falcosidekick_accepts_is_forwarded_accepted_and_counted(
    sidekick: StartSidekick, teflon: StartTeflon
) -> None:
    hook = await teflon(make_settings())
    peer = await sidekick(f"{hook.url}/v1/falco")
    result = await forward(peer, hook, ALL_ALERTS)
    # Every real alert has the rule, priority, time and output fields falcosidekick requires.
    assert set(REAL_ALERTS) <= set(result.accepted_by_sidekick), result.refused_by_sidekick
    assert_all_delivered(result)
    assert sum(result.counted.values()) == len(result.accepted_by_sidekick)


async def test_the_check_fails_when_teflon_refuses_forwarded_alerts(
    sidekick: StartSidekick, teflon: StartTeflon
) -> None:
    # The smallest body limit teflon allows: the longer alerts are refused with 413.
    hook = await teflon(make_settings(max_body_bytes=1024))
    peer = await sidekick(f"{hook.url}/v1/falco")
    result = await forward(peer, hook, REAL_ALERTS)
    refused = result.rejected.get("body_too_large", 0)
    assert refused > 0
    assert result.sidekick_outputs.get("error", 0) == refused
    with pytest.raises(AssertionError, match="teflon refused forwarded alerts"):
        assert_all_delivered(result)
    # What teflon did accept it counted; nothing else went missing.
    assert sum(result.counted.values()) == len(result.accepted_by_sidekick) - refused


ENFORCE = """
mode: enforce
rules:
  - name: shells
    match: {rules: ["Terminal shell in container"]}
    actions:
      - type: label
        labels: {teflon.io/quarantined: "true"}
      - type: delete
        gracePeriodSeconds: 5
"""

#: Two terminal-shell fixtures; each names its pod and the node (``hostname``) Falco saw it on:
#: default/kubecon on falco-xczjd, and default/cncf-55696bc998-9j9zk on falco-htpzn.
ON_ITS_NODE = REAL_ALERTS[0].parent / "15-docs-terminal-shell-critical-2023.json"
ELSEWHERE = REAL_ALERTS[0].parent / "11-terminal-shell-2024-thread-fields-tags.json"


async def test_an_enforce_rule_acts_on_a_forwarded_alert_only_where_the_node_check_allows(
    sidekick: StartSidekick, teflon: StartTeflon, tmp_path: Path
) -> None:
    policy = tmp_path / "policy.yaml"
    policy.write_text(ENFORCE)
    cluster = FakeActions()
    cluster.replicaset("default", "web-5d8f")
    cluster.add_pod("default", "kubecon", node="falco-xczjd")  # the node the alert names
    cluster.add_pod("default", "cncf-55696bc998-9j9zk", node="node-2")  # not the node the alert names
    hook = await teflon(make_settings(policy_file=policy), actions=cluster)
    for _ in range(500):
        if hook.total("teflon_webhook_policy_enforce") == 1:
            break
        await asyncio.sleep(0.01)
    else:
        raise AssertionError("the enforce policy was not loaded")
    peer = await sidekick(f"{hook.url}/v1/falco")

    result = await forward(peer, hook, [ON_ITS_NODE, ELSEWHERE])

    assert_all_delivered(result)
    acted = [(name, ref.namespace, ref.name, arg) for name, ref, arg in cluster.calls]
    assert acted == [
        ("label", "default", "kubecon", {"teflon.io/quarantined": "true"}),
        ("delete", "default", "kubecon", 5),
    ]
    assert hook.total("teflon_webhook_node_mismatch_total") == 1
    applied = {
        labels["action"]: value
        for labels, value in hook.samples("teflon_webhook_actions_total")
        if labels["result"] == "applied"
    }
    assert applied == {"label": 1, "delete": 1}
