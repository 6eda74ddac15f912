"""Label selectors: parsing the ``metricLabelSelector`` text form into requirements.

The same parsed form feeds the teflon backend (priority and rule filters), the PromQL backends
(label matchers, escaped) and the ``selector`` echoed in v1beta1/v1beta2 answers.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Literal

Op = Literal["=", "!=", "in", "notin", "exists", "!"]

_KEY = re.compile(r"^([a-z0-9]([-a-z0-9.]*[a-z0-9])?/)?[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$")
_VALUE = re.compile(r"^([A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?)?$")
_SET = re.compile(r"^\s*([^\s!=()]+)\s+(in|notin)\s+\(([^()]*)\)\s*$")


class SelectorError(ValueError):
    """The selector text is malformed; the message says which part."""


@dataclass(frozen=True)
class Requirement:
    key: str
    op: Op
    values: tuple[str, ...] = ()


@dataclass(frozen=True)
class Selector:
    requirements: tuple[Requirement, ...] = ()
    text: str = ""

    def __bool__(self) -> bool:
        return bool(self.requirements)

    def to_label_selector(self) -> dict[str, Any] | None:
        """The ``metav1.LabelSelector`` form, or None for the empty selector."""
        if not self.requirements:
            return None
        labels: dict[str, str] = {}
        exprs: list[dict[str, Any]] = []
        ops = {"in": "In", "notin": "NotIn", "exists": "Exists", "!": "DoesNotExist", "!=": "NotIn"}
        for r in self.requirements:
            if r.op == "=":
                labels[r.key] = r.values[0]
            else:
                exprs.append({"key": r.key, "operator": ops[r.op], "values": list(r.values)})
        return {"matchLabels": labels or None, "matchExpressions": exprs or None}


def _split(text: str) -> list[str]:
    parts, depth, cur = [], 0, ""
    for ch in text:
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        if ch == "," and depth == 0:
            parts.append(cur)
            cur = ""
        else:
            cur += ch
    parts.append(cur)
    return parts


def _key(key: str) -> str:
    if not _KEY.match(key) or len(key) > 317:
        raise SelectorError(f"invalid label key {key!r}")
    return key


def _value(value: str) -> str:
    if not _VALUE.match(value) or len(value) > 63:
        raise SelectorError(f"invalid label value {value!r}")
    return value


def parse_selector(text: str) -> Selector:
    """Parse Kubernetes label-selector text (``a=b,c!=d,e in (f,g),h,!i``); ``SelectorError`` if bad."""
    reqs: list[Requirement] = []
    if not text.strip():
        return Selector()
    for raw in _split(text):
        part = raw.strip()
        if not part:
            raise SelectorError(f"empty requirement in selector {text!r}")
        if m := _SET.match(part):
            values = tuple(_value(v.strip()) for v in m.group(3).split(",") if v.strip())
            if not values:
                raise SelectorError(f"{part!r}: a set needs at least one value")
            reqs.append(Requirement(_key(m.group(1)), "in" if m.group(2) == "in" else "notin", values))
        elif "!=" in part:
            k, v = part.split("!=", 1)
            reqs.append(Requirement(_key(k.strip()), "!=", (_value(v.strip()),)))
        elif "=" in part:
            k, v = part.split("==", 1) if "==" in part else part.split("=", 1)
            reqs.append(Requirement(_key(k.strip()), "=", (_value(v.strip()),)))
        elif part.startswith("!"):
            reqs.append(Requirement(_key(part[1:].strip()), "!"))
        else:
            reqs.append(Requirement(_key(part), "exists"))
    return Selector(tuple(reqs), text)
