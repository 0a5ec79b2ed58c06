"""Sliding event-time windows: the one rule every detector that sums a
window uses (``fund_pool``'s gathering window, ``cross_bank_clearing``'s
transfers, ``excessive_return``'s subsidies).

A window's **events** are tuples in a deque, oldest first, each starting
with its event time (epoch ms); the detector keeps the deque and the sums
it needs in its own state (checkpoints hold them as they are). The window
at event time ``ts`` is ``(ts - window_ms, ts]``: an event exactly
``window_ms`` older than the newest has left it.

>>> from collections import deque
>>> events = deque([(0, 300), (5, 200), (9, 100)])
>>> expire_sum(events, now=10, window_ms=5)  # (5, 10] keeps the event at 9 only
500
>>> events
deque([(9, 100)])
>>> expire(events, now=12, window_ms=5)
()
"""

from __future__ import annotations

from collections import deque
from typing import Any

Event = tuple[Any, ...]


def expire(events: deque[Event], now: int, window_ms: int) -> tuple[Event, ...] | list[Event]:
    """Remove from the front of ``events`` those that have left the window
    at event time ``now``, and return them, oldest first (an empty tuple,
    made once, when none has: the common case costs one comparison)."""
    horizon = now - window_ms
    if not events or events[0][0] > horizon:
        return ()
    gone = [events.popleft()]
    while events and events[0][0] <= horizon:
        gone.append(events.popleft())
    return gone


def expire_sum(events: deque[Event], now: int, window_ms: int, at: int = 1) -> int:
    """:func:`expire`, returning the sum of the removed events' amounts
    (integer fen, at position ``at``) for the detector to take off its
    window's total."""
    horizon = now - window_ms
    total = 0
    while events and events[0][0] <= horizon:
        total += events.popleft()[at]
    return total
