"""The webhook's moving parts in one place: the alert queue, its workers, the policy and housekeeping.

Ingest only validates and enqueues (Falco waits for our answer on its single output thread, and ignores
it anyway); workers take alerts off the queue and hand them to the ``Responder``. On shutdown the
service stops accepting and drains the queue for at most ``drain_seconds``.

The queue is bounded twice: in alerts (``queue_size``) and in bytes (``queue_max_bytes``, shared with the
request bodies being read), so that neither many small alerts nor a few large ones, nor bodies that
arrive slowly, can hold more memory than the budget.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime

from teflon.common.wire import RateScope
from teflon.webhook.actions import ClusterActions
from teflon.webhook.alert import Alert, IngestError
from teflon.webhook.keeper import sweep_quarantines
from teflon.webhook.policy import Mode, Policy, PolicyStore, is_protected_namespace
from teflon.webhook.rates import RateTracker
from teflon.webhook.responder import Responder
from teflon.webhook.settings import Settings
from teflon.webhook.telemetry import Telemetry

log = logging.getLogger(__name__)

_HOUSEKEEPING_SECONDS = 15.0
# Expired claim Leases are deleted about once a minute; the jitter keeps replicas from listing together.
_CLAIM_SWEEP_SECONDS = 60.0
_CLAIM_SWEEP_JITTER = 15.0


# What one queued alert holds besides its share of the request body: the Alert, its fields dict and
# the queue entry (measured with tracemalloc on the Falco fixtures: 1.5 to 3 KiB each).
ALERT_OVERHEAD_BYTES = 3 * 1024


class ByteBudget:
    """Bytes that alerts in flight (bodies being read, alerts queued) may hold at once."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.used = 0

    def take(self, size: int) -> bool:
        """Reserve ``size`` bytes; False (and nothing reserved) when that would pass the limit."""
        if self.used + size > self.limit:
            return False
        self.used += size
        return True

    def give(self, size: int) -> None:
        self.used = max(0, self.used - size)


class QueueFull(IngestError):
    """The alert queue is full; ``accepted`` alerts of the request made it in before it filled."""

    def __init__(self, accepted: int, dropped: int) -> None:
        super().__init__(f"alert queue full: {dropped} alert(s) dropped")
        self.accepted = accepted
        self.dropped = dropped


class ShuttingDown(IngestError):
    """The service is draining and takes no new alerts."""


