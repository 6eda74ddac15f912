"""Wire formats, configuration, selectors and PromQL substitution."""

from __future__ import annotations

import math
from datetime import datetime, timedelta, timezone

import pytest

from teflon.metrics.backends import InvalidMetricSelector
from teflon.metrics.backends.promql import promql_string, render_query, selector_matchers
from teflon.metrics.config import ConfigError, parse_config
from teflon.metrics.selectors import SelectorError, parse_selector
from teflon.metrics.wire import format_quantity, format_time


@pytest.mark.parametrize(
    ("value", "text"),
    [(16.5, "16500m"), (0.5, "500m"), (10, "10"), (0, "0"), (0.0004, "0"), (0.0006, "1m"), (-2.25, "-2250m")],
)
def test_quantities_are_milli_units_or_whole_numbers(value: float, text: str) -> None:
    assert format_quantity(value) == text


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf])
def test_non_finite_values_have_no_quantity(value: float) -> None:
    with pytest.raises(ValueError, match="finite"):
        format_quantity(value)


def test_timestamps_are_rfc3339_seconds_in_utc() -> None:
    ts = datetime(2025, 6, 3, 11, 30, 0, 987654, tzinfo=timezone(timedelta(hours=2)))
    assert format_time(ts) == "2025-06-03T09:30:00Z"


def test_builtin_teflon_metrics_are_added_when_the_backend_is_configured() -> None:
    cfg = parse_config("backends: {teflon: {service: wh, namespace: teflon}}")
    names = {m.name: m for m in cfg.all_metrics()}
    assert set(names) == {
        "falco_alerts_per_minute",
        "falco_alerts_per_minute_5m",
        "teflon_responses_per_minute",
    }
    assert names["falco_alerts_per_minute_5m"].window_seconds == 300
    assert names["teflon_responses_per_minute"].signal.value == "responses"
    assert all(m.empty_is_zero for m in names.values())


def test_design_example_config_parses() -> None:
    text = """
backends:
  teflon: {service: teflon-webhook-headless, namespace: teflon, portName: ops, timeoutSeconds: 2}
  prometheus:
    {url: "http://prometheus-operated.monitoring:9090", bearerTokenFile: "", caFile: "", headers: {}}
  sysdig: {region: us1, tokenFile: /etc/teflon/sysdig/token, timeoutSeconds: 3}
metrics:
  - name: falco_alerts_per_minute
    backend: teflon
    resources: [pods, deployments.apps, statefulsets.apps, daemonsets.apps, namespaces]
    signal: alerts
    windowSeconds: 60
    cacheSeconds: 5
  - name: http_requests_per_second
    backend: prometheus
    resources: [pods]
    query: sum by (pod) (rate(http_requests_total{namespace="{{ .namespace }}", pod=~"{{ .names }}"}[2m]))
    windowSeconds: 120
    cacheSeconds: 10
    emptyAs: error
"""
    cfg = parse_config(text)
    assert cfg.backends.sysdig is not None
    assert cfg.backends.sysdig.base_url == "https://app.sysdigcloud.com"
    prom = next(m for m in cfg.all_metrics() if m.name == "http_requests_per_second")
    assert not prom.empty_is_zero


