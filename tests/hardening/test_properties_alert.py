"""Properties of the alert parser: whatever arrives, the answer is alerts or a declared rejection.

Falco, falcosidekick and anything else that can reach the ingest port send these bytes; a crash here
is a 500 for Falco and an alert lost without a count.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, TypeVar

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from teflon.webhook.alert import Alert, AlertRejected, RejectReason, decode_body, parse_one
from teflon.webhook.app import parse_request
from tests.harness.strategies import JSON_VALUES, alert_docs, bodies

RECEIVED = datetime(2026, 1, 1, tzinfo=UTC)
_T = TypeVar("_T")


def outcome(call: Callable[[], _T]) -> _T | AlertRejected:
    """The call's result, or the ``AlertRejected`` it raised; any other exception fails the test."""
    try:
        return call()
    except AlertRejected as exc:
        return exc


FAST = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
CONTENT_TYPES = st.sampled_from(
    [
        "application/json",
        "",
        "application/x-ndjson",
        "application/json; charset=utf-8",
        "text/plain",
        "x/y+json",
    ]
)


def _check_alert(alert: Alert, doc: dict[str, Any]) -> None:
    assert alert.rule == doc["rule"]
    assert alert.time.tzinfo is not None
    assert "<NA>" not in (alert.namespace, alert.pod, alert.pod_uid, alert.hostname, alert.source)


@FAST
@given(doc=alert_docs())
def test_any_alert_document_becomes_an_alert_or_a_declared_rejection(doc: dict[str, Any]) -> None:
    result = outcome(lambda: parse_one(doc, received=RECEIVED))
    if isinstance(result, AlertRejected):
        assert result.reason in (RejectReason.INVALID_ALERT, RejectReason.UNKNOWN_PRIORITY)
        assert result.detail
    else:
        _check_alert(result, doc)


@FAST
@given(doc=JSON_VALUES)
def test_any_json_value_becomes_an_alert_or_a_declared_rejection(doc: Any) -> None:
    result = outcome(lambda: parse_one(doc, received=RECEIVED, index=3))
    if isinstance(result, AlertRejected):
        assert result.index == 3
        assert result.reason in (RejectReason.INVALID_ALERT, RejectReason.UNKNOWN_PRIORITY)
    else:
        assert isinstance(doc, dict)
        _check_alert(result, doc)


@FAST
@given(body=bodies(), ndjson=st.booleans())
def test_any_body_decodes_to_documents_or_a_declared_rejection(body: bytes, ndjson: bool) -> None:
    result = outcome(lambda: decode_body(body, ndjson=ndjson))
    if isinstance(result, AlertRejected):
        assert result.reason in (RejectReason.EMPTY, RejectReason.INVALID_JSON)
    else:
        assert isinstance(result, list)


@FAST
@given(body=bodies(), content_type=CONTENT_TYPES)
def test_a_request_yields_one_result_per_document_and_nothing_is_lost(body: bytes, content_type: str) -> None:
    result = outcome(lambda: parse_request(body, content_type))
    if isinstance(result, AlertRejected):
        assert result.reason in (
            RejectReason.EMPTY,
            RejectReason.INVALID_JSON,
            RejectReason.UNSUPPORTED_MEDIA_TYPE,
        )
        return
    alerts, errors = result
    media = content_type.split(";", maxsplit=1)[0].strip()
    docs = decode_body(body, ndjson=media == "application/x-ndjson")
    assert len(alerts) + len(errors) == len(docs)
    for err in errors:
        assert err.reason in (RejectReason.INVALID_ALERT, RejectReason.UNKNOWN_PRIORITY)


@given(
    raw=st.one_of(
        st.integers(min_value=1, max_value=2**200),
        st.integers(min_value=-(2**63), max_value=0),
    )
)
@FAST
def test_an_event_time_of_any_size_is_used_or_rejected_never_a_crash(raw: int) -> None:
    doc = {"rule": "r", "priority": "Warning", "output_fields": {"evt.time": raw}}
    result = outcome(lambda: parse_one(doc, received=RECEIVED))
    if isinstance(result, AlertRejected):
        assert result.reason is RejectReason.INVALID_ALERT
        assert "evt.time" in result.detail
    else:
        assert result.time_ns in (raw, int(RECEIVED.timestamp() * 1_000_000_000))


@FAST
@given(depth=st.integers(min_value=1, max_value=20_000), opener=st.sampled_from(["[", '{"k":', "[{}, "]))
def test_deeply_nested_json_is_rejected_as_invalid_not_a_crash(depth: int, opener: str) -> None:
    body = (opener * depth).encode()
    result = outcome(lambda: decode_body(body))
    if isinstance(result, AlertRejected):
        assert result.reason is RejectReason.INVALID_JSON
    else:
        assert isinstance(result, list)
