"""Read Prometheus text exposition (``/metrics``): the one reader of counters and gauges in tests,
benchmarks, fault injection and the demo.
"""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families


def samples(text: str, name: str) -> list[tuple[dict[str, str], float]]:
    """Every sample called exactly ``name`` (``foo_total``, ``foo_bucket``, ...) with its labels."""
    return [
        (dict(s.labels), float(s.value))
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name == name
    ]


def metric_sum(text: str, name: str, **labels: str) -> float:
    """The sum of the samples called ``name`` whose labels include ``labels`` (0 when none)."""
    return sum(
        value
        for sample_labels, value in samples(text, name)
        if all(sample_labels.get(k) == v for k, v in labels.items())
    )


def series(text: str) -> int:
    """How many samples the exposition holds."""
    return sum(len(family.samples) for family in text_string_to_metric_families(text))
