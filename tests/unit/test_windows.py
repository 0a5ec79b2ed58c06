"""The one sliding-window rule (detectors/windows.py): the window at ``ts``
is ``(ts - window_ms, ts]``, events leave it from the front, oldest first."""

from __future__ import annotations

from collections import deque

from fundflow.detectors.windows import expire, expire_sum


def test_an_event_exactly_a_window_old_has_left_it():
    events = deque([(0, 100, "T1"), (1, 200, "T2")])
    assert expire(events, now=9, window_ms=10) == ()
    assert expire(events, now=10, window_ms=10) == [(0, 100, "T1")]
    assert list(events) == [(1, 200, "T2")]


def test_every_event_that_has_left_is_returned_oldest_first():
    events = deque([(0, 1, "A"), (2, 2, "B"), (4, 3, "C"), (8, 4, "D")])
    assert expire(events, now=14, window_ms=10) == [(0, 1, "A"), (2, 2, "B"), (4, 3, "C")]
    assert expire(events, now=100, window_ms=10) == [(8, 4, "D")]
    assert expire(events, now=200, window_ms=10) == () and not events


def test_expire_sum_is_the_amounts_removed_at_their_position():
    events = deque([(0, "x", 300), (3, "y", 200), (9, "z", 50)])
    assert expire_sum(events, now=13, window_ms=10, at=2) == 500
    assert list(events) == [(9, "z", 50)]
    assert expire_sum(events, now=13, window_ms=10, at=2) == 0
    assert expire_sum(deque(), now=13, window_ms=10) == 0


def test_only_the_front_is_looked_at():
    # Events come in arrival order; one older than the front stays behind it.
    events = deque([(5, 10), (0, 20)])
    assert expire_sum(events, now=14, window_ms=10) == 0
    assert expire_sum(events, now=15, window_ms=10) == 30