@pytest.mark.parametrize(
    ("text", "complaint"),
    [
        ("metrics: [{name: x, backend: prometheus, resources: [pods], query: up}]", "not configured"),
        ("backends: {prometheus: {url: 'ftp://x'}}", "http"),
        ("backends: {teflon: {service: a, namespace: b, timeoutSeconds: 9}}", "timeoutSeconds"),
        ("backends: {sysdig: {region: mars1, tokenFile: /t}}", "unknown region"),
        ("backends: {sysdig: {region: '', tokenFile: /t}}", "set region or url"),
        (
            "backends: {prometheus: {url: 'http://p'}}\n"
            "metrics: [{name: x, backend: prometheus, resources: [pods], query: 'up{a=\"{{ .pod }}\"}'}]",
            "unknown placeholders",
        ),
        (
            "backends: {teflon: {service: a, namespace: b}}\n"
            "metrics: [{name: x, backend: teflon, resources: [services]}]",
            "teflon backend counts",
        ),
        (
            "backends: {teflon: {service: a, namespace: b}}\n"
            "metrics: [{name: x, backend: teflon, resources: [pods], windowSeconds: 120}]",
            "60 and 300",
        ),
        (
            "backends: {teflon: {service: a, namespace: b}}\n"
            "metrics: [{name: X, backend: teflon, resources: [pods]}]",
            "lower-case",
        ),
        ("metrics: [{name: x, backend: teflon, resources: [gadgets]}]", "unknown resources"),
        (
            "backends: {prometheus: {url: 'http://p'}}\n"
            "metrics: [{name: x, backend: prometheus, resources: [pods], query: up, rule: a}]",
            "teflon backend only",
        ),
        (
            "backends: {teflon: {service: a, namespace: b}}\n"
            "metrics: [{name: x, backend: teflon, resources: [pods], minPriority: loud}]",
            "unknown Falco priority",
        ),
        ("- a list", "mapping"),
        ("backends: {teflon: {service: a, namespace: b, extra: 1}}", "extra"),
        ("a: [", "not valid YAML"),
    ],
)
def test_invalid_config_fails_with_a_message_naming_the_problem(text: str, complaint: str) -> None:
    with pytest.raises(ConfigError, match=complaint):
        parse_config(text, "metrics.yaml")


def test_selector_text_parses_into_requirements() -> None:
    sel = parse_selector("app=web, tier!=db,env in (prod, staging),canary,!legacy")
    assert [(r.key, r.op, r.values) for r in sel.requirements] == [
        ("app", "=", ("web",)),
        ("tier", "!=", ("db",)),
        ("env", "in", ("prod", "staging")),
        ("canary", "exists", ()),
        ("legacy", "!", ()),
    ]
    assert sel.to_label_selector() == {
        "matchLabels": {"app": "web"},
        "matchExpressions": [
            {"key": "tier", "operator": "NotIn", "values": ["db"]},
            {"key": "env", "operator": "In", "values": ["prod", "staging"]},
            {"key": "canary", "operator": "Exists", "values": []},
            {"key": "legacy", "operator": "DoesNotExist", "values": []},
        ],
    }


@pytest.mark.parametrize("text", ['a="b"', "a=b c", "a in ()", "=b", "a=b,,c=d", 'a=b"}or vector(1)'])
def test_malformed_selectors_are_refused(text: str) -> None:
    with pytest.raises(SelectorError):
        parse_selector(text)


def test_promql_strings_escape_quotes_backslashes_and_newlines() -> None:
    assert promql_string('a"b\\c\nd') == 'a\\"b\\\\c\\nd'


def test_names_become_an_escaped_regex_alternation() -> None:
    q = render_query(
        'x{namespace="{{ .namespace }}", pod=~"{{ .names }}"}[{{.window}}]',
        namespace="shop",
        names=("web-1", "web.2"),
        selector=parse_selector(""),
        window_seconds=120,
    )
    assert q == 'x{namespace="shop", pod=~"web\\\\-1|web\\\\.2"}[120s]'


def test_a_hostile_namespace_cannot_break_out_of_its_string() -> None:
    q = render_query(
        'x{namespace="{{ .namespace }}"}',
        namespace='a"} or vector(1) or x{b="',
        names=(),
        selector=parse_selector(""),
        window_seconds=60,
    )
    assert q == 'x{namespace="a\\"} or vector(1) or x{b=\\""}'


def test_metric_selector_becomes_label_matchers_with_a_trailing_comma() -> None:
    sel = parse_selector("method=GET,code in (200,201),!debug")
    assert selector_matchers(sel) == 'method="GET",code=~"200|201",debug="",'
    assert selector_matchers(parse_selector("")) == ""


def test_selector_keys_that_are_not_prometheus_labels_are_refused() -> None:
    with pytest.raises(InvalidMetricSelector, match="label name"):
        selector_matchers(parse_selector("app.kubernetes.io/name=web"))
