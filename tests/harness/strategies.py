"""Hypothesis strategies for Falco alerts: well-formed, almost well-formed, and hostile.

Shared by the property tests (``make test``) and the ingest fuzzer (``make fuzz``), so both explore the
same space: every alert fixture as a seed, every field replaced by any JSON value, and bodies of raw bytes.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from hypothesis import strategies as st

from teflon.common.wire import Priority

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
SEEDS: list[dict[str, Any]] = [
    json.loads(p.read_text(encoding="utf-8"))
    for p in sorted(
        [*(FIXTURES / "falco-alerts").glob("*.json"), *(FIXTURES / "webhook" / "alerts").glob("*.json")]
    )
]

PRIORITY_TEXT = st.sampled_from(
    [p.label for p in Priority] + [p.name for p in Priority] + ["info", "INFO", " warning ", "Warn", "", "7"]
)

# Values a JSON document may hold, including the edges that break naive code: huge and negative
# integers, floats at the limits, "<NA>", empty strings, deep nesting.
SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=40),
    st.sampled_from(
        [
            "<NA>",
            "",
            "0",
            "-1",
            "1e400",
            "\x00",
            "\ud7ff",
            "2024-02-30T00:00:00Z",
            "9999-12-31T23:59:59-01:00",
        ]
    ),
)
JSON_VALUES = st.recursive(
    SCALARS,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=4)
    ),
    max_leaves=12,
)

FIELD_KEYS = st.sampled_from(
    [
        "evt.time",
        "evt.time.iso8601",
        "k8s.ns.name",
        "k8s.pod.name",
        "k8s.pod.uid",
        "ka.target.namespace",
        "container.id",
        "container.name",
        "container.image",
        "container.image.repository",
        "container.image.tag",
        "proc.cmdline",
        "jevt.value",
    ]
)
TIMES = st.one_of(
    st.datetimes(timezones=st.timezones() | st.none()).map(lambda d: d.isoformat()),
    st.text(max_size=30),
    st.just("2025-01-01T00:00:00.123456789Z"),
)


@st.composite
def alert_docs(draw: st.DrawFn) -> dict[str, Any]:
    """An alert object: a real fixture, or one built from scratch, with any field mutated."""
    if draw(st.booleans()):
        doc = dict(draw(st.sampled_from(SEEDS)))
    else:
        doc = {"rule": draw(st.text(max_size=30)), "priority": draw(PRIORITY_TEXT)}
        if draw(st.booleans()):
            doc["time"] = draw(TIMES)
    fields = dict(doc.get("output_fields") or {}) if isinstance(doc.get("output_fields"), dict) else {}
    for key, value in draw(st.dictionaries(FIELD_KEYS, JSON_VALUES | st.integers(), max_size=4)).items():
        fields[key] = value
    doc["output_fields"] = fields
    top = st.sampled_from(
        [
            "rule",
            "priority",
            "time",
            "output",
            "output_fields",
            "source",
            "hostname",
            "tags",
            "uuid",
            "message",
        ]
    )
    for key in draw(st.lists(top, max_size=3)):
        if draw(st.booleans()):
            doc[key] = draw(JSON_VALUES)
        else:
            doc.pop(key, None)
    return doc


def encode(docs: list[Any], shape: str) -> bytes:
    """Documents as one of the body shapes the ingest API accepts."""
    if shape == "single":
        return json.dumps(docs[0] if docs else {}).encode()
    if shape == "array":
        return json.dumps(docs).encode()
    return "\n".join(json.dumps(d) for d in docs).encode()


@st.composite
def bodies(draw: st.DrawFn) -> bytes:
    """A request body: JSON alerts in every shape, arbitrary JSON, truncated JSON, or raw bytes."""
    kind = draw(
        st.sampled_from(["alerts", "alerts", "alerts", "json", "truncated", "bytes", "deep", "utf16"])
    )
    if kind == "alerts":
        docs = draw(st.lists(alert_docs() | JSON_VALUES, min_size=1, max_size=5))
        return encode(docs, draw(st.sampled_from(["single", "array", "ndjson"])))
    if kind == "json":
        return json.dumps(draw(JSON_VALUES)).encode()
    if kind == "truncated":
        raw = encode([draw(alert_docs())], "single")
        return raw[: draw(st.integers(min_value=0, max_value=len(raw)))]
    if kind == "deep":
        depth = draw(st.integers(min_value=1, max_value=200_000))
        opener = draw(st.sampled_from(["[", '{"a":']))
        return (opener * depth).encode()
    if kind == "utf16":
        return json.dumps(draw(alert_docs())).encode(draw(st.sampled_from(["utf-16", "utf-32", "utf-8-sig"])))
    return draw(st.binary(max_size=300))
