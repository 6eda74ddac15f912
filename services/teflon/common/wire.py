"""Wire formats shared by the webhook and the metrics server.

The webhook serves windowed Falco alert counts on its internal rate API (``GET /v1/rates``); the metrics
server asks every webhook replica and sums. Both sides use these models, so the format has one definition.
Counts, not rates, travel on the wire: counts from several replicas add up exactly, and the metrics server
turns the sum into a per-minute rate with the window it asked for.
"""

from __future__ import annotations

from datetime import datetime
from enum import IntEnum, StrEnum

from pydantic import BaseModel, ConfigDict, Field, field_validator


class Priority(IntEnum):
    """Falco priorities; a larger value is more severe (Falco numbers them the other way round)."""

    DEBUG = 0
    INFORMATIONAL = 1
    NOTICE = 2
    WARNING = 3
    ERROR = 4
    CRITICAL = 5
    ALERT = 6
    EMERGENCY = 7

    @classmethod
    def parse(cls, text: str) -> Priority:
        """Parse a Falco priority case-insensitively, accepting ``info`` for Informational.

        Raises ``ValueError`` naming the accepted values.
        """
        key = text.strip().upper()
        if key == "INFO":
            key = "INFORMATIONAL"
        try:
            return cls[key]
        except KeyError:
            names = ", ".join(p.label for p in reversed(cls))
            raise ValueError(f"unknown Falco priority {text!r}; expected one of {names}") from None

    @property
    def label(self) -> str:
        """The spelling Falco uses in JSON output (``Critical``, ``Informational``)."""
        return self.name.capitalize()


class RateScope(StrEnum):
    """What a rate is counted for."""

    POD = "pod"
    WORKLOAD = "workload"
    NAMESPACE = "namespace"


class Signal(StrEnum):
    """What is counted: Falco alerts received, or responses (actions) the webhook took."""

    ALERTS = "alerts"
    RESPONSES = "responses"


# The windows every webhook replica keeps counts for, in seconds; the only ones a query may ask for.
RATE_WINDOWS: tuple[int, ...] = (60, 300)


class RatesQuery(BaseModel):
    """Query of ``GET /v1/rates`` (docs/design.md): parsed by the webhook, built by the metrics server."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True, frozen=True)

    scope: RateScope
    signal: Signal = Signal.ALERTS
    window: int = RATE_WINDOWS[0]
    namespace: str | None = None
    kind: str | None = None
    name: str | None = None
    min_priority: Priority | None = Field(default=None, alias="minPriority")
    rule: str | None = None

    @field_validator("min_priority", mode="before")
    @classmethod
    def _priority(cls, value: object) -> object:
        return Priority.parse(value) if isinstance(value, str) else value

    @field_validator("window")
    @classmethod
    def _window(cls, value: int) -> int:
        if value not in RATE_WINDOWS:
            raise ValueError(f"window must be one of {', '.join(map(str, RATE_WINDOWS))} seconds")
        return value

    def params(self) -> dict[str, str]:
        """The query as URL parameters, unset filters left out; the priority spelled as Falco does."""
        out = {"scope": self.scope.value, "signal": self.signal.value, "window": str(self.window)}
        for key, value in (("namespace", self.namespace), ("kind", self.kind), ("name", self.name)):
            if value is not None:
                out[key] = value
        if self.min_priority is not None:
            out["minPriority"] = self.min_priority.label
        if self.rule is not None:
            out["rule"] = self.rule
        return out

    def answered_by(self, snapshot: RateSnapshot) -> bool:
        """Whether ``snapshot`` counts what this query asked for (scope, signal, window)."""
        return (snapshot.scope, snapshot.signal, snapshot.window_seconds) == (
            self.scope,
            self.signal,
            self.window,
        )


class RateEntry(BaseModel):
    """The count of one object over the requested window on one webhook replica."""

    model_config = ConfigDict(frozen=True)

    namespace: str
    kind: str = Field(description="Pod, Deployment, StatefulSet, DaemonSet, Job, CronJob or Namespace")
    name: str
    count: int = Field(ge=0)
    last_seen: datetime | None = None


class HeldObject(BaseModel):
    """An object whose rates are held: teflon enforced a response on it (or its pod) recently.

    ``cap_per_minute`` None: the metrics server answers an error for it (its HPA holds); a number: the
    value it serves is capped there (its rate before the response).
    """

    model_config = ConfigDict(frozen=True)

    namespace: str
    kind: str
    name: str
    since: datetime
    until: datetime
    cap_per_minute: float | None = Field(default=None, ge=0)


class RateSnapshot(BaseModel):
    """Answer of ``GET /v1/rates``: counts per object for one scope, signal and window."""

    scope: RateScope
    signal: Signal = Signal.ALERTS
    window_seconds: int = Field(gt=0)
    generated_at: datetime
    replica: str = Field(description="the answering webhook replica (pod name or host:port)")
    complete: bool = Field(
        default=True,
        description="false when the replica dropped tracked objects to stay within its memory cap",
    )
    entries: list[RateEntry] = Field(default_factory=list)
    held: list[HeldObject] = Field(
        default_factory=list,
        description="objects of the query whose scaling metrics are held by the guardrail",
    )
