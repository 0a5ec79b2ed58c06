"""Partition state and the record path: input records to the engines,
alerts and dead letters out.

One :class:`PartitionState` per input partition number held: its
:class:`~fundflow.detectors.Engine`, its
:class:`~fundflow.streams.merge.PartitionMerge` and the next offset of each
input. It is made at the partition's first record, or within 2 s of its
assignment, restored from the ``checkpoints`` table where a checkpoint is
there (:meth:`Partitions._state`), and dropped without a save when the
partition is revoked.

A record's path: the agent hands a fetched run of one input partition to
:meth:`Partitions.ingest`, which keeps the records at the exact next offset
(gaps and repeats: :mod:`~fundflow.streams.gaps`), decodes them once and
queues them in the partition's merge under their event time;
:meth:`Partitions.release` lets the merge go while its order is certain,
and :meth:`Partitions._process` submits each record to the engine's
ordering stage, emits the alerts of what the stage releases (those of the
partition's own subjects, :meth:`Partitions._partition_of`) to the alerts topic and
the store, and bad records as dead letters. The periodic tick releases what
waits (:meth:`Partitions.release_all`): the merge, records held while the
reference topic was behind, and, after ``idle_seconds`` of quiet, what the
ordering stage holds.

The whole-stream worker (``whole``) has one state, slot 0, for every input
partition: one engine reads them all, through a merge with an input per
topic and partition (:func:`~fundflow.streams.merge.whole_inputs`), and
keeps every alert; it holds nothing until every partition is assigned to
it. Input partition *p*'s slot is :meth:`Partitions._slot`, an input's name
in a slot's offsets and merge :meth:`Partitions._key` (``custody``, or
``custody/p`` in the whole-stream worker).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any

import msgspec

from fundflow.detectors import Engine
from fundflow.schemas.decode import DeadLetter
from fundflow.schemas.records import Alert, ClearingTxn, CustodyTxn, ReserveReport

from . import engines
from .checkpoint import CheckpointError, decode_checkpoint
from .merge import PartitionMerge, whole_inputs
from .topics import INPUT_KINDS, partition_for

log = logging.getLogger("fundflow.worker")

#: A warning when a partition's queue in the merge grows beyond this.
MAX_BUFFERED = 50_000
_DEAD_KEY = -(1 << 62)  # dead letters leave the merge first


@dataclass
class PartitionState:
    """One input partition number (or the whole-stream worker's slot 0):
    its engine, merge queues and progress."""

    partition: int
    engine: Engine
    merge: PartitionMerge
    offsets: dict[str, int]  # input (Partitions._key) -> next offset to process
    ref_offsets: dict[int, int]  # reference partition -> next offset not seen by the detectors
    generation: int = 0
    finished: bool = False
    since_checkpoint: int = 0
    checkpointed_at: float = field(default_factory=time.monotonic)
    saving: bool = False
    # input -> (its topic's short name, its "topic/partition")
    sources: dict[str, tuple[str, str]] = field(default_factory=dict)
    tps: list[tuple[Any, str]] = field(default_factory=list)  # (input tp, input)


class Partitions:
    """Worker mixin: the partitions held and the record path. Its state is
    the "partitions and the record path" part of ``Worker.__init__``
    (``parts``, ``_next``, ``_moved``, ``_assigned``, ...)."""

    def _slot(self, p: int) -> int:
        """The state that reads input partition ``p``: its own, or the
        whole-stream worker's one."""
        return 0 if self.whole else p

    def _key(self, tp: Any) -> str:
        """Input ``tp``'s name in its slot's offsets and merge."""
        short = self.inputs[tp.topic]
        return f"{short}/{tp.partition}" if self.whole else short

    def on_assigned(self, assigned: Iterable[Any]) -> None:
        held = {(tp.topic, tp.partition) for tp in assigned if tp.topic in self.inputs}
        numbers = {p for _, p in held}
        if self.whole:
            # Every partition of every input topic: an assignor that splits the
            # topics differently can give a second member clearing/1 while this
            # one holds custody/1.
            every = {(t, p) for t in self.inputs for p in range(self.n_partitions)}
            if held and held != every:
                log.warning(
                    "whole-stream worker: assigned %d of the %d input partitions (missing %s); "
                    "it reads nothing until it holds all of them (one whole-stream worker per "
                    "group %s)",
                    len(held), len(every),
                    ", ".join(f"{t}/{p}" for t, p in sorted(every - held)[:6]),
                    self.names.group,
                )  # fmt: skip
            numbers = {0} if held == every else set()
        for p in set(self.parts) - numbers:
            self._drop(p)
        self._assigned = numbers
        self._assigned_at = time.monotonic()

    def on_revoked(self, revoked: Iterable[Any]) -> None:
        """A revoked partition is not checkpointed: its new owner may already
        have read the table. It resumes from the last periodic checkpoint and
        repeats what followed: the same records give the same alerts."""
        for p in {self._slot(tp.partition) for tp in revoked if tp.topic in self.inputs}:
            self._drop(p)
            self._assigned.discard(p)

    def _drop(self, p: int) -> None:
        st = self.parts.pop(p, None)
        if st is not None:
            st.merge.clear()
        for table in (self._next, self._start, self._seeks, self._seeking, self._moved):
            for tp in [tp for tp in table if self._slot(tp.partition) == p]:
                del table[tp]

    def _state(self, p: int) -> PartitionState:
        """The partition's state, restored from the checkpoint table (which
        Faust recovered before this partition's stream started)."""
        st = self.parts.get(p)
        if st is not None:
            return st
        rows = self.checkpoint_rows(p)
        assert self.checkpoint_key is not None  # run() starts no worker without one
        try:
            cp = decode_checkpoint(p, rows, self.checkpoint_key)
        except CheckpointError as e:
            # Incomplete, of an older format, or failing its HMAC (another key,
            # or written by someone else): nothing of it was decoded. Rebuild
            # the partition from the start of its topics rather than refuse to run.
            log.error("%s; rebuilding partition %d from the start of its topics", e, p)
            cp = None
        engine = engines.new_engine(self.config, self.ref, self.detectors)
        if cp is not None:
            try:
                engine.restore(cp.state)
            except Exception as e:  # noqa: BLE001 - a snapshot of another version
                # Detector state written by an older version that this one
                # cannot read: rebuild the partition from its topics' start.
                log.error(
                    "partition %d: checkpoint generation %d cannot be restored (%s: %s); "
                    "rebuilding from the start of its topics",
                    p, cp.generation, type(e).__name__, e,
                )  # fmt: skip
                cp = None
                engine = engines.new_engine(self.config, self.ref, self.detectors)
        merge = PartitionMerge(whole_inputs(self.n_partitions)) if self.whole else PartitionMerge()
        if cp is not None:
            st = PartitionState(p, engine, merge, dict(cp.offsets), {}, cp.generation)
            st.finished = cp.finished
            ref_from = dict(cp.ref_offsets)
            how = f"checkpoint generation {cp.generation}, offsets {cp.offsets}"
        else:
            st = PartitionState(p, engine, merge, {}, {})
            ref_from = {}
            how = "no checkpoint"
        parts = range(self.n_partitions) if self.whole else (p,)
        for full, short in self.inputs.items():
            for q in parts:
                key = f"{short}/{q}" if self.whole else short
                st.tps.append((self._tp(full, q), key))
                st.sources[key] = (short, f"{full}/{q}")
        for rp, off, rec in self.ref_log:
            if off >= ref_from.get(rp, 0):
                engines.feed_reference(engine, rec)
        st.ref_offsets = dict(self.ref_seen)
        self.parts[p] = st
        if self.whole:
            log.info("whole stream: every partition assigned (%s)", how)
        else:
            log.info("partition %d assigned (%s)", p, how)
        return st

    def ingest(self, short: str, tp: Any, records: list[Any]) -> None:
        """A fetched run of one input partition (aiokafka records, offsets
        ascending): decoded, queued in its partition's merge."""
        if tp not in self.app.consumer.assignment() or not self.app.tables.actives_ready:
            # Fetched before a rebalance took the partition away, or queued
            # while one recovers the tables: read again after it.
            return
        kinds = INPUT_KINDS[short]
        kind = kinds[0] if len(kinds) == 1 else None
        expected = self._next
        p = self._slot(tp.partition)
        if self.whole:
            if p not in self._assigned:
                return  # not every partition is held: read again once they are
        else:
            self._assigned.add(p)
        st = self._state(p)
        push = st.merge.push
        short_key = self._key(tp)
        taken: list[Any] = []
        for m in records:
            offset = m.offset
            want = expected.get(tp)
            if want is None:
                want = st.offsets.get(short_key)
                if want is None:
                    want = self._start.get(tp, 0)
                expected[tp] = want
            if offset != want:
                if offset < want:
                    self.stats["skipped"] += 1  # processed already, or the checkpoint covers it
                else:
                    # A gap: records fetched while a rebalance suspended the
                    # flow were not handed over. Read again from the first
                    # one missing.
                    self._seeks[tp] = want
                continue
            expected[tp] = offset + 1
            taken.append(m)
        if not taken:
            return
        # The run's values decoded in one call (a null value is a dead letter).
        decoded = self.decode_values([m.value for m in taken], kind)
        for m, rec in zip(taken, decoded, strict=True):
            t = type(rec)
            if t is CustodyTxn or t is ClearingTxn:
                key = rec.ts
            elif t is DeadLetter:
                key = _DEAD_KEY
            elif t is ReserveReport:
                key = self._report_time(rec.as_of)
            else:
                key = rec.as_of
            ts = m.timestamp
            push(short_key, key, m.offset, rec, ts if ts is not None and ts > 0 else -1)
        self._moved[tp] = time.monotonic()
        queued = len(st.merge.queues[short_key])
        if queued > MAX_BUFFERED and tp not in self._warned:
            self._warned.add(tp)
            log.warning(
                "%s/%d: %d records wait in the merge for another input",
                tp.topic, tp.partition, queued,
            )  # fmt: skip
        self.release(st)

    def _report_time(self, as_of: str) -> int:
        """A reserve report of day D is known at the end of D (local time)."""
        ms = self._report_ms.get(as_of)
        if ms is None:
            d = date.fromisoformat(as_of) + timedelta(days=1)
            ms = int(datetime(d.year, d.month, d.day, tzinfo=self.zone).timestamp() * 1000) - 1
            self._report_ms[as_of] = ms
        return ms

    def _consumed(self, tp: Any, st: PartitionState) -> int:
        """The next offset to take in from ``tp``: after the last record
        taken, else the checkpoint's, else the log start (an input with no
        record yet; -1 while that is not known)."""
        got = self._next.get(tp)
        if got is not None:
            return got
        got = st.offsets.get(self._key(tp))
        if got is not None:
            return got
        return self._start.get(tp, -1)

    def _highwater(self, tp: Any) -> int | None:
        """The fetcher's high watermark of ``tp`` (``None`` when unknown or
        no longer assigned: a rebalance may have just taken it)."""
        try:
            return self.app.consumer.highwater(tp)
        except Exception:  # noqa: BLE001 - aiokafka asserts the partition is assigned
            return None

    def _caught_up(self, tp: Any, st: PartitionState) -> bool:
        end = self._highwater(tp)
        known = self._end.get(tp)
        if end is None or (known is not None and known > end):
            end = known
        if end is None:
            return False
        return self._consumed(tp, st) >= end

    def release(self, st: PartitionState) -> None:
        merge = st.merge
        if not len(merge):
            return
        queues = merge.queues
        caught = {key for tp, key in st.tps if not queues[key] and self._caught_up(tp, st)}
        if self._process(st, merge.pop_ready(caught)):
            st.finished = False

    def release_held(self, st: PartitionState) -> None:
        """Records queued while the reference topic was behind: released
        once it is read to its end."""
        engine = st.engine
        if not engine.holding or not self._reference_read():
            return
        engine.holding = False
        self._emit_released(st, engine.release_ready())

    def _emit_released(self, st: PartitionState, alerts: list[Alert]) -> None:
        if self._emit(st, alerts):
            st.finished = False
        self._engine_letters(st, "")

    def release_idle(self, st: PartitionState, now: float) -> None:
        """The ordering stage's one wall clock: when every input of the
        partition is caught up and none has given a record for
        ``idle_seconds``, what the stage holds is processed (a quiet stream
        gives the alerts a replay gives at its end)."""
        engine = st.engine
        if not engine.held or len(st.merge) or engine.holding:
            return
        idle = self.settings.idle_seconds
        for tp, _ in st.tps:
            if now - self._moved.get(tp, 0.0) < idle or not self._caught_up(tp, st):
                return
        self._emit_released(st, engine.release())

    def release_all(self) -> None:
        now = time.monotonic()
        for st in list(self.parts.values()):
            self.release(st)
            self.release_held(st)
            self.release_idle(st, now)

    def _tp(self, topic: str, partition: int) -> Any:
        from faust.types import TP  # noqa: PLC0415

        return TP(topic, partition)

    def _process(self, st: PartitionState, ready: Any) -> int:
        engine = st.engine
        if not engine.holding and not self._reference_read():
            engine.holding = True  # released by release_held
        submit = engine.submit
        offsets = st.offsets
        sources = st.sources
        n = 0
        by = self._records_by
        # The wall clock when these records are taken in, for the alerts'
        # ``released_ms`` header only (the engine never sees it).
        taken_ms = int(time.time() * 1000)
        for key, offset, rec, ts in ready:
            n += 1
            offsets[key] = offset + 1
            short, at = sources[key]
            where = f"{at}@{offset}"
            kind = "invalid" if type(rec) is DeadLetter else rec.TYPE
            by[(short, kind)] = by.get((short, kind), 0) + 1
            if ts > self._last_event_ms:
                self._last_event_ms = ts
            if type(rec) is DeadLetter:
                self._dead_letter(rec, where, at.rpartition("/")[0])
                continue
            try:
                # Into the engine's ordering stage: the alerts are those of
                # the records it releases (detectors/ordering.py).
                alerts = submit(rec, where)
            except Exception as e:  # noqa: BLE001 - one bad record must not stop the worker
                log.exception("engine failed on %s", where)
                self._dead_letter(
                    DeadLetter(
                        reason="bad_field",
                        detail=f"engine error {type(e).__name__}: {e}",
                        raw=self._encode(rec).decode(),
                    ),
                    where,
                    at.rpartition("/")[0],
                )
                continue
            if alerts:
                self._emit(st, alerts, taken_ms)
            if engine.dead_letters:
                self._engine_letters(st, where)
        self.stats["records"] += n
        st.since_checkpoint += n
        return n

    def _engine_letters(self, st: PartitionState, where: str) -> None:
        """The engine's own refusals, each with the record it names."""
        engine = st.engine
        for letter in engine.dead_letters:
            source = letter.source or where
            self._dead_letter(letter, source, source.rpartition("/")[0])
        engine.dead_letters.clear()

    def _partition_of(self, subject: str) -> int:
        """The partition ``subject``'s records are keyed to. Every engine
        sees every reference record, and detector state built from
        reference data alone (a payment institution's reserve accounts and
        their banks) exists in all of them, so a finding about subject S can
        come out of every partition's engine, each with its own clock. S's
        transactions and reports are keyed by S, so the engine of S's
        partition is the one with S's whole story: only its alerts about S
        are kept (:meth:`_emit`)."""
        part = self._subject_partition
        p = part.get(subject)
        if p is None:
            p = part[subject] = partition_for(subject, self.n_partitions)
        return p

    def _emit(self, st: PartitionState, alerts: list[Alert], released_ms: int = -1) -> int:
        """The alerts ``st``'s engine has just returned, those of this
        partition's subjects (:meth:`_partition_of`), to the alerts topic and the
        store; returns how many. Each message carries two headers: ``source``,
        the ``topic/partition@offset`` of the record that raised it (empty
        for a heartbeat's or the end's), and ``released_ms``, the wall clock
        when the worker took in the records whose processing raised it, or
        (an idle release, the end) when it released what its ordering stage
        held; the latency benchmark splits its figures there
        (tests/bench_daemon.py)."""
        raised_by = st.engine.raised_by
        if raised_by is not None and len(raised_by) == len(alerts):
            sources = raised_by[:]
        else:
            sources = [""] * len(alerts)
        if raised_by:
            raised_by.clear()
        if not alerts:
            return 0
        owned = alerts
        if self.n_partitions > 1 and not self.whole:
            of, p = self._partition_of, st.partition
            pairs = [(a, s) for a, s in zip(alerts, sources, strict=True) if of(a.subject_id) == p]
            owned, sources = [a for a, _ in pairs], [s for _, s in pairs]
        if not owned:
            return 0
        topic = self.alerts_topic
        if released_ms < 0:
            released_ms = int(time.time() * 1000)
        released = str(released_ms).encode()
        encode = self._encode
        for a, source in zip(owned, sources, strict=True):
            headers = [("source", source.encode()), ("released_ms", released)]
            topic.send_soon(key=a.alert_id.encode(), value=encode(a), headers=headers)
            self._alert_reporter.report(a)
        self.stats["alerts"] += len(owned)
        if self.store is not None:
            self.store.upsert(owned)
        return len(owned)

    async def send_queued(self) -> None:
        """Hands what the records just taken in queued on Faust's producer
        buffer (alerts, dead letters) to the Kafka client now. The buffer is
        drained by a task of its own, which runs only when the agents yield,
        and an agent whose channel holds more fetched runs does not: without
        this its alerts would wait for every run behind it (seconds on a
        loaded machine). Waits only while the client's batch for a partition
        is full (a broker round trip): back-pressure on the agent."""
        buffer = self.app.producer.buffer
        # A buffer that is not running (the worker stopping) is flushed by
        # Faust itself when it stops; flushing it here would raise.
        if buffer.size and buffer.state == "running":
            await buffer.flush()

    def _dead_letter(self, letter: DeadLetter, source: str, source_topic: str) -> None:
        letter = msgspec.structs.replace(letter, source=source)
        dead = self.stats["dead_letters"]
        dead[letter.reason] = dead.get(letter.reason, 0) + 1
        self.metrics.dead_letters(letter.reason, 1)
        message = (source_topic.encode(), self._encode(letter))
        if self.app is None:
            self._early_dead.append(message)  # the reference preload: sent once the app runs
        else:
            self.deadletter_topic.send_soon(key=message[0], value=message[1])

    def send_early_dead_letters(self) -> None:
        for key, value in self._early_dead:
            self.deadletter_topic.send_soon(key=key, value=value)
        self._early_dead.clear()