class WebhookService:
    """Owns the queue, the workers and the background loops; routes talk to it only."""

    def __init__(self, settings: Settings, *, telemetry: Telemetry, actions: ClusterActions | None) -> None:
        self.settings = settings
        self.telemetry = telemetry
        self.actions = actions
        self.queue: asyncio.Queue[tuple[Alert, float, int]] = asyncio.Queue(maxsize=settings.queue_size)
        self.memory = ByteBudget(settings.queue_max_bytes)
        self.policies = PolicyStore(
            settings.policy_file, on_error=self._policy_failed, on_load=self._policy_loaded
        )
        self.rates = RateTracker(max_tracked=settings.rate_max_tracked, ttl_seconds=settings.rate_ttl_seconds)
        self.responder = Responder(
            policy=self.policy,
            own_namespace=settings.namespace,
            telemetry=telemetry,
            rates=self.rates,
            actions=actions,
            identity=settings.pod_name,
        )
        self.accepting = False
        self._tasks: list[asyncio.Task[None]] = []
        telemetry.queue_capacity.set(settings.queue_size)
        telemetry.queue_depth.set_function(self.queue.qsize)
        for scope in RateScope:
            telemetry.tracked.labels(scope.value).set_function(self._tracked_counter(scope))

    def _tracked_counter(self, scope: RateScope) -> Callable[[], float]:
        return lambda: float(self.rates.tracked(scope))

    # --- policy ---

    def policy(self) -> Policy | None:
        return self.policies.policy

    def _policy_failed(self, _error: str) -> None:
        self.telemetry.policy_errors.inc()

    def _policy_loaded(self, policy: Policy) -> None:
        self.telemetry.policy_loaded.set(1)
        self.telemetry.policy_enforce.set(1 if policy.mode is Mode.ENFORCE else 0)
        self.responder.limits.load(policy)

    # --- ingest ---

    def submit(self, alerts: list[Alert], *, body_bytes: int = 0) -> None:
        """Count and enqueue ``alerts``; raises ``QueueFull`` (with how many fitted) or ``ShuttingDown``.

        ``body_bytes`` is the size of the request the alerts came in; each alert is charged its share of
        it plus ``ALERT_OVERHEAD_BYTES`` against the byte budget until a worker is done with it.
        """
        if not self.accepting:
            raise ShuttingDown("the webhook is shutting down")
        now = time.monotonic()
        counter = self.telemetry.alerts
        cost = body_bytes // max(1, len(alerts)) + ALERT_OVERHEAD_BYTES
        for i, alert in enumerate(alerts):
            if self.queue.full() or not self.memory.take(cost):
                raise QueueFull(accepted=i, dropped=len(alerts) - i)
            self.queue.put_nowait((alert, now, cost))
            labels = self.telemetry.alert_labels(
                alert.rule, alert.priority.label, alert.source, alert.namespace
            )
            counter.labels(*labels).inc()

    # --- readiness ---

    async def ready(self) -> tuple[bool, dict[str, object]]:
        """Ready once a policy is loaded, and in enforce mode only while the Kubernetes API answers."""
        policy = self.policies.policy
        checks: dict[str, object] = {"policy": policy is not None, "accepting": self.accepting}
        if policy is not None and policy.mode is Mode.ENFORCE:
            ok = False
            if self.actions is not None:
                try:
                    ok = await asyncio.wait_for(self.actions.reachable(), timeout=2.0)
                except TimeoutError:
                    ok = False
            checks["kubernetes"] = ok
        return all(bool(v) for v in checks.values()), checks

    # --- lifecycle ---

    async def _worker(self) -> None:
        while True:
            alert, received, cost = await self.queue.get()
            try:
                await self.responder.handle(alert, received)
            except Exception:
                # A bug or an unexpected answer must cost one alert, never the worker.
                log.exception(
                    "alert processing failed",
                    extra={"rule": alert.rule, "namespace": alert.namespace, "pod": alert.pod},
                )
            finally:
                self.memory.give(cost)
                self.queue.task_done()
            # get() does not suspend while the queue holds alerts, and in dry run neither may handle():
            # yield once per alert so probes and ingest are served while a deep queue drains.
            await asyncio.sleep(0)

    @staticmethod
    def _next_claim_sweep() -> float:
        return time.monotonic() + _CLAIM_SWEEP_SECONDS + random.uniform(0.0, _CLAIM_SWEEP_JITTER)  # noqa: S311

    async def sweep_claims(self) -> None:
        """Delete expired claim Leases; only in enforce mode, which alone makes (and may manage) them."""
        policy = self.policies.policy
        if self.actions is None or policy is None or policy.mode is not Mode.ENFORCE:
            return
        try:
            deleted = await self.actions.sweep_claims(self.settings.namespace)
        except Exception as exc:
            # Leftover Leases cost nothing but space, and an expired one is re-claimed anyway.
            log.warning("claim sweep failed", extra={"error": str(exc)})
            return
        if deleted:
            log.info("expired claims deleted", extra={"deleted": deleted})

    async def sweep_quarantines(self) -> None:
        """Delete quarantined pods whose TTL passed and carry out admins' release and extend requests.

        In enforce mode only, like the claims: dry run never quarantines, so it never has to let go.
        """
        policy = self.policies.policy
        if self.actions is None or policy is None or policy.mode is not Mode.ENFORCE:
            return
        own = self.settings.namespace
        try:
            swept = await sweep_quarantines(
                self.actions,
                own,
                datetime.now(UTC),
                protected=lambda ns: is_protected_namespace(policy, own, ns),
            )
        except Exception as exc:
            log.warning("quarantine sweep failed", extra={"error": str(exc)})
            return
        for item in swept:
            log.info(
                "quarantine swept",
                extra={"record": item.record, "due": item.due.value, "outcome": item.outcome},
            )

    async def _housekeeping(self) -> None:
        next_sweep = time.monotonic() + _HOUSEKEEPING_SECONDS
        next_claim_sweep = self._next_claim_sweep()
        while True:
            await asyncio.sleep(self.settings.policy_reload_seconds)
            self.policies.load()
            await self.sweep_quarantines()
            if time.monotonic() >= next_claim_sweep:
                await self.sweep_claims()
                next_claim_sweep = self._next_claim_sweep()
            if time.monotonic() >= next_sweep:
                before = self.rates.evicted_for_cap
                dropped = self.rates.sweep()
                self.telemetry.rate_evictions.labels("expired").inc(dropped)
                self.telemetry.rate_evictions.labels("cap").inc(self.rates.evicted_for_cap - before)
                next_sweep = time.monotonic() + _HOUSEKEEPING_SECONDS

    async def start(self) -> None:
        self.policies.load()
        self.accepting = True
        self._tasks = [
            asyncio.create_task(self._worker(), name=f"worker-{i}") for i in range(self.settings.workers)
        ]
        self._tasks.append(asyncio.create_task(self._housekeeping(), name="housekeeping"))
        log.info(
            "webhook started",
            extra={
                "policy_loaded": self.policies.policy is not None,
                "mode": self.policies.policy.mode.value if self.policies.policy else None,
                "cluster": self.actions is not None,
                "workers": self.settings.workers,
            },
        )

    async def stop(self) -> None:
        """Stop accepting, let the workers drain the queue (bounded by ``drain_seconds``), then stop."""
        self.accepting = False
        left = self.queue.qsize()
        try:
            await asyncio.wait_for(self.queue.join(), timeout=self.settings.drain_seconds)
        except TimeoutError:
            log.warning("drain timed out; alerts left unprocessed", extra={"left": self.queue.qsize()})
        else:
            log.info("queue drained", extra={"drained": left})
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks = []
        if self.actions is not None:
            await self.actions.aclose()

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[WebhookService]:
        await self.start()
        try:
            yield self
        finally:
            await self.stop()
