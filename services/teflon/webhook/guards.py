"""Limits on how much the responder may change, whatever the rules say.

Token buckets (global and per namespace), a circuit breaker that halts all enforcement after too many
actions in a window, and a dedupe window per pod UID and action. Each takes an injectable clock so tests
step time instead of sleeping.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

from teflon.webhook.policy import Bucket, Budgets, CircuitBreakerConfig, Policy

Clock = Callable[[], float]


@dataclass
class TokenBucket:
    """``rate`` tokens per second up to ``burst``; starts full."""

    rate: float
    burst: float
    clock: Clock = time.monotonic
    tokens: float = -1.0
    stamp: float = 0.0

    def __post_init__(self) -> None:
        if self.tokens < 0:
            self.tokens = self.burst
        self.stamp = self.clock()

    @classmethod
    def from_config(cls, cfg: Bucket, clock: Clock) -> TokenBucket:
        return cls(rate=cfg.per_minute / 60.0, burst=float(cfg.burst), clock=clock)

    def _refill(self) -> None:
        now = self.clock()
        self.tokens = min(self.burst, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now

    def available(self) -> bool:
        self._refill()
        return self.tokens >= 1.0

    def take(self) -> None:
        self._refill()
        self.tokens -= 1.0

    @property
    def full(self) -> bool:
        self._refill()
        return self.tokens >= self.burst


class ActionBudget:
    """Global and per-namespace token buckets; an action needs a token from both."""

    def __init__(self, cfg: Budgets, *, clock: Clock = time.monotonic) -> None:
        self._cfg = cfg
        self._clock = clock
        self._global = TokenBucket.from_config(cfg.global_, clock)
        self._namespaces: dict[str, TokenBucket] = {}

    def try_take(self, namespace: str) -> bool:
        bucket = self._namespaces.get(namespace)
        if bucket is None:
            if len(self._namespaces) > 1000:  # a full bucket is the same as a new one: forget those
                self._namespaces = {ns: b for ns, b in self._namespaces.items() if not b.full}
            bucket = self._namespaces[namespace] = TokenBucket.from_config(
                self._cfg.per_namespace, self._clock
            )
        if not (self._global.available() and bucket.available()):
            return False
        self._global.take()
        bucket.take()
        return True


@dataclass
class CircuitBreaker:
    """Opens after ``max_actions`` enforced actions within ``window_seconds``; closes after the cooldown.

    Actions are counted when admitted, not when their API call returns, so failed attempts count too:
    a storm of failing calls is as much a reason to stop as a storm of successful ones.
    """

    cfg: CircuitBreakerConfig
    clock: Clock = time.monotonic
    _actions: deque[float] = field(default_factory=deque)
    _opened_at: float | None = None

    @property
    def open(self) -> bool:
        if self._opened_at is None:
            return False
        if self.clock() - self._opened_at >= self.cfg.cooldown_seconds:
            self._opened_at = None
            self._actions.clear()
            return False
        return True

    def record(self) -> bool:
        """Count one admitted action; True when it trips the breaker (it still runs, the next do not)."""
        now = self.clock()
        self._actions.append(now)
        while self._actions and now - self._actions[0] > self.cfg.window_seconds:
            self._actions.popleft()
        if self._opened_at is None and len(self._actions) >= self.cfg.max_actions:
            self._opened_at = now
            return True
        return False


class Limits:
    """The action budget and the circuit breaker of the current policy, rebuilt when a policy loads.

    A new policy with the same budgets keeps the buckets' tokens, and one with the same breaker settings
    keeps the breaker's state: reloading a file must not reset what limits enforcement.
    """

    def __init__(self, clock: Clock = time.monotonic) -> None:
        self._clock = clock
        self._policy: Policy | None = None
        self._budget: ActionBudget | None = None
        self._breaker: CircuitBreaker | None = None

    def load(self, policy: Policy) -> tuple[ActionBudget, CircuitBreaker]:
        """The limits for ``policy``, rebuilt where its settings differ from the last policy's."""
        if self._budget is None or self._policy is None or self._policy.budgets != policy.budgets:
            self._budget = ActionBudget(policy.budgets, clock=self._clock)
        if self._breaker is None or self._breaker.cfg != policy.circuit_breaker:
            self._breaker = CircuitBreaker(policy.circuit_breaker, clock=self._clock)
        self._policy = policy
        return self._budget, self._breaker

    def of(self, policy: Policy) -> tuple[ActionBudget, CircuitBreaker]:
        """The limits for ``policy``: those built when it loaded, or built now."""
        if self._policy is policy and self._budget is not None and self._breaker is not None:
            return self._budget, self._breaker
        return self.load(policy)

    @property
    def circuit_open(self) -> bool:
        return self._breaker is not None and self._breaker.open


@dataclass
class Deduper:
    """Remembers (pod UID, action, mode) for ``window`` seconds so repeated alerts act once."""

    clock: Clock = time.monotonic
    _seen: dict[tuple[str, str, str], float] = field(default_factory=dict)
    _next_sweep: float = 0.0

    def first(self, key: tuple[str, str, str], window: float) -> bool:
        """True (and remembered) if ``key`` was not seen within ``window``; False for a repeat."""
        now = self.clock()
        if now >= self._next_sweep:
            self._seen = {k: t for k, t in self._seen.items() if now - t < window}
            self._next_sweep = now + max(window, 1.0)
        seen = self._seen.get(key)
        if seen is not None and now - seen < window:
            return False
        self._seen[key] = now
        return True

    def forget(self, key: tuple[str, str, str]) -> None:
        """Drop ``key`` so a later alert may try again (the attempt failed before changing anything)."""
        self._seen.pop(key, None)

    def __len__(self) -> int:
        return len(self._seen)
