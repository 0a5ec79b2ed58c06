"""The event-time ordering stage: records of a feed leave in event-time order.

The detectors judge a record at the moment it is processed: a repayment
processed before the payment it repays, or investments after the payout
they funded, read as another story. Records arrive late (a bank's batch, a
retried delivery, a topic that lags another), so both shells hand every
transaction and report to this stage rather than to the engine, and the
stage releases them in event-time order.

**Feeds.** Ordering is per feed: the subject whose detector state a record
touches (:func:`~fundflow.detectors.reference.feed_key`: a custody
transaction's platform; a clearing payment's reserve-holding institution,
else its initiator; a reserve report's institution; a balance's account
owner). Detectors keep a clock and state per subject, so how different
feeds interleave changes nothing they find (``tests/e2e/test_interleaving.py``);
within a feed, order is everything. A detector that joins many subjects'
records (the typologies' transfer graph: ``Detector.one_feed``) needs
the order of the whole stream: an engine running one orders all its records
as one feed.

**The rule.** Each feed has a high-water mark: the latest event time it has
shown (moved at most one allowed lateness forward by one record, as the
deduplicator's watermark is, so a lone far-future time cannot flush the
feed). A record is released once its feed's mark is *more* than the
allowed lateness past its event time; until then a record of the same feed
that arrives late, up to the allowed lateness, still goes in its place.
Records leave in the order of :func:`sort_key` (event time, then kind, then
the record's own id: the order depends on the records alone, not on their
arrival); two records with the same key (a redelivery) leave in arrival
order, and the engine then counts the second as a duplicate. A record that
can no longer go in its place, because its feed has already released a
later one, is refused (``too_late``).

**Event times.** A transaction's ``ts``; a reserve report is known at the
end of its local day (its ``as_of``); a balance at its ``as_of`` instant.
Reference records (entities, accounts, products, loans) are a table, not
events: the engine applies them on arrival. A transaction that names an
account, product or loan not known yet is judged at its release, an allowed
lateness after its time on its feed, so reference data that arrives within
that bound is known to it; after it, the transaction is judged with an
unknown party.

**Releasing early.** The stage has no clock of its own. The end of a replay
releases everything (:meth:`EventOrder.release_until` with no bound). The
daemon's shell, which alone sees the wall clock, releases what its inputs'
idleness allows: when every input of a partition has shown nothing for the
idleness bound and is caught up with the broker, everything held; while
some input is busy, whatever is more than the allowed lateness behind the
slowest busy input (so a feed that has gone quiet does not hold its last
records forever). A record that arrives after its feed was released past
its time is refused as above.

The allowed lateness is ``[engine] dedup_window_hours`` (72 h by default):
one bound for how late a record may be and still count once and in its
place. The price is latency: on a live stream an alert comes an allowed
lateness of event time after the record that raises it, or at the next
idle release.

>>> o = EventOrder(lateness_ms=10)
>>> for ts in (5, 3, 9, 17):
...     _ = o.push("P", (ts, 0, str(ts)), ts)
>>> o.ready("P")
[3, 5]
>>> o.push("P", (4, 0, "4"), 4), o.push("P", (8, 0, "8"), 8)
(False, True)
>>> o.push("Q", (20, 0, "20"), 20), o.take("P"), len(o)
(True, [((8, 0, '8'), 8), ((9, 0, '9'), 9), ((17, 0, '17'), 17)], 1)
>>> o.push("Q", (9, 0, "9"), 9), o.release_until(), len(o)
(True, [9, 20], 0)
"""

from __future__ import annotations

import bisect
from functools import lru_cache
from typing import Any
from zoneinfo import ZoneInfo

from fundflow.schemas.records import Balance, ClearingTxn, CustodyTxn, ReserveReport

from .alerting import day_end_ms

_NOTHING: list[Any] = []
#: Above every event time: the bound of a release with no bound.
NO_BOUND = 1 << 62
#: Kinds at the same instant, in the order they are released.
KIND_RANK = {CustodyTxn: 0, ClearingTxn: 1, ReserveReport: 2, Balance: 3}


