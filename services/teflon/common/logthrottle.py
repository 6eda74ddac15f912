"""Rate-limited logging for lines a sender can repeat at will (refusals, protocol errors).

A refused request costs its sender one request and would cost us one log line; a flood of them would
become a flood of logs. ``RepeatFilter`` lets the first ``burst`` records of a kind through in each
``interval`` and drops the rest; the next record of that kind to pass says how many were dropped
(``suppressed``). A kind is the logger, level, message and ``reason`` (when the record has one).
Errors and worse always pass.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

_MAX_KINDS = 1024


class RepeatFilter(logging.Filter):
    """Pass at most ``burst`` records of each kind per ``interval`` seconds below ERROR."""

    def __init__(
        self, *, interval: float = 10.0, burst: int = 5, clock: Callable[[], float] = time.monotonic
    ) -> None:
        super().__init__()
        self.interval = interval
        self.burst = burst
        self._clock = clock
        self._lock = threading.Lock()
        # kind -> [window start, passed in window, suppressed since the last record that passed]
        self._kinds: dict[tuple[object, ...], list[float]] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno >= logging.ERROR:
            return True
        kind = (record.name, record.levelno, record.msg, getattr(record, "reason", None))
        now = self._clock()
        with self._lock:
            state = self._kinds.get(kind)
            if state is None:
                if len(self._kinds) >= _MAX_KINDS:
                    self._kinds.clear()
                state = self._kinds[kind] = [now, 0.0, 0.0]
            if now - state[0] >= self.interval:
                state[0], state[1] = now, 0.0
            if state[1] >= self.burst:
                state[2] += 1
                return False
            state[1] += 1
            suppressed, state[2] = int(state[2]), 0.0
        if suppressed:
            record.suppressed = suppressed
        return True


def throttle(*loggers: logging.Logger, interval: float = 10.0, burst: int = 5) -> None:
    """Install one ``RepeatFilter`` on each of ``loggers`` (once: calling again changes nothing)."""
    for logger in loggers:
        if not any(isinstance(f, RepeatFilter) for f in logger.filters):
            logger.addFilter(RepeatFilter(interval=interval, burst=burst))
