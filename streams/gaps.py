"""Gap recovery: every record of an input partition is taken in exactly once.

The worker knows the next offset it needs from every input partition
(``_next``: after the last record taken in, else the checkpoint's, else the
log start, which :meth:`GapRecovery.learn_start` asks the broker for). The
record path (:meth:`~fundflow.streams.partitions.Partitions.ingest`) skips a
record below it and notes a record above it as a gap (``_seeks``). Records
fetched while a rebalance suspends the flow are not handed over, and when
none follow them there is no gap to see: :meth:`GapRecovery.watch_stalls`
notes an input with records on the broker beyond the next offset and none
taken in for 3 s. :meth:`GapRecovery.seek_gaps` moves the fetch position
back to the first missing offset, in the consumer's own thread.
"""

from __future__ import annotations

import logging
import time
from typing import Any

log = logging.getLogger("fundflow.worker")


class GapRecovery:
    """Worker mixin: finds missing records and reads them again. Its state
    is the "gap recovery" part of ``Worker.__init__`` (``_start``,
    ``_seeks``, ``_seeking``, ``_end``, ``_watched_at``); it reads ``_next``
    and ``_moved``, which the record path keeps."""

    async def learn_start(self, tp: Any) -> None:
        """The first offset of an input partition met for the first time
        with no checkpoint: where its records begin (the log start)."""
        if tp not in self._next and tp not in self._start:
            self._start.update(await self.app.consumer.earliest_offsets(tp))

    async def seek_gaps(self) -> None:
        """Moves the fetch position back where records went missing."""
        while self._seeks:
            tp, offset = self._seeks.popitem()
            asked = self._seeking.get(tp)
            now = time.monotonic()
            if asked is not None and asked[0] == offset and now - asked[1] < 2.0:
                continue  # asked already: records in flight from before it are dropped
            self._seeking[tp] = (offset, now)
            self.stats["gaps"] += 1
            log.info("%s/%d: records missing from offset %d; reading again", *tp, offset)
            try:
                # In the consumer's own thread: a seek from this loop races
                # with the fetcher there.
                await self.app.consumer.seek_wait({tp: offset})
            except Exception as e:  # noqa: BLE001 - a rebalance may have taken it; asked again later
                log.warning("%s/%d: seek to %d failed: %s", *tp, offset, e)

    async def watch_stalls(self) -> None:
        """Every 2 s: an assigned input partition with records on the broker
        beyond the next offset to take in, and none taken in for 3 s, is read
        again from that offset (records Faust dropped during a rebalance
        leave no gap to notice when none follow them)."""
        now = time.monotonic()
        if now - self._watched_at < 2.0:
            return
        self._watched_at = now
        consumer = self.app.consumer
        if not self.app.tables.actives_ready:
            return  # a rebalance is recovering the tables
        if self.whole and 0 not in self._assigned:
            return  # the whole-stream worker reads nothing until it holds every partition
        tps = [tp for tp in consumer.assignment() if tp.topic in self.inputs]
        for p in {self._slot(tp.partition) for tp in tps} - set(self.parts):
            if self.whole and p not in self._assigned:
                continue  # not every partition held yet
            # Its checkpoint is recovered: know its offsets before any record.
            self._state(p)
        new = [tp for tp in tps if tp not in self._next and tp not in self._start]
        if new:
            st_of = {tp: self.parts.get(self._slot(tp.partition)) for tp in new}
            unknown = [
                tp for tp in new
                if st_of[tp] is None or self._key(tp) not in st_of[tp].offsets
            ]  # fmt: skip
            if unknown:
                self._start.update(await consumer.earliest_offsets(*unknown))
        if any(self._highwater(tp) is None and tp not in self._end for tp in tps):
            await self.refresh_ends()
        for tp in tps:
            end = self._highwater(tp)
            if end is None:
                end = self._end.get(tp)
            if end is None:
                continue
            want = self._next.get(tp)
            if want is None:
                st = self.parts.get(self._slot(tp.partition))
                want = st.offsets.get(self._key(tp)) if st is not None else None
                if want is None:
                    want = self._start.get(tp)
            if want is None or want >= end:
                continue
            since = self._moved.setdefault(tp, now)
            if now - since >= 3.0:
                self._seeks[tp] = want
                self._moved[tp] = now
        await self.seek_gaps()

    async def refresh_ends(self) -> None:
        """End offsets of the assigned inputs (a request to the broker; the
        fetcher's high watermarks are used when they are newer)."""
        tps = [tp for tp in self.app.consumer.assignment() if tp.topic in self.inputs]
        if tps:
            ends = await self.app.consumer.highwaters(*tps)
            self._end.update({tp: v for tp, v in ends.items() if v is not None})
