"""The rate API query has one definition: what the metrics server sends is what the webhook parses."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from pydantic import ValidationError

from teflon.common.wire import RATE_WINDOWS, Priority, RateScope, RateSnapshot, RatesQuery, Signal


def test_a_query_survives_the_trip_through_url_parameters() -> None:
    query = RatesQuery(
        scope=RateScope.WORKLOAD,
        signal=Signal.RESPONSES,
        window=300,
        namespace="shop",
        kind="Deployment",
        name="web",
        min_priority=Priority.WARNING,
        rule="Terminal shell in container",
    )
    params = query.params()
    assert params["minPriority"] == "Warning"
    assert RatesQuery.model_validate(params) == query
    assert RatesQuery(scope=RateScope.POD).params() == {"scope": "pod", "signal": "alerts", "window": "60"}


def test_only_the_kept_windows_may_be_asked_for() -> None:
    assert RATE_WINDOWS == (60, 300)
    with pytest.raises(ValidationError, match="window must be one of 60, 300 seconds"):
        RatesQuery(scope=RateScope.POD, window=120)


def test_a_snapshot_answers_a_query_only_for_its_scope_signal_and_window() -> None:
    query = RatesQuery(scope=RateScope.POD, window=300)
    snap = RateSnapshot(scope=RateScope.POD, window_seconds=300, generated_at=datetime.now(UTC), replica="r")
    assert query.answered_by(snap)
    assert not query.answered_by(snap.model_copy(update={"window_seconds": 60}))
    assert not query.answered_by(snap.model_copy(update={"signal": Signal.RESPONSES}))