def sort_key(record: Any, zone: ZoneInfo) -> tuple[int, int, str]:
    """``(event time, kind rank, id)`` of a transaction or report: the order
    records of a feed are released in.

    >>> from fundflow.schemas.records import ReserveReport
    >>> sort_key(ReserveReport(institution_id="I1", as_of="2026-03-01",
    ...          client_liabilities=0), ZoneInfo("Asia/Shanghai"))
    (1772380799999, 2, 'I1')
    """
    t = type(record)
    if t is CustodyTxn or t is ClearingTxn:
        return (record.ts, KIND_RANK[t], record.txn_id)
    if t is ReserveReport:
        return (_report_time(record.as_of, zone), 2, record.institution_id)
    if t is Balance:
        return (record.as_of, 3, record.account_id)
    raise TypeError(f"no event time for {t.__name__}")


@lru_cache(maxsize=4096)
def _report_time(day: str, zone: ZoneInfo) -> int:
    """A report of day ``day`` is known at its last millisecond."""
    return day_end_ms(day, zone) - 1


class EventOrder:
    """Per-feed queues released in event-time order (see the module).

    ``push(feed, key, item)`` queues ``item`` under ``key`` (a tuple whose
    first element is the event time, as :func:`sort_key` gives) and
    returns ``False`` when the feed has already released a later key;
    ``ready(feed)`` returns what the feed's mark releases now;
    ``release_until(t)`` what is at or before ``t`` on every feed, in key
    order across feeds (everything with no ``t``).

    Each feed holds its records in a list kept in ``(key, arrival)`` order
    from a head index: a record that arrives in order (most do) is appended
    and released from the head without a comparison beyond its neighbour's,
    a late one is inserted in its place (a binary search); released slots
    are emptied at once and the list is compacted once half of it is spent.
    """

    __slots__ = ("lateness_ms", "_feeds", "_seq", "_held")

    def __init__(self, lateness_ms: int) -> None:
        self.lateness_ms = lateness_ms
        # feed -> [mark, last key released (None before the first),
        #          entries (key, seq, item) in order from head, head]
        self._feeds: dict[str, list[Any]] = {}
        self._seq = 0
        self._held = 0

    def __len__(self) -> int:
        """Items held."""
        return self._held

    def _queue(self, state: list[Any], key: tuple[Any, ...], item: Any) -> None:
        self._seq += 1
        buf = state[2]
        if len(buf) == state[3] or key >= buf[-1][0]:
            buf.append((key, self._seq, item))
        else:
            bisect.insort(buf, (key, self._seq, item), lo=state[3])

    def push(self, feed: str, key: tuple[Any, ...], item: Any) -> bool:
        state = self._feeds.get(feed)
        ts = key[0]
        if state is None:
            state = self._feeds[feed] = [ts, None, [], 0]
        else:
            last = state[1]
            if last is not None and key < last:
                return False
            mark = state[0]
            if ts > mark:
                lateness = self.lateness_ms
                state[0] = mark + lateness if ts - mark > lateness else ts
        self._queue(state, key, item)
        self._held += 1
        return True

    def offer(self, feed: str, key: tuple[Any, ...], item: Any) -> list[Any] | None:
        """:meth:`push` then :meth:`ready` in one call (the per-record path):
        ``None`` when refused, else what the feed releases now."""
        state = self._feeds.get(feed)
        ts = key[0]
        lateness = self.lateness_ms
        if state is None:
            state = self._feeds[feed] = [ts, None, [], 0]
        else:
            last = state[1]
            if last is not None and key < last:
                return None
            mark = state[0]
            if ts > mark:
                state[0] = mark + lateness if ts - mark > lateness else ts
        self._queue(state, key, item)
        self._held += 1
        if state[2][state[3]][0][0] >= state[0] - lateness:
            return _NOTHING
        return self._release(state, state[0] - lateness, inclusive=False)

    def _release(self, state: list[Any], bound: int, inclusive: bool) -> list[Any]:
        """The feed's entries before ``bound`` (at it too, ``inclusive``), in
        order, as items; the feed's last release moves to the last of them."""
        buf, head = state[2], state[3]
        n = len(buf)
        out = []
        while head < n:
            entry = buf[head]
            t = entry[0][0]
            if t > bound or (t == bound and not inclusive):
                break
            out.append(entry[2])
            state[1] = entry[0]
            buf[head] = None  # released: the record is not held here any more
            head += 1
        if head == n:
            buf.clear()
            head = 0
        elif head > 64 and 2 * head > n:
            del buf[:head]
            head = 0
        state[3] = head
        self._held -= len(out)
        return out

    def ready(self, feed: str) -> list[Any]:
        """What ``feed``'s mark releases now, in order (often nothing)."""
        state = self._feeds[feed]
        if len(state[2]) == state[3]:
            return []
        return self._release(state, state[0] - self.lateness_ms, inclusive=False)

    def _taken(self, bound: int | None, inclusive: bool) -> list[Any]:
        """What every feed holds before ``bound`` (``None``: before each
        feed's own mark less the lateness), in key order (feeds merged;
        arrival order among equal keys)."""
        taken: list[tuple[Any, int, Any]] = []
        lateness = self.lateness_ms
        for state in self._feeds.values():
            buf, head = state[2], state[3]
            start, n = head, len(buf)
            cut = state[0] - lateness if bound is None else bound
            while head < n:
                t = buf[head][0][0]
                if t > cut or (t == cut and not inclusive):
                    break
                head += 1
            if head == start:
                continue
            taken.extend(buf[start:head])
            state[1] = buf[head - 1][0]
            del buf[:head]
            state[3] = 0
        taken.sort(key=_entry_order)
        self._held -= len(taken)
        return [entry[2] for entry in taken]

    def ready_all(self) -> list[Any]:
        """What every feed's mark releases now, in key order (feeds merged):
        :meth:`ready` for all, after a shell held releases back."""
        return self._taken(None, inclusive=False)

    def release_until(self, t: int = NO_BOUND) -> list[Any]:
        """Everything at or before event time ``t`` on every feed, in key
        order (feeds merged), whatever the marks."""
        return self._taken(t, inclusive=True)

    def take(self, feed: str) -> list[tuple[tuple[Any, ...], Any]]:
        """Removes and returns what ``feed`` holds, as ``(key, item)`` in
        key order (arrival order among equal keys); the feed keeps its mark
        and its last release. For a record queued under a feed that was not
        its own (the reference data its feed is read from came after it)."""
        state = self._feeds.get(feed)
        if state is None or len(state[2]) == state[3]:
            return []
        held = state[2][state[3] :]
        state[2], state[3] = [], 0
        self._held -= len(held)
        return [(entry[0], entry[2]) for entry in held]

    def oldest(self) -> int | None:
        """The earliest event time held, or ``None``."""
        heads = [s[2][s[3]][0][0] for s in self._feeds.values() if len(s[2]) > s[3]]
        return min(heads) if heads else None

    # -- checkpoints -------------------------------------------------------------

    def __getstate__(self) -> dict[str, Any]:
        feeds = {f: [s[0], s[1], s[2][s[3] :], 0] for f, s in self._feeds.items()}
        return {"lateness_ms": self.lateness_ms, "feeds": feeds, "seq": self._seq}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.lateness_ms = state["lateness_ms"]
        feeds = state["feeds"]
        for s in feeds.values():
            if len(s) == 3:  # a checkpoint of a version that kept each feed as a heap
                s[2] = sorted(s[2], key=_entry_order)
                s.append(0)
        self._feeds = feeds
        self._seq = state["seq"]
        self._held = sum(len(s[2]) - s[3] for s in feeds.values())


def _entry_order(entry: tuple[Any, int, Any]) -> tuple[Any, int]:
    return entry[0], entry[1]


__all__ = ["EventOrder", "sort_key", "KIND_RANK", "NO_BOUND"]
