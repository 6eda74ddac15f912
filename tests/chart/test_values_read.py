"""Every chart value is read by some template: a value nothing reads is a knob that does nothing.

The check is textual over ``templates/``: a value counts as read when a template names it, or names
one of its parents (``toYaml .Values.metrics.resources`` reads every key below it), directly or through
a variable bound to a part of ``.Values`` (``$b := .Values.metrics.backends`` then ``$b.sysdig.url``).
Values of chart dependencies (``falco``) are the subchart's to read and are not checked here.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

import yaml

from .rendering import CHART

_ALIAS = re.compile(r"\$(\w+)\s*:?=\s*\.Values((?:\.\w+)*)")
_VALUES_REF = re.compile(r"\.Values((?:\.\w+)+)")
_VARIABLE_REF = re.compile(r"\$(\w+)((?:\.\w+)+)")

Path_ = tuple[str, ...]


def _split(dotted: str) -> Path_:
    return tuple(part for part in dotted.split(".") if part)


def leaf_values(doc: Any, prefix: Path_ = ()) -> Iterator[Path_]:
    """Every key path of ``doc`` that holds a scalar, a list or an empty mapping."""
    if isinstance(doc, Mapping) and doc:
        for key, value in doc.items():
            yield from leaf_values(value, (*prefix, str(key)))
    else:
        yield prefix


def value_references(templates: Iterable[str]) -> set[Path_]:
    """The ``.Values`` paths the templates name, with variables bound to parts of ``.Values`` expanded."""
    texts = list(templates)
    aliases: dict[str, set[Path_]] = {}
    for text in texts:
        for m in _ALIAS.finditer(text):
            aliases.setdefault(m.group(1), set()).add(_split(m.group(2)))
    refs: set[Path_] = set()
    for text in texts:
        # A binding names no value by itself; what is read through the variable counts below.
        refs.update(_split(m.group(1)) for m in _VALUES_REF.finditer(_ALIAS.sub("", text)))
        for m in _VARIABLE_REF.finditer(text):
            refs.update((*base, *_split(m.group(2))) for base in aliases.get(m.group(1), ()))
    return refs


def unread_values(values: Mapping[str, Any], templates: Iterable[str], skip: Iterable[str] = ()) -> list[str]:
    refs = value_references(templates)
    skipped = set(skip)
    return [
        ".".join(leaf)
        for leaf in leaf_values(values)
        if leaf and leaf[0] not in skipped and not any(leaf[: len(r)] == r for r in refs)
    ]


def test_every_value_of_the_chart_is_read_by_a_template() -> None:
    values = yaml.safe_load((CHART / "values.yaml").read_text(encoding="utf-8"))
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text(encoding="utf-8"))
    dependencies = [d["name"] for d in chart.get("dependencies", [])]
    templates = [
        p.read_text(encoding="utf-8") for p in sorted((CHART / "templates").rglob("*")) if p.is_file()
    ]
    assert unread_values(values, templates, skip=dependencies) == []


def test_a_value_no_template_reads_is_reported_and_parents_or_variables_count_as_reads() -> None:
    values = {
        "webhook": {"replicas": 2, "resources": {"limits": {"cpu": 1}}, "forgotten": True},
        "backends": {"sysdig": {"url": "", "region": "us1"}},
        "dependency": {"anything": 1},
    }
    templates = [
        "replicas: {{ .Values.webhook.replicas }}",
        "{{- toYaml .Values.webhook.resources | nindent 12 }}",
        "{{- $b := .Values.backends -}}{{ $b.sysdig.url }}",
    ]
    assert unread_values(values, templates, skip=["dependency"]) == [
        "webhook.forgotten",
        "backends.sysdig.region",
    ]
