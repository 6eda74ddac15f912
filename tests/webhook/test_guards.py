"""Budgets, the circuit breaker and dedupe, with a clock stepped by hand."""

from __future__ import annotations

from teflon.webhook.guards import ActionBudget, CircuitBreaker, Deduper, TokenBucket
from teflon.webhook.policy import Budgets, CircuitBreakerConfig

from .clock import FakeClock


def test_a_token_bucket_allows_its_burst_then_refills_at_its_rate() -> None:
    clock = FakeClock()
    bucket = TokenBucket(rate=1.0, burst=3, clock=clock)
    for _ in range(3):
        assert bucket.available()
        bucket.take()
    assert not bucket.available()
    clock.advance(1.0)
    assert bucket.available()
    clock.advance(100)
    assert bucket.tokens <= 3 or bucket.full


def test_an_action_needs_a_token_from_both_the_global_and_the_namespace_budget() -> None:
    clock = FakeClock()
    budget = ActionBudget(
        Budgets.model_validate(
            {"global": {"perMinute": 60, "burst": 3}, "perNamespace": {"perMinute": 60, "burst": 2}}
        ),
        clock=clock,
    )
    assert [budget.try_take("a") for _ in range(3)] == [True, True, False]  # namespace a spent
    assert budget.try_take("b") is True  # global had one left
    assert budget.try_take("c") is False  # global spent
    clock.advance(1.0)
    assert budget.try_take("c") is True


def test_a_refused_action_takes_no_token_from_either_budget() -> None:
    clock = FakeClock()
    budget = ActionBudget(
        Budgets.model_validate(
            {"global": {"perMinute": 1, "burst": 2}, "perNamespace": {"perMinute": 1, "burst": 1}}
        ),
        clock=clock,
    )
    assert budget.try_take("a") is True
    assert budget.try_take("a") is False  # namespace empty: the global token must stay
    assert budget.try_take("b") is True


def test_the_circuit_breaker_opens_at_max_actions_in_the_window_and_closes_after_cooldown() -> None:
    clock = FakeClock()
    breaker = CircuitBreaker(
        CircuitBreakerConfig(max_actions=3, window_seconds=60, cooldown_seconds=600), clock=clock
    )
    assert [breaker.record() for _ in range(2)] == [False, False]
    assert not breaker.open
    assert breaker.record() is True
    assert breaker.open
    clock.advance(599)
    assert breaker.open
    clock.advance(1)
    assert not breaker.open


def test_actions_spread_beyond_the_window_never_open_the_breaker() -> None:
    clock = FakeClock()
    breaker = CircuitBreaker(
        CircuitBreakerConfig(max_actions=3, window_seconds=60, cooldown_seconds=600), clock=clock
    )
    for _ in range(10):
        assert breaker.record() is False
        clock.advance(31)
    assert not breaker.open


def test_dedupe_lets_one_action_per_key_through_per_window() -> None:
    clock = FakeClock()
    dedupe = Deduper(clock)
    key = ("uid-1", "delete", "enforce")
    assert dedupe.first(key, 300) is True
    assert dedupe.first(key, 300) is False
    assert dedupe.first(("uid-2", "delete", "enforce"), 300) is True
    assert dedupe.first(("uid-1", "label", "enforce"), 300) is True
    clock.advance(300)
    assert dedupe.first(key, 300) is True


def test_dedupe_forgets_keys_after_the_window_so_memory_stays_bounded() -> None:
    clock = FakeClock()
    dedupe = Deduper(clock)
    for i in range(1000):
        dedupe.first((f"uid-{i}", "label", "dryRun"), 10)
    clock.advance(11)
    dedupe.first(("late", "label", "dryRun"), 10)
    assert len(dedupe) == 1


def test_a_forgotten_key_may_act_again() -> None:
    dedupe = Deduper(FakeClock())
    key = ("uid-1", "evict", "enforce")
    dedupe.first(key, 300)
    dedupe.forget(key)
    assert dedupe.first(key, 300) is True
