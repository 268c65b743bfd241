"""The manager's source of time, injected so tests control it without monkeypatching.

The application keeps one :class:`Clock` on ``app.state.clock``; services receive ``now`` from
it and never call ``datetime.now()`` themselves.
"""

from __future__ import annotations

import datetime as dt
import threading
from typing import Protocol

__all__ = ["Clock", "ManualClock", "SystemClock"]


class Clock(Protocol):
    """Something that tells the current time (timezone-aware, UTC)."""

    def now(self) -> dt.datetime:
        """Return the current time in UTC."""
        ...


class SystemClock:
    """The real clock."""

    def now(self) -> dt.datetime:
        """Return the current wall-clock time in UTC."""
        return dt.datetime.now(dt.UTC)


class ManualClock:
    """A clock that moves only when told to (tests, simulations)."""

    def __init__(self, start: dt.datetime) -> None:
        """Start at ``start`` (must be timezone-aware).

        Raises:
            ValueError: ``start`` is naive.
        """
        if start.tzinfo is None:
            msg = "ManualClock needs a timezone-aware start time"
            raise ValueError(msg)
        self._now = start.astimezone(dt.UTC)
        self._lock = threading.Lock()

    def now(self) -> dt.datetime:
        """Return the clock's current time."""
        with self._lock:
            return self._now

    def advance(self, delta: dt.timedelta) -> None:
        """Move the clock forward by ``delta``."""
        with self._lock:
            self._now += delta
