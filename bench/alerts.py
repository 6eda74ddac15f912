"""The alert mix every benchmark sends: real Falco alerts from tests/fixtures, spread over many pods.

Each alert is one of the captured Falco outputs (several rules, sources and priorities, 0.3-2.7 KB
each) with its namespace, pod, pod UID, node and container replaced, so a run covers thousands of
distinct pods the way a busy cluster's Falco DaemonSet would. Bodies are built by string substitution
into pre-serialised templates, so the load generator spends its time sending, not encoding.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = ROOT / "tests" / "fixtures" / "falco-alerts"

#: (fixture, weight): the shares of a day of Falco output on a busy cluster, noisy rules first.
MIX: list[tuple[str, int]] = [
    ("33-unexpected-udp-0.37-many-nulls-tail-reconstructed.json", 30),
    ("11-terminal-shell-2024-thread-fields-tags.json", 20),
    ("28-0.42-read-sensitive-file-aname-bracket-keys-nulls.json", 15),
    ("04-k8saudit-create-hostnetwork-pod.json", 15),
    ("35-0.43-fileless-memfd-host-empty-strings-long.json", 10),
    ("15-docs-terminal-shell-critical-2023.json", 5),
    ("01-syscall-drop-0.25-ebpf.json", 5),
]
NS, POD, UID, HOST = "@@NS@@", "@@POD@@", "@@UID@@", "@@HOST@@"


def _template(doc: dict[str, Any]) -> str:
    out = dict(doc)
    fields = dict(out.get("output_fields") or {})
    if "k8s.pod.name" in fields:
        fields.update({"k8s.ns.name": NS, "k8s.pod.name": POD, "k8s.pod.uid": UID})
        out["hostname"] = HOST
    elif "ka.target.namespace" in fields:
        fields.update({"ka.target.namespace": NS, "ka.resp.name": POD})
    out["output_fields"] = fields
    return json.dumps(out, separators=(",", ":"))


@dataclass(frozen=True)
class Target:
    namespace: str
    pod: str
    uid: str
    node: str


class AlertMix:
    """Alerts for ``pods`` distinct pods in ``namespaces`` namespaces, in a fixed pseudo-random order."""

    def __init__(self, pods: int, namespaces: int = 100, seed: int = 7, nodes: int = 3) -> None:
        rng = random.Random(seed)  # noqa: S311 - a reproducible load, not a secret
        self.templates = [_template(json.loads((FIXTURES / name).read_text())) for name, _ in MIX]
        weights = [w for _, w in MIX]
        self.targets = [
            Target(
                f"bench-{i % namespaces}",
                f"app-{i}",
                f"00000000-0000-4000-8000-{i:012d}",
                f"node-{i % nodes}",
            )
            for i in range(pods)
        ]
        # A fixed sequence of (template, target) so every run sends the same bytes in the same order.
        self.sequence = [
            (rng.choices(range(len(MIX)), weights)[0], rng.randrange(pods)) for _ in range(65_536)
        ]
        self.rules = [json.loads(t)["rule"] for t in self.templates]

    def render(self, template: int, target: Target) -> str:
        t = self.templates[template]
        return (
            t.replace(NS, target.namespace)
            .replace(POD, target.pod)
            .replace(UID, target.uid)
            .replace(HOST, target.node)
        )

    def alert(self, i: int) -> bytes:
        """The i-th alert of the mix as one JSON body."""
        template, target = self.sequence[i % len(self.sequence)]
        # Beyond the fixed sequence, walk the pods in order so every pod is seen.
        if i >= len(self.sequence):
            target = i % len(self.targets)
        return self.render(template, self.targets[target]).encode()

    def ndjson(self, start: int, count: int) -> bytes:
        """Alerts ``start`` .. ``start + count`` as one NDJSON body (one alert per line)."""
        return b"\n".join(self.alert(i) for i in range(start, start + count))

    def for_target(self, template_rule: str, target: Target) -> bytes:
        """One alert of the rule named ``template_rule`` about exactly ``target``."""
        return self.render(self.rules.index(template_rule), target).encode()
