"""Batch delivery of input records from Faust's consumer to the agents.

Faust hands a fetched record to its streams one at a time: for each one the
fetcher creates a :class:`~faust.types.Message`, waits on the conductor's
callback and on the flow-suspension event together (two tasks), decodes it
into an event and puts it on the topic's queue, and the stream takes it off
again. Measured on the worker, that path cost about 330 µs a record, more
than three times the engine, the decoder and the merge together.

Input records need none of it: the worker decodes raw bytes itself, tracks
the exact next offset of every input partition and commits offsets only
after a checkpoint. So the consumer here gives each fetched run of records
of an input topic partition, as aiokafka returned it, to that topic's agent
in one piece (an in-memory channel with a short queue, which also carries
back-pressure to the fetcher). Records of every other topic (the tables'
changelogs) take Faust's own path unchanged.

A global table's changelog is read twice by Faust: once by its recovery,
then again from its committed offset (none: the start) as the table's
partition. Records below the offset the table has already applied are
dropped here, before they cost a message each.

Rebalances are handled as Faust does: nothing is handed over while the flow
is suspended, after the consumer generation changed within a fetch, or
before the tables are recovered (Faust's streams wait for that too, behind
its flow control); what is dropped that way is read again from the
checkpoint's offsets, or noticed by the worker's offset tracking as a gap.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

log = logging.getLogger("fundflow.worker")

#: topic -> coroutine taking (tp, records) for one fetched run of one partition
BatchHandlers = Mapping[str, Callable[[Any, list[Any]], Awaitable[None]]]
#: topic -> the first offset of a partition not yet applied (records below it
#: are dropped before they cost a message)
Floors = Mapping[str, Callable[[Any], int]]
#: seconds a subscription waits for the consumer thread to start
START_WAIT = 120.0


def batch_transport_class(handlers: BatchHandlers, floors: Floors) -> type:
    """Faust's aiokafka transport whose consumer hands input batches to
    ``handlers`` and drops records of ``floors``' topics already applied
    (one transport class per app: the mappings are its own)."""
    from faust.transport.consumer import CONSUMER_FETCHING  # noqa: PLC0415
    from faust.transport.drivers import aiokafka as driver  # noqa: PLC0415

    class BatchConsumer(driver.Consumer):  # type: ignore[misc,valid-type]
        # Faust's table manager and conductor call on the aiokafka consumer
        # a fixed time after start-up; on a loaded machine its thread may
        # not have created it yet (``ConsumerNotStarted``, a crashed app).
        # Before then there is no assignment, and a subscription waits.

        def _thread_ready(self) -> bool:
            return self._thread._consumer is not None

        def assignment(self) -> Any:
            if not self._thread_ready():
                return set()
            return super().assignment()

        async def subscribe(self, topics: Any) -> None:
            waited = 0.0
            while not self._thread_ready() and waited < START_WAIT:
                await asyncio.sleep(0.05)
                waited += 0.05
            await super().subscribe(topics)

        async def _drain_messages(self, fetcher: Any) -> None:
            # Faust's Fetcher service runs this for the life of the consumer.
            callback = self.callback
            batch_of = handlers.get
            floor_of = floors.get
            consumer_should_stop = self._stopped.is_set
            fetcher_should_stop = fetcher._stopped.is_set
            get_read_offset = self._read_offset.__getitem__
            set_read_offset = self._read_offset.__setitem__
            set_flag = self.diag.set_flag
            unset_flag = self.diag.unset_flag
            acks_enabled_for = self.app.topics.acks_enabled_for
            to_message = self._to_message
            tables = self.app.tables
            try:
                while not (consumer_should_stop() or fetcher_should_stop()):
                    set_flag(CONSUMER_FETCHING)
                    records, active = await self._wait_next_records(1.0)
                    await self.sleep(0)
                    if not records or self.should_stop:
                        unset_flag(CONSUMER_FETCHING)
                        continue
                    if not self.flow_active:
                        try:
                            await self.perform_seek()
                        except Exception as e:  # noqa: BLE001 - as Faust: retried at the next fetch
                            log.warning("seek to committed offsets failed: %s", e)
                        unset_flag(CONSUMER_FETCHING)
                        continue
                    generation = self.app.consumer_generation_id
                    for tp, recs in records.items():
                        if not self.flow_active or self.app.consumer_generation_id != generation:
                            break
                        if (
                            active is not None
                            and tp not in active
                            and tp not in self._buffered_partitions
                        ):
                            continue
                        handler = batch_of(tp.topic)
                        if handler is not None:
                            # Not before the tables are recovered: the agent
                            # would find no checkpoint for the partition.
                            if recs and tables.actives_ready:
                                await handler(tp, recs)
                                set_read_offset(tp, recs[-1].offset)
                            continue
                        floor = floor_of(tp.topic)
                        if floor is not None and recs:
                            low = floor(tp)
                            if recs[-1].offset < low:
                                set_read_offset(tp, recs[-1].offset)
                                continue
                            recs = [r for r in recs if r.offset >= low]
                        for record in recs:
                            if not self.flow_active:
                                break
                            offset = record.offset
                            r_offset = get_read_offset(tp)
                            if r_offset is not None and offset < r_offset:
                                continue
                            gap = offset - (r_offset or 0)
                            if gap > 1 and r_offset and acks_enabled_for(record.topic):
                                await self._add_gap(tp, r_offset + 1, offset)
                            await self.wait_first(
                                callback(to_message(tp, record)), self.suspend_flow.wait()
                            )
                            set_read_offset(tp, offset)
                    unset_flag(CONSUMER_FETCHING)
            except self.consumer_stopped_errors:
                if self.transport.app.should_stop:
                    return
                raise
            except asyncio.CancelledError:
                if self.transport.app.should_stop:
                    return
                raise
            finally:
                unset_flag(CONSUMER_FETCHING)

    class BatchTransport(driver.Transport):  # type: ignore[misc,valid-type]
        Consumer = BatchConsumer

    return BatchTransport
