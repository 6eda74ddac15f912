"""Falco alerts as they arrive on the wire, and the one normalised ``Alert`` the rest of the webhook uses.

Accepted shapes: a raw Falco JSON alert (0.23 to 0.44: ``output_fields`` with dotted keys, ``null`` or
``"<NA>"`` for a missing value, ``evt.time`` as integer nanoseconds, optional ``source``/``tags``/
``hostname``), a falcosidekick webhook body (adds ``uuid``, drops ``message``) and batches of either as a
JSON array or NDJSON (one alert per line, as ``program_output`` forwards them).

Parsing is strict about what decides a response (rule, priority, types) and lenient about what merely
describes it (unknown keys are kept in ``fields``).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, StrictStr, ValidationError

from teflon.common.wire import Priority

MISSING_TEXT = "<NA>"
INTERNAL_SOURCE = "internal"
_INTERNAL_RULE_PREFIX = "Falco internal"
# json.loads recurses once per nesting level; no alert nests anywhere near Python's recursion limit.
_TOO_DEEP = "invalid JSON: nested too deeply to be a Falco alert"
_JSON_TYPES = frozenset({"", "application/json"})
_NDJSON_TYPES = frozenset(
    {"application/x-ndjson", "application/ndjson", "application/jsonl", "application/x-jsonlines"}
)

# What Kubernetes itself accepts: a namespace is a DNS-1123 label, a pod name a DNS-1123 subdomain.
# An alert naming anything else names no object teflon could act on, and its names would otherwise be
# stored (rates), counted (labels) and logged at whatever size the sender chose.
NAMESPACE_NAME = re.compile(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?")
POD_NAME = re.compile(r"(?=.{1,253}$)[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")
# Falco's own rules are named in under 80 characters and its sources (syscall, k8s_audit, plugin
# event sources) in under 20; the caps leave room for custom rules and bound every label and log line.
MAX_RULE_CHARS = 256
MAX_SOURCE_CHARS = 64
MAX_HOSTNAME_CHARS = 253
_SHOWN_CHARS = 64


class RejectReason(StrEnum):
    """Why an ingest request was refused; the ``reason`` label of ``alerts_rejected_total``."""

    BODY_TOO_LARGE = "body_too_large"
    LINE_TOO_LARGE = "line_too_large"
    UNSUPPORTED_MEDIA_TYPE = "unsupported_media_type"
    INVALID_JSON = "invalid_json"
    INVALID_ALERT = "invalid_alert"
    UNKNOWN_PRIORITY = "unknown_priority"
    EMPTY = "empty"
    QUEUE_FULL = "queue_full"


class IngestError(Exception):
    """Base of the errors an ingest request can end in; each has one handler at the app's edge."""


class AlertRejected(IngestError):
    """An alert (or a whole request body) could not be accepted."""

    def __init__(self, reason: RejectReason, detail: str, *, index: int | None = None) -> None:
        super().__init__(detail)
        self.reason = reason
        self.detail = detail
        self.index = index


class FalcoPayload(BaseModel):
    """One alert exactly as Falco or falcosidekick sends it (types checked, unknown keys kept)."""

    model_config = ConfigDict(extra="allow", frozen=True)

    rule: StrictStr
    priority: StrictStr
    time: StrictStr | None = None
    output: StrictStr | None = None
    output_fields: dict[str, Any] | None = None
    source: StrictStr | None = None
    hostname: StrictStr | None = None
    tags: list[StrictStr] | None = None
    uuid: StrictStr | None = None
    message: StrictStr | None = None


@dataclass(frozen=True, slots=True)
class Alert:
    """A validated, normalised Falco alert. Missing values are ``None``, never ``"<NA>"``."""

    rule: str
    priority: Priority
    source: str
    time: datetime
    time_ns: int
    hostname: str | None
    tags: tuple[str, ...]
    namespace: str | None
    pod: str | None
    pod_uid: str | None
    container_id: str | None
    container_name: str | None
    image: str | None
    uuid: str | None
    output: str | None
    fields: dict[str, Any]

    @property
    def internal(self) -> bool:
        """Falco's own messages (drops, metrics snapshots): counted and logged, never acted on."""
        return self.source == INTERNAL_SOURCE


