"""The reference feed: the reference topic into the one shared
:class:`~fundflow.detectors.reference.Reference` and every partition's engine.

Reference data (entities, accounts, products, loans) is a table, not events:
the reference topic is compacted, has one partition, and every worker holds
all of it. Before Faust starts, :meth:`ReferenceFeed.preload_reference`
reads the topic to its end in batches (kafka-python); the Faust table over
the topic (``ReferenceTable`` in :mod:`~fundflow.streams.faust_app`) then
reports that offset as its persisted one, so Faust's recovery reads only
what came after, record by record, through :meth:`ReferenceFeed.apply_reference`.
Each record is applied once (``ref_seen`` holds the next offset of each
reference partition): to the shared reference, to the log that a partition
restored later replays into its engine (``ref_log``), and to the engines of
the partitions held now. A record that is not reference data is a dead
letter. The worker is ready (:data:`READY_LINE`) once the table is recovered.

While the fetcher knows of reference records not applied yet, the engines
hold what they are given (``Engine.holding``): a record sent after its
reference data then finds it (:meth:`ReferenceFeed._reference_read`, used by
the record path in :mod:`~fundflow.streams.partitions`).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable
from typing import Any

from fundflow.schemas.decode import DeadLetter

from . import engines
from .topics import REFERENCE_KINDS

log = logging.getLogger("fundflow.worker")

READY_LINE = "fundflow worker ready"


class ReferenceFeed:
    """Worker mixin: applies the reference topic. Its state is the
    "reference feed" part of ``Worker.__init__`` (``ref``, ``ref_log``,
    ``ref_seen``)."""

    def apply_reference(self, events: Iterable[Any]) -> None:
        """A batch of the reference table's changelog (Faust's recovery or
        its reading of the table's partition)."""
        for event in events:
            m = event.message
            self._reference_record(m.topic, m.partition, m.offset, m.value)

    def _reference_record(self, topic: str, partition: int, offset: int, value: Any) -> None:
        if offset < self.ref_seen.get(partition, 0):
            return  # applied already (the preload, recovery, the table's own reading)
        self.ref_seen[partition] = offset + 1
        if value is None:  # a tombstone: reference records are never deleted
            return
        rec = self.decode_values([bytes(value)], None)[0]
        if type(rec) is DeadLetter or type(rec).TYPE not in REFERENCE_KINDS:
            if type(rec) is not DeadLetter:
                rec = DeadLetter(
                    reason="unknown_type",
                    detail=f"a {type(rec).TYPE} record on the reference topic",
                    raw=bytes(value).decode("utf-8", "backslashreplace"),
                )
            self._dead_letter(rec, f"{topic}/{partition}@{offset}", self.names.reference)
            return
        self.stats["reference_records"] += 1
        self.ref.add(rec)
        self.ref_log.append((partition, offset, rec))
        for st in self.parts.values():
            engines.feed_reference(st.engine, rec)
            st.ref_offsets[partition] = offset + 1

    def preload_reference(self) -> None:
        """Reads the reference topic to its end before Faust starts, in
        batches (Faust's table recovery takes its records one at a time, at
        about 400 µs each). The table's recovery then starts after the last
        record read here (:meth:`ReferenceTable.persisted_offset`)."""
        from kafka import KafkaConsumer, TopicPartition  # noqa: PLC0415

        t0 = time.monotonic()
        consumer = KafkaConsumer(
            enable_auto_commit=False,
            max_partition_fetch_bytes=8 << 20,
            fetch_max_bytes=64 << 20,
            **self.settings.client_options(),
        )
        try:
            tps = [
                TopicPartition(self.names.reference, p)
                for p in sorted(consumer.partitions_for_topic(self.names.reference) or ())
            ]
            consumer.assign(tps)
            ends = consumer.end_offsets(tps)
            for tp in tps:
                seen = self.ref_seen.get(tp.partition)
                if seen:
                    consumer.seek(tp, seen)
                else:
                    consumer.seek_to_beginning(tp)
            record = self._reference_record
            while any(consumer.position(tp) < ends[tp] for tp in tps):
                for batch in consumer.poll(timeout_ms=1000, max_records=20_000).values():
                    for m in batch:
                        if m.offset < ends[TopicPartition(m.topic, m.partition)]:
                            record(m.topic, m.partition, m.offset, m.value)
        finally:
            consumer.close()
        log.info(
            "reference topic read to its end: %d records in %.1f s",
            sum(self.ref_seen.values()),
            time.monotonic() - t0,
        )

    def _reference_behind(self) -> int:
        """How many reference records the fetcher knows of that are not
        applied yet (0 when its end is not known)."""
        from faust.types import TP  # noqa: PLC0415

        behind = 0
        for p, seen in list(self.ref_seen.items()) or [(0, 0)]:
            end = self._highwater(TP(self.names.reference, p))
            if end is not None and seen < end:
                behind += end - seen
        return behind

    def _reference_read(self) -> bool:
        """Whether the reference topic is read to the end the fetcher knows
        (or that end is not known): records sent after their reference data
        then find it in the shared reference."""
        return not self._reference_behind()

    def on_recovered(self) -> None:
        self.send_early_dead_letters()
        if not self.ready:
            self.ready = True
            log.info("%s: %d reference records", READY_LINE, len(self.ref_log))
            if self.on_ready is not None:
                self.on_ready()
