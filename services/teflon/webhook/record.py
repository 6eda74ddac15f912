"""One record per decision: the INFO log line, the counters and the Kubernetes Event, from one call.

Every path through the responder ends here, so what a decision says is written once and reads the same
in the log, in ``teflon_webhook_actions_total`` and in ``kubectl describe pod``.
"""

from __future__ import annotations

import logging

from teflon.common.kube import KubeError
from teflon.webhook.actions import EventRecorder
from teflon.webhook.decisions import Decision, Result, Skip, event_text
from teflon.webhook.objects import PodRef
from teflon.webhook.policy import CircuitBreakerConfig, Rule
from teflon.webhook.telemetry import Telemetry

log = logging.getLogger("teflon.webhook.responder")


class DecisionRecorder:
    """Writes decisions; ``events`` is None when no cluster is configured (no Events then)."""

    def __init__(self, *, telemetry: Telemetry, events: EventRecorder | None) -> None:
        self._telemetry = telemetry
        self._events = events

    def count(self, d: Decision) -> None:
        self._telemetry.actions.labels(
            d.action.value, d.result.value, d.mode.value, self._telemetry.ns(d.alert.namespace)
        ).inc()
        if d.reason is not None and d.result is Result.SKIPPED:
            self._telemetry.skips.labels(d.reason.value).inc()

    async def decided(self, d: Decision, ref: PodRef | None) -> None:
        """Record one action's decision; ``ref`` is the pod to write the Event on (None: no Event)."""
        self.count(d)
        if d.reason is Skip.DEDUPED:
            log.debug("response deduplicated", extra=d.fields())
            return
        if d.reason is Skip.DUPLICATE:
            # The claim holder records the decision on the pod; an Event from every replica is noise.
            log.info("response claimed elsewhere", extra=d.fields())
            return
        log.info("response decided", extra=d.fields())
        if ref is not None:
            text = event_text(d)
            await self.event(ref, text.action, text.reason, text.note, warning=text.warning)

    async def rule_skipped(self, rule: Rule, d: Decision, *, first: bool, ref: PodRef | None) -> None:
        """Record a protection that skips every action of ``rule``.

        ``first``: the first time this pod and reason came up in the dedupe window; later ones log at
        DEBUG and write no Event, so a noisy pod cannot flood the log. ``ref``: a pod that exists gets one
        Event, so ``kubectl describe`` shows why teflon left it alone (protected namespaces get none).
        """
        for action in rule.actions:
            self.count(Decision(d.alert, rule.name, action.type, d.mode, Result.SKIPPED, d.reason, d.detail))
        log.log(
            logging.INFO if first else logging.DEBUG,
            "response skipped",
            extra=d.fields() | {"actions": [a.type.value for a in rule.actions]},
        )
        if first and ref is not None and d.reason is not None:
            actions = ", ".join(a.type.value for a in rule.actions)
            note = f"{rule.name}: {actions} skipped: {d.reason.value} {d.detail}"
            await self.event(
                ref, "Skip", "TeflonSkipped", note.strip(), warning=d.reason is Skip.NODE_MISMATCH
            )

    async def circuit_opened(self, cfg: CircuitBreakerConfig, ref: PodRef) -> None:
        log.error(
            "circuit breaker open: enforcement stopped",
            extra={
                "max_actions": cfg.max_actions,
                "window_seconds": cfg.window_seconds,
                "cooldown_seconds": cfg.cooldown_seconds,
            },
        )
        await self.event(
            ref,
            "CircuitOpen",
            "TeflonCircuitOpen",
            f"{cfg.max_actions} actions within {cfg.window_seconds:g}s: teflon stops enforcing for "
            f"{cfg.cooldown_seconds:g}s",
        )

    async def event(self, ref: PodRef, action: str, reason: str, note: str, *, warning: bool = True) -> None:
        if self._events is None:
            return
        try:
            await self._events.record_event(ref, action=action, reason=reason, note=note, warning=warning)
        except KubeError as exc:
            self._telemetry.events_failed.inc()
            log.warning(
                "event not recorded", extra={"namespace": ref.namespace, "pod": ref.name, "error": str(exc)}
            )
