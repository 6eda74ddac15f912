"""Wire formats shared by the webhook and the metrics server.

The webhook serves windowed Falco alert counts on its internal rate API (``GET /v1/rates``); the metrics
server asks every webhook replica and sums. Both sides use these models, so the format has one definition.
Counts, not rates, travel on the wire: counts from several replicas add up exactly, and the metrics server
turns the sum into a per-minute rate with the window it asked for.
"""

from __future__ import annotations

from datetime import datetime
from enum import IntEnum, StrEnum

from pydantic import BaseModel, ConfigDict, Field


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


class RateEntry(BaseModel):
    """The count of one object over the requested window on one webhook replica."""

    model_config = ConfigDict(frozen=True)

    namespace: str
    kind: str = Field(description="Pod, Deployment, StatefulSet, DaemonSet, Job, CronJob or Namespace")
    name: str
    count: int = Field(ge=0)
    last_seen: datetime | None = None


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
