"""The harness's own helpers: the one percentile and the one reader of ``/metrics`` text."""

from __future__ import annotations

import statistics

import pytest

from tests.harness.prom import metric_sum, series
from tests.harness.stats import percentile

EXPOSITION = """\
# HELP teflon_webhook_alerts_total Alerts accepted.
# TYPE teflon_webhook_alerts_total counter
teflon_webhook_alerts_total{rule="Terminal shell in container",namespace="shop"} 3.0
teflon_webhook_alerts_total{rule="Terminal shell in container",namespace="blog"} 2.0
teflon_webhook_alerts_total{rule="Read sensitive file, \\"untrusted\\"",namespace="shop"} 5.0
# HELP teflon_webhook_alerts_total_extra Not the same metric.
# TYPE teflon_webhook_alerts_total_extra gauge
teflon_webhook_alerts_total_extra 100.0
"""


@pytest.mark.parametrize(
    ("values", "p", "expected"),
    [
        ([1, 2, 3, 4], 50, 2.5),
        ([4, 1, 3, 2], 0, 1),
        ([4, 1, 3, 2], 100, 4),
        ([1, 2, 3, 4], 25, 1.75),
        (list(range(1, 101)), 99, 99.01),
        ([7], 99, 7),
    ],
)
def test_percentiles_interpolate_linearly_between_the_nearest_ranks(
    values: list[float], p: float, expected: float
) -> None:
    assert percentile(values, p) == pytest.approx(expected)


def test_the_50th_percentile_is_the_median() -> None:
    values = [0.3, 9.1, 2.2, 5.0, 7.7, 1.4]
    assert percentile(values, 50) == pytest.approx(statistics.median(values))


@pytest.mark.parametrize("p", [-1, 100.5])
def test_a_percentile_out_of_range_is_refused(p: float) -> None:
    with pytest.raises(ValueError, match="between 0 and 100"):
        percentile([1.0, 2.0], p)


def test_no_values_have_no_percentile() -> None:
    with pytest.raises(ValueError, match="no values"):
        percentile([], 50)


def test_a_metric_sum_matches_the_exact_name_and_every_label_asked_for() -> None:
    assert metric_sum(EXPOSITION, "teflon_webhook_alerts_total") == 10
    assert metric_sum(EXPOSITION, "teflon_webhook_alerts_total", namespace="shop") == 8
    assert metric_sum(EXPOSITION, "teflon_webhook_alerts_total", namespace="shop", rule="nope") == 0
    assert metric_sum(EXPOSITION, "teflon_webhook_alerts_total", rule='Read sensitive file, "untrusted"') == 5
    assert metric_sum(EXPOSITION, "teflon_webhook_missing") == 0
    assert series(EXPOSITION) == 4