def _present(value: Any) -> Any:
    return None if value is None or value == MISSING_TEXT else value


def _text(fields: dict[str, Any], *keys: str) -> str | None:
    """The first key holding a non-empty string; numbers are rendered, empty strings count as missing."""
    for key in keys:
        value = fields.get(key)
        if isinstance(value, bool) or value is None:
            continue
        if isinstance(value, int | float):
            return str(value)
        if isinstance(value, str) and value:
            return value
    return None


def _infer_source(rule: str, fields: dict[str, Any]) -> str:
    # Falco before 0.31 wrote no `source`; internal messages and audit rules are recognisable anyway.
    if rule.startswith(_INTERNAL_RULE_PREFIX):
        return INTERNAL_SOURCE
    if any(key.startswith(("ka.", "jevt.")) for key in fields):
        return "k8s_audit"
    return "syscall"


def _event_time(payload: FalcoPayload, fields: dict[str, Any], received: datetime) -> tuple[datetime, int]:
    for key in ("evt.time", "evt.time.iso8601"):
        raw = fields.get(key)
        if isinstance(raw, int) and not isinstance(raw, bool) and raw > 0:
            try:
                when = datetime.fromtimestamp(raw // 1_000_000_000, tz=UTC)
            except (OverflowError, OSError, ValueError):
                # Past what a datetime can hold (year 9999): no clock wrote this, so refuse it.
                raise AlertRejected(
                    RejectReason.INVALID_ALERT, f"{key}: {raw} nanoseconds is not a time Falco can send"
                ) from None
            return when.replace(microsecond=(raw % 1_000_000_000) // 1000), raw
    if payload.time:
        try:
            parsed = datetime.fromisoformat(payload.time)
        except ValueError as exc:
            raise AlertRejected(RejectReason.INVALID_ALERT, f"time: not an ISO 8601 time: {exc}") from None
        if parsed.tzinfo is None:
            parsed = parsed.replace(tzinfo=UTC)
        return parsed, int(parsed.timestamp()) * 1_000_000_000 + parsed.microsecond * 1000
    return received, int(received.timestamp() * 1_000_000_000)


def normalise(payload: FalcoPayload, *, received: datetime) -> Alert:
    """Turn one wire payload into an ``Alert``; raises ``AlertRejected`` for an unknown priority."""
    try:
        priority = Priority.parse(payload.priority)
    except ValueError as exc:
        raise AlertRejected(RejectReason.UNKNOWN_PRIORITY, str(exc)) from None
    fields = {key: _present(value) for key, value in (payload.output_fields or {}).items()}
    source = _present(payload.source) or _infer_source(payload.rule, fields)
    time, time_ns = _event_time(payload, fields, received)
    repository = _text(fields, "container.image.repository", "container.image")
    tag = _text(fields, "container.image.tag")
    image = f"{repository}:{tag}" if repository and tag else repository
    return Alert(
        rule=payload.rule,
        priority=priority,
        source=source,
        time=time,
        time_ns=time_ns,
        hostname=_present(payload.hostname) or None,
        tags=tuple(payload.tags or ()),
        # Audit-log alerts name the namespace they touched; that is still the namespace to count.
        namespace=_text(fields, "k8s.ns.name", "ka.target.namespace"),
        pod=_text(fields, "k8s.pod.name"),
        pod_uid=_text(fields, "k8s.pod.uid"),
        container_id=_text(fields, "container.id"),
        container_name=_text(fields, "container.name"),
        image=image,
        uuid=payload.uuid,
        output=payload.output,
        fields=fields,
    )


def _shown(value: str) -> str:
    """``value`` for an error message: short values quoted, long ones cut, with their length."""
    if len(value) <= _SHOWN_CHARS:
        return repr(value)
    return f"{value[:_SHOWN_CHARS]!r}... ({len(value)} characters)"


def _check_bounds(alert: Alert) -> Alert:
    """Refuse an alert whose names or labels are not what Kubernetes and Falco can produce."""
    problems: list[str] = []
    if len(alert.rule) > MAX_RULE_CHARS:
        problems.append(f"rule: longer than {MAX_RULE_CHARS} characters: {_shown(alert.rule)}")
    if len(alert.source) > MAX_SOURCE_CHARS:
        problems.append(f"source: longer than {MAX_SOURCE_CHARS} characters: {_shown(alert.source)}")
    if alert.hostname is not None and len(alert.hostname) > MAX_HOSTNAME_CHARS:
        problems.append(f"hostname: longer than {MAX_HOSTNAME_CHARS} characters: {_shown(alert.hostname)}")
    if alert.namespace is not None and not NAMESPACE_NAME.fullmatch(alert.namespace):
        problems.append(
            f"namespace: not a Kubernetes namespace name (DNS-1123 label): {_shown(alert.namespace)}"
        )
    if alert.pod is not None and not POD_NAME.fullmatch(alert.pod):
        problems.append(f"k8s.pod.name: not a Kubernetes pod name (DNS-1123 subdomain): {_shown(alert.pod)}")
    if problems:
        raise AlertRejected(RejectReason.INVALID_ALERT, "; ".join(problems))
    return alert


def _validation_detail(exc: ValidationError) -> str:
    parts = []
    for err in exc.errors()[:5]:
        where = ".".join(str(p) for p in err["loc"]) or "body"
        parts.append(f"{where}: {err['msg']}")
    return "; ".join(parts)


def parse_one(doc: Any, *, received: datetime, index: int | None = None) -> Alert:
    """Validate one decoded JSON document as an alert."""
    if not isinstance(doc, dict):
        raise AlertRejected(
            RejectReason.INVALID_ALERT, f"an alert is a JSON object, not {type(doc).__name__}", index=index
        )
    try:
        payload = FalcoPayload.model_validate(doc)
        return _check_bounds(normalise(payload, received=received))
    except ValidationError as exc:
        raise AlertRejected(RejectReason.INVALID_ALERT, _validation_detail(exc), index=index) from None
    except AlertRejected as exc:
        exc.index = index
        raise


def decode_body(body: bytes, *, ndjson: bool = False) -> list[Any]:
    """Decode a request body into a list of JSON documents (one alert, an array, or NDJSON lines)."""
    text = body.strip()
    if not text:
        raise AlertRejected(RejectReason.EMPTY, "the request body is empty")
    if not ndjson:
        try:
            doc = json.loads(text)
        except json.JSONDecodeError as exc:
            if exc.msg != "Extra data":
                raise AlertRejected(RejectReason.INVALID_JSON, f"invalid JSON: {exc}") from None
            ndjson = True  # several documents one after another: NDJSON without its content type
        except UnicodeDecodeError as exc:
            raise AlertRejected(RejectReason.INVALID_JSON, f"the body is not UTF-8: {exc}") from None
        except RecursionError:
            raise AlertRejected(RejectReason.INVALID_JSON, _TOO_DEEP) from None
        else:
            return doc if isinstance(doc, list) else [doc]
    return [
        decode_line(line, number) for number, line in enumerate(text.splitlines(), start=1) if line.strip()
    ]


def decode_line(line: bytes, number: int) -> Any:
    """Decode one NDJSON line (``number`` counts from 1 and only names the line in errors)."""
    try:
        return json.loads(line)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise AlertRejected(RejectReason.INVALID_JSON, f"invalid JSON on line {number}: {exc}") from None
    except RecursionError:
        raise AlertRejected(RejectReason.INVALID_JSON, f"line {number}: {_TOO_DEEP}") from None


def is_ndjson(content_type: str) -> bool:
    """Whether a request's ``Content-Type`` announces NDJSON; raises ``AlertRejected`` if it is not JSON."""
    media = content_type.split(";", 1)[0].strip().lower()
    if media in _NDJSON_TYPES:
        return True
    if media in _JSON_TYPES or media.endswith("+json"):
        return False
    hint = " (set json_output: true in falco.yaml)" if media == "text/plain" else ""
    raise AlertRejected(
        RejectReason.UNSUPPORTED_MEDIA_TYPE, f"content type {media!r} is not accepted; send JSON alerts{hint}"
    )
