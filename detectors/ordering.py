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

from functools import lru_cache
from typing import Any
from zoneinfo import ZoneInfo

from fundflow import _core
from fundflow.schemas.records import Balance, ClearingTxn, CustodyTxn, ReserveReport

from .alerting import day_end_ms

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


class EventOrder(_core.EventOrder):
    """Per-feed queues released in event-time order (see the module): the
    stage of the compiled core (``core/src/order.rs``).

    ``push(feed, key, item, source=None)`` queues ``item`` under ``key`` (a
    tuple ``(event time, kind rank, id)``, as :func:`sort_key` gives, the id
    a string) and returns ``False`` when the feed has already released a
    later key; with a ``source`` the item leaves as ``(item, source)``, the
    pair made only then. ``offer(feed, key, item, source=None)`` is
    ``push`` then ``ready`` in one call (``None`` when refused); ``ready(feed)`` returns what the feed's
    mark releases now; ``ready_all()`` what every feed's mark releases;
    ``release_until(t)`` what is at or before ``t`` on every feed, in key
    order across feeds (everything with no ``t``); ``take(feed)`` removes
    what a feed holds, as ``(key, item)`` pairs; ``oldest()`` is the
    earliest event time held; ``feeds()`` the feeds seen; ``len()`` the
    items held.

    Each feed holds its records in a queue kept in ``(key, arrival)``
    order: a record that arrives in order (most do) is appended after one
    comparison, a late one is inserted in its place (a binary search). A
    held record costs its 48-byte entry besides the item itself.
    Checkpoints hold ``{"lateness_ms", "feeds": {feed: [mark, last key,
    [(key, arrival, item), ...], 0]}, "seq"}`` (``__getstate__``), the
    layout of the stage written in Python, and a feed of the older layout
    that kept it as a heap is read too.
    """

    __slots__ = ()


__all__ = ["EventOrder", "sort_key", "KIND_RANK", "NO_BOUND"]
