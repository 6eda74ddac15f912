"""Parsing and normalising Falco alerts of every supported shape."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

from teflon.common.wire import Priority
from teflon.webhook.alert import AlertRejected, RejectReason, decode_body, parse_one

from .conftest import CONSTRUCTED_ALERTS, REAL_ALERTS, load

RECEIVED = datetime(2026, 1, 1, tzinfo=UTC)


def test_there_are_real_and_constructed_fixtures_to_test() -> None:
    assert len(REAL_ALERTS) == 12
    assert len(CONSTRUCTED_ALERTS) >= 6


@pytest.mark.parametrize("path", REAL_ALERTS + CONSTRUCTED_ALERTS, ids=lambda p: p.name)
def test_every_fixture_parses_into_an_alert_with_its_rule_and_priority(path: Path) -> None:
    doc = load(path)
    alert = parse_one(doc, received=RECEIVED)
    assert alert.rule == doc["rule"]
    assert alert.priority is Priority.parse(doc["priority"])
    assert alert.time.tzinfo is not None
    assert all(value != "<NA>" for value in alert.fields.values())


EXPECTED = {
    # file: (source, namespace, pod, hostname, internal)
    "01-syscall-drop-0.25-ebpf.json": ("internal", None, None, None, True),
    "04-k8saudit-create-hostnetwork-pod.json": ("k8s_audit", "falco-event-generator", None, None, False),
    "07-k8s-setns-kured-tags-source.json": ("syscall", "kured", "kured-lj9qq", None, False),
    "11-terminal-shell-2024-thread-fields-tags.json": (
        "syscall",
        "default",
        "cncf-55696bc998-9j9zk",
        "falco-htpzn",
        False,
    ),
    "16-internal-metrics-snapshot-0.41.json": ("internal", None, None, "test", True),
    "26-falcosidekick-webhook-body-uuid-nc-capture.json": (
        "syscall",
        "ingress-nginx",
        "ingress-nginx-controller-slszv",
        "falco-pwf8x",
        False,
    ),
    "33-unexpected-udp-0.37-many-nulls-tail-reconstructed.json": (
        "syscall",
        None,
        None,
        "falco-4cvkq",
        False,
    ),
    "35-0.43-fileless-memfd-host-empty-strings-long.json": ("syscall", None, None, "a042604a283a", False),
}


@pytest.mark.parametrize(("name", "expected"), sorted(EXPECTED.items()))
def test_fixture_identity_fields_are_normalised(name: str, expected: tuple[object, ...]) -> None:
    alert = parse_one(load(REAL_ALERTS[0].parent / name), received=RECEIVED)
    assert (alert.source, alert.namespace, alert.pod, alert.hostname, alert.internal) == expected


def test_evt_time_nanoseconds_are_kept_exactly_beyond_float_precision() -> None:
    alert = parse_one(
        load(REAL_ALERTS[0].parent / "28-0.42-read-sensitive-file-aname-bracket-keys-nulls.json"),
        received=RECEIVED,
    )
    assert alert.time_ns == 1763990531153390386
    assert alert.time == datetime(2025, 11, 24, 13, 22, 11, 153390, tzinfo=UTC)


def test_na_text_and_null_are_both_missing_values() -> None:
    alert = parse_one(load(CONSTRUCTED_ALERTS[0].parent / "0.39-message-property.json"), received=RECEIVED)
    assert alert.fields["proc.aname[2]"] is None
    nulls = parse_one(
        load(REAL_ALERTS[0].parent / "21-terminal-shell-0.35-image-NA-null-linewrap-repaired.json"),
        received=RECEIVED,
    )
    assert nulls.image is None
    assert nulls.pod == "alpine"


def test_pod_uid_from_extra_fields_and_image_with_tag_are_extracted() -> None:
    alert = parse_one(
        load(CONSTRUCTED_ALERTS[0].parent / "0.41-suggested-output-pod-uid.json"), received=RECEIVED
    )
    assert alert.pod_uid == "3e41dc6b-08a8-44db-bc2a-3724b18ab19a"
    assert alert.image == "registry.example.com/shop/payments-api:1.14.2"
    assert alert.container_name == "payments-api"
    assert "mitre_execution" in alert.tags


def test_sidekick_trimmed_time_and_uuid_are_accepted() -> None:
    doc = load(CONSTRUCTED_ALERTS[0].parent / "sidekick-2.34-bracketreplacer-trimmed-time.json")
    del doc["output_fields"]["evt.time"]
    alert = parse_one(doc, received=RECEIVED)
    assert alert.uuid == "7f0c3d1e-5b2a-4c6d-9e8f-0a1b2c3d4e5f"
    assert alert.time == datetime(2025, 6, 3, 9, 15, 2, 4100, tzinfo=UTC)
    assert alert.fields["cluster"] == "prod-eu"


def test_an_alert_without_any_time_takes_the_time_it_was_received() -> None:
    alert = parse_one({"rule": "r", "priority": "Notice"}, received=RECEIVED)
    assert alert.time == RECEIVED


def test_info_is_accepted_as_informational_and_priorities_are_case_insensitive() -> None:
    assert parse_one({"rule": "r", "priority": "info"}, received=RECEIVED).priority is Priority.INFORMATIONAL
    assert parse_one({"rule": "r", "priority": "CRITICAL"}, received=RECEIVED).priority is Priority.CRITICAL


@pytest.mark.parametrize(
    ("doc", "reason", "fragment"),
    [
        (
            {"rule": "r", "priority": "Severe"},
            RejectReason.UNKNOWN_PRIORITY,
            "unknown Falco priority 'Severe'",
        ),
        ({"rule": "r", "priority": ""}, RejectReason.UNKNOWN_PRIORITY, "unknown Falco priority"),
        ({"priority": "Notice"}, RejectReason.INVALID_ALERT, "rule: Field required"),
        (
            {"rule": 5, "priority": "Notice"},
            RejectReason.INVALID_ALERT,
            "rule: Input should be a valid string",
        ),
        ({"rule": "r", "priority": "Notice", "tags": "shell"}, RejectReason.INVALID_ALERT, "tags"),
        (
            {"rule": "r", "priority": "Notice", "output_fields": []},
            RejectReason.INVALID_ALERT,
            "output_fields",
        ),
        (
            {"rule": "r", "priority": "Notice", "time": "yesterday"},
            RejectReason.INVALID_ALERT,
            "time: not an ISO 8601",
        ),
        (["not", "an", "object"], RejectReason.INVALID_ALERT, "a JSON object, not list"),
    ],
)
def test_invalid_alerts_are_rejected_with_a_reason_and_a_readable_detail(
    doc: object, reason: RejectReason, fragment: str
) -> None:
    with pytest.raises(AlertRejected) as caught:
        parse_one(doc, received=RECEIVED)
    assert caught.value.reason is reason
    assert fragment in caught.value.detail


def test_bodies_decode_as_one_alert_an_array_or_ndjson() -> None:
    one = {"rule": "a", "priority": "Notice"}
    assert decode_body(json.dumps(one).encode()) == [one]
    assert decode_body(json.dumps([one, one]).encode()) == [one, one]
    ndjson = (json.dumps(one) + "\n\n" + json.dumps(one) + "\n").encode()
    assert decode_body(ndjson) == [one, one]
    assert decode_body(ndjson, ndjson=True) == [one, one]


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"", RejectReason.EMPTY),
        (b"   \n", RejectReason.EMPTY),
        (b"{not json", RejectReason.INVALID_JSON),
        (b'{"rule": "a"}\n{broken', RejectReason.INVALID_JSON),
        (b"\xff\xfe{}", RejectReason.INVALID_JSON),
    ],
)
def test_undecodable_bodies_are_rejected(body: bytes, reason: RejectReason) -> None:
    with pytest.raises(AlertRejected) as caught:
        decode_body(body)
    assert caught.value.reason is reason
