"""A finding's lifetime, as an episode: the one rule every detector that
says when a finding starts and ends uses (``fund_pool``, ``cross_bank_clearing``,
``excessive_return``, ``guaranteed_return``, ``reserve_misuse``,
``maturity_mismatch`` and the typologies).

An **episode** is an :class:`Episode` the detector keeps in its state: its
``start`` (event time, epoch ms, or a local day's name: whatever names the
alert, ``make_alert_id(..., ep.start)``) and ``last``, the latest event
time the rule held. :data:`NONE` in ``start`` means no episode is open.

**Gap rule.** With a gap, the rule holding at ``now`` extends the open
episode when ``now - last <= gap_ms`` (exactly the gap still extends it,
one millisecond more starts a new one); otherwise a new episode starts, at
``now`` or at the start the detector names (the oldest event of its window).
``last`` never moves back. The episode ends ``gap_ms`` after ``last``: that
is the ``ends`` an offer tells the alert book
(:class:`~fundflow.detectors.alerting.AlertBook`). Without a gap
(``gap_ms=None``) an episode lasts until the detector ends it
(:meth:`Episodes.end`, when the money leaves or the ratio falls) and its
``ends`` is :data:`~fundflow.detectors.alerting.NO_END`.

**Forgetting rule.** Episodes kept in a table (a dict of key to
:class:`Episode`) are dropped by :meth:`Episodes.forget` once no record
could still extend them: their ``last`` is more than the gap plus the
allowed lateness behind the clock.

>>> rule = Episodes(gap_ms=10)
>>> ep = Episode()
>>> rule.hold(ep, 100), ep.start, rule.ends(ep)
(True, 100, 110)
>>> rule.hold(ep, 110), ep.start, rule.ends(ep)  # exactly the gap: the same episode
(False, 100, 120)
>>> rule.hold(ep, 121), ep.start  # a millisecond past it: a new one
(True, 121)
>>> table = {}
>>> rule.hold_key(table, "A", 5)
(Episode(start=5, last=5), True)
>>> rule.forget(table, clock=15), rule.forget(table, clock=16), table
(1, 0, {})
"""

from __future__ import annotations

from collections.abc import Hashable
from typing import Any

from .alerting import NO_END
from .base import SlotState

#: ``Episode.start`` when no episode is open.
NONE = -1


class Episode(SlotState):
    """One episode: ``start`` names it (:data:`NONE`: none open), ``last``
    is the latest event time its rule held. Plain data, checkpointed as it is."""

    __slots__ = ("start", "last")

    def __init__(self, start: Any = NONE, last: int = NONE) -> None:
        self.start = start
        self.last = last

    def __repr__(self) -> str:
        return f"Episode(start={self.start!r}, last={self.last!r})"


class Episodes:
    """The gap and forgetting rules (module docstring) for episodes that
    end ``gap_ms`` after their rule last held (``None``: when the detector
    ends them); ``lateness_ms`` is how late a record may still arrive.
    Holds no episodes itself: detectors keep them in their state."""

    __slots__ = ("gap_ms", "keep_ms")

    def __init__(self, gap_ms: int | None, lateness_ms: int = 0) -> None:
        if gap_ms is not None and gap_ms < 0:
            raise ValueError(f"gap_ms must be >= 0 or None, got {gap_ms}")
        if lateness_ms < 0:
            raise ValueError(f"lateness_ms must be >= 0, got {lateness_ms}")
        self.gap_ms = gap_ms
        self.keep_ms = None if gap_ms is None else gap_ms + lateness_ms

    def is_open(self, ep: Episode, now: int) -> bool:
        """Whether the rule holding at ``now`` would extend ``ep``."""
        if ep.start == NONE:
            return False
        return self.gap_ms is None or now - ep.last <= self.gap_ms

    def hold(self, ep: Episode, now: int, start: Any = None) -> bool:
        """The rule holds at ``now``: extend ``ep`` if it is open, else start
        a new episode at ``start`` (``now`` when ``None``). ``True`` when a
        new episode started (the detector resets its figures)."""
        if self.is_open(ep, now):
            if now > ep.last:
                ep.last = now
            return False
        ep.start = now if start is None else start
        ep.last = now
        return True

    def hold_key(
        self, table: dict[Hashable, Episode], key: Hashable, now: int, start: Any = None
    ) -> tuple[Episode, bool]:
        """:meth:`hold` for the episode of ``key`` in ``table`` (made when
        missing): the episode, and ``True`` when a new one started."""
        ep = table.get(key)
        if ep is None:
            ep = table[key] = Episode()
        return ep, self.hold(ep, now, start)

    def end_key(self, table: dict[Hashable, Episode], key: Hashable) -> Any:
        """End the episode of ``key`` and drop it from ``table``; returns the
        start it had (:data:`NONE`: none was open)."""
        ep = table.pop(key, None)
        return NONE if ep is None else ep.start

    def ends(self, ep: Episode) -> int:
        """When ``ep`` ends in event time, for the alert book's ``ends``."""
        return NO_END if self.gap_ms is None else ep.last + self.gap_ms

    def end(self, ep: Episode) -> Any:
        """End ``ep`` now; returns the start it had (:data:`NONE`: none was open)."""
        start = ep.start
        ep.start = ep.last = NONE
        return start

    def forget(self, table: dict[Hashable, Episode], clock: int) -> int:
        """Drop the episodes of ``table`` no record could still extend at
        ``clock`` (module docstring); returns how many are kept."""
        if self.keep_ms is None:
            return len(table)
        horizon = clock - self.keep_ms
        for key in [k for k, ep in table.items() if ep.last < horizon]:
            del table[key]
        return len(table)
