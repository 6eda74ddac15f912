"""The custom and external metrics API wire formats, exactly as the HPA's client decodes them.

Top-level ``kind``/``apiVersion`` are always present (the client's decoder needs them), values are
Kubernetes Quantity strings in milli-units, timestamps RFC 3339 with seconds precision in UTC, and
``selector`` is emitted as ``null`` rather than omitted because the Go type has no ``omitempty``.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

CUSTOM_GROUP = "custom.metrics.k8s.io"
EXTERNAL_GROUP = "external.metrics.k8s.io"
CUSTOM_VERSIONS = ("v1beta2", "v1beta1")  # preferred first
EXTERNAL_VERSIONS = ("v1beta1",)


def format_quantity(value: float) -> str:
    """A Quantity string in milli-units (``16500m``), or a plain integer when it is whole.

    The HPA reads ``MilliValue()``; anything finer than 0.001 is rounded. Non-finite values have no
    Quantity form and raise ``ValueError``.
    """
    if not math.isfinite(value):
        raise ValueError(f"{value!r} is not a finite number")
    milli = round(value * 1000)
    if milli % 1000 == 0:
        return str(milli // 1000)
    return f"{milli}m"


def format_time(ts: datetime) -> str:
    """``metav1.Time``: RFC 3339, seconds precision, UTC."""
    return ts.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class _Wire(BaseModel):
    model_config = ConfigDict(populate_by_name=True)


class ObjectReference(_Wire):
    kind: str
    namespace: str = ""
    name: str
    api_version: str = Field(alias="apiVersion")


class LabelSelector(_Wire):
    match_labels: dict[str, str] | None = Field(default=None, alias="matchLabels")
    match_expressions: list[dict[str, Any]] | None = Field(default=None, alias="matchExpressions")


class ListMeta(_Wire):
    pass


class MetricValueV1Beta1(_Wire):
    described_object: ObjectReference = Field(alias="describedObject")
    metric_name: str = Field(alias="metricName")
    timestamp: str
    window: int | None = None
    value: str
    selector: LabelSelector | None = None


class MetricIdentifier(_Wire):
    name: str
    selector: LabelSelector | None = None


class MetricValueV1Beta2(_Wire):
    described_object: ObjectReference = Field(alias="describedObject")
    metric: MetricIdentifier
    timestamp: str
    window_seconds: int | None = Field(default=None, alias="windowSeconds")
    value: str


class MetricValueListV1Beta1(_Wire):
    kind: Literal["MetricValueList"] = "MetricValueList"
    api_version: Literal["custom.metrics.k8s.io/v1beta1"] = Field(
        default="custom.metrics.k8s.io/v1beta1", alias="apiVersion"
    )
    metadata: ListMeta = Field(default_factory=ListMeta)
    items: list[MetricValueV1Beta1]


class MetricValueListV1Beta2(_Wire):
    kind: Literal["MetricValueList"] = "MetricValueList"
    api_version: Literal["custom.metrics.k8s.io/v1beta2"] = Field(
        default="custom.metrics.k8s.io/v1beta2", alias="apiVersion"
    )
    metadata: ListMeta = Field(default_factory=ListMeta)
    items: list[MetricValueV1Beta2]


class ExternalMetricValue(_Wire):
    metric_name: str = Field(alias="metricName")
    metric_labels: dict[str, str] = Field(default_factory=dict, alias="metricLabels")
    timestamp: str
    window: int | None = None
    value: str


class ExternalMetricValueList(_Wire):
    kind: Literal["ExternalMetricValueList"] = "ExternalMetricValueList"
    api_version: Literal["external.metrics.k8s.io/v1beta1"] = Field(
        default="external.metrics.k8s.io/v1beta1", alias="apiVersion"
    )
    metadata: ListMeta = Field(default_factory=ListMeta)
    items: list[ExternalMetricValue]


class APIResource(_Wire):
    name: str
    singular_name: str = Field(default="", alias="singularName")
    namespaced: bool
    kind: str
    verbs: list[str] = Field(default_factory=lambda: ["get"])


class APIResourceList(_Wire):
    kind: Literal["APIResourceList"] = "APIResourceList"
    api_version: Literal["v1"] = Field(default="v1", alias="apiVersion")
    group_version: str = Field(alias="groupVersion")
    resources: list[APIResource]


class GroupVersionForDiscovery(_Wire):
    group_version: str = Field(alias="groupVersion")
    version: str


class APIGroup(_Wire):
    kind: Literal["APIGroup"] = "APIGroup"
    api_version: Literal["v1"] = Field(default="v1", alias="apiVersion")
    name: str
    versions: list[GroupVersionForDiscovery]
    preferred_version: GroupVersionForDiscovery = Field(alias="preferredVersion")


class APIGroupList(_Wire):
    kind: Literal["APIGroupList"] = "APIGroupList"
    api_version: Literal["v1"] = Field(default="v1", alias="apiVersion")
    groups: list[APIGroup]


def api_group(name: str, versions: tuple[str, ...]) -> APIGroup:
    gvs = [GroupVersionForDiscovery(group_version=f"{name}/{v}", version=v) for v in versions]
    return APIGroup(name=name, versions=gvs, preferred_version=gvs[0])


class StatusDetails(_Wire):
    name: str = ""
    group: str = ""
    kind: str = ""


class Status(_Wire):
    kind: Literal["Status"] = "Status"
    api_version: Literal["v1"] = Field(default="v1", alias="apiVersion")
    metadata: ListMeta = Field(default_factory=ListMeta)
    status: Literal["Failure"] = "Failure"
    message: str
    reason: str
    code: int
    details: StatusDetails | None = None


def dump(model: BaseModel) -> dict[str, Any]:
    """The JSON document of a wire model (aliases, and ``null`` kept where the Go type has it)."""
    return model.model_dump(by_alias=True, mode="json", exclude_none=False)


def dump_json(model: BaseModel) -> bytes:
    """``dump`` as JSON bytes, serialized by pydantic-core."""
    return model.model_dump_json(by_alias=True, exclude_none=False).encode()
