"""The always-on worker: Kafka topics in, engines, alerts out.

One worker process holds:

* every reference record (a consumer with no group that reads the whole
  reference topic, caught up to its end offsets before any transaction is
  processed, then polled before every batch);
* one :class:`~fundflow.detectors.Engine` per input partition number it is
  assigned (custody, clearing and reports partition *p* are co-partitioned:
  the range assignor hands the three to the same worker), fed through the
  event-time :class:`~fundflow.streams.merge.PartitionMerge`;
* a checkpoint table (a compacted topic, one row per partition number: the
  engine's snapshot and the input offsets it covers).

Why not Faust: the brief asked for a faust-streaming app, and this worker
keeps its design (agents become the poll loop, the Faust table becomes the
checkpoint topic, a GlobalTable becomes the reference consumer), but it is
written on kafka-python directly, which the project already depends on.
Three things a Faust app would have had to fight: committing a partition's
offsets *only* after its checkpoint is saved (Faust commits acked offsets on
its own timer), restoring one engine from a table row *before* its
partition's first record (Faust recovers tables in the background while
agents start), and merging three topics of one partition in event-time order
(Faust agents consume topics independently). Each is a few lines here.

Delivery: at least once, made exact by determinism. Records after the last
checkpoint are processed again after a crash and give the same alerts with
the same ids and revisions; the alerts topic is compacted by id and the
store upserts.
"""

from __future__ import annotations

import logging
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import msgspec

from fundflow.detectors import Config, Engine
from fundflow.detectors.metrics import AlertReporter, Metrics, NullMetrics
from fundflow.detectors.reference import Reference
from fundflow.schemas.decode import DeadLetter, RecordDecoder
from fundflow.schemas.records import Alert, Balance, ClearingTxn, CustodyTxn, ReserveReport

from . import engines
from .checkpoint import Checkpoint, CheckpointError, decode_checkpoint, encode_checkpoint
from .merge import PartitionMerge
from .settings import KafkaSettings
from .topics import INPUT_KINDS, TopicNames

log = logging.getLogger("fundflow.worker")

READY_LINE = "fundflow worker ready"
#: A warning when a partition's queue in the merge grows beyond this.
MAX_BUFFERED = 50_000
_DEAD_KEY = -(1 << 62)  # dead letters leave the merge first


class WorkerError(Exception):
    """A start-up problem for the user (one line): missing topics, bad setup."""


def murmur2(data: bytes) -> int:
    """Kafka's default partitioner hash (the producers' and the Java client's)."""
    from kafka.partitioner.default import murmur2 as _murmur2  # noqa: PLC0415

    return _murmur2(data)


def _kafka():
    try:
        import kafka  # noqa: PLC0415
    except ImportError:
        raise WorkerError(
            "the worker needs kafka-python: pip install kafka-python crc32c"
        ) from None
    return kafka


@dataclass
class PartitionState:
    """One input partition number: its engine, merge queues and progress."""

    partition: int
    engine: Engine
    merge: PartitionMerge
    offsets: dict[str, int]  # short input name -> next offset to process
    ref_offsets: dict[int, int]  # reference partition -> next offset not seen by the detectors
    generation: int = 0
    finished: bool = False
    since_checkpoint: int = 0
    checkpointed_at: float = field(default_factory=time.monotonic)


class Worker:
    """Runs until :meth:`stop` (SIGTERM) or, in drain mode, until every
    assigned input partition is consumed to its end offset."""

    def __init__(
        self,
        settings: KafkaSettings,
        config: Config,
        sink: Any = None,
        *,
        drain: bool = False,
        expect_partitions: int | None = None,
        on_ready: Callable[[], None] | None = None,
        metrics: Metrics | None = None,
    ) -> None:
        self.settings = settings
        # Reported through the pure protocol (the shell supplies the
        # Prometheus adapter): counters once a second from what the worker
        # already counts, one call per alert and per dead letter.
        self.metrics: Metrics = metrics if metrics is not None else NullMetrics()
        self._alert_reporter = AlertReporter(self.metrics)
        self._reported: dict[str, int] = {"accepted": 0, "duplicates": 0}
        self._records_by: dict[tuple[str, str], int] = {}
        self._last_event_ms = -1
        self._metrics_at = 0.0
        self.config = config
        self.sink = sink
        self.drain = drain
        self.expect_partitions = expect_partitions
        self.on_ready = on_ready
        self.names = TopicNames(settings.namespace)
        self.inputs = self.names.inputs()  # full -> short
        self.decoder = RecordDecoder(config.engine.zone)
        self.zone = ZoneInfo(config.engine.zone)
        self.ref = Reference()
        self.ref_log: list[tuple[int, int, Any]] = []  # (partition, offset, record)
        self.ref_seen: dict[int, int] = {}  # reference partition -> next offset
        self.parts: dict[int, PartitionState] = {}
        self.table: dict[str, bytes] = {}  # the checkpoint topic, latest value per key
        self.stopping = False
        self.ready = False
        self.stats: dict[str, Any] = {
            "records": 0,
            "reference_records": 0,
            "alerts": 0,
            "dead_letters": {},
            "checkpoints": 0,
            "finished_partitions": 0,
        }
        self._encode = msgspec.json.encode
        self._report_ms: dict[str, int] = {}
        self._end_cache: dict[Any, tuple[float, int]] = {}
        self._warned: set[Any] = set()
        self._pending_commits: dict[Any, Any] = {}
        self._events: list[tuple[str, list[Any]]] = []
        self._next_fetch: dict[Any, int] = {}
        self._subject_partition: dict[str, int] = {}
        self._enqueued: dict[str, int] = {}
        self._read_upto: dict[int, dict[Any, int]] = {}
        self.n_partitions = 1
        self._drain_checked = 0.0
        self.consumer: Any = None
        self.producer: Any = None

    # -- life cycle ------------------------------------------------------------

    def stop(self, *_: object) -> None:
        self.stopping = True

    def start_draining(self, *_: object) -> None:
        self.drain = True

    def install_signals(self) -> None:
        signal.signal(signal.SIGTERM, self.stop)
        signal.signal(signal.SIGINT, self.stop)
        signal.signal(signal.SIGUSR1, self.start_draining)

    def run(self) -> int:
        kafka = _kafka()
        opts = self.settings.client_options()
        self._check_topics(kafka, opts)
        self.producer = kafka.KafkaProducer(acks="all", linger_ms=1, **opts)
        self.ref_consumer = self._reader(kafka, opts, self.names.reference)
        self.cp_consumer = self._reader(kafka, opts, self.names.checkpoints)
        self._catch_up_reference()
        self.ready = True
        log.info("%s: %d reference records", READY_LINE, len(self.ref_log))
        if self.on_ready is not None:
            self.on_ready()
        from kafka.coordinator.assignors.range import RangePartitionAssignor  # noqa: PLC0415

        self.consumer = kafka.KafkaConsumer(
            group_id=self.names.group,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            partition_assignment_strategy=[RangePartitionAssignor],
            max_poll_records=self.settings.batch_size,
            fetch_max_wait_ms=max(1, self.settings.batch_ms),
            session_timeout_ms=self.settings.session_timeout_ms,
            heartbeat_interval_ms=max(1000, self.settings.session_timeout_ms // 4),
            **opts,
        )
        # Metadata first: a group joined before it is known gets nothing
        # from the range assignor.
        self.consumer.topics()
        self.consumer.subscribe(list(self.inputs), listener=_listener(self))
        try:
            while not self.stopping:
                self._poll_reference(0)
                batch = self.consumer.poll(timeout_ms=self.settings.batch_ms)
                self._enqueue(self._rebalanced(batch))
                self._release_all()
                self._maybe_checkpoint()
                self._commit_pending()
                if time.monotonic() - self._metrics_at >= 1.0:
                    self._report_metrics()
                if self.drain and self._drained():
                    self._finish_all()
                    break
            self._report_metrics()
        finally:
            self._shutdown()
        return 0

    def _shutdown(self) -> None:
        try:
            if self.consumer is not None:
                for st in list(self.parts.values()):
                    self._checkpoint(st)
                self._commit_pending()
                self.parts.clear()  # saved: leaving the group must not save them again
                self.consumer.close(autocommit=False)
        finally:
            if self.producer is not None:
                self.producer.flush()
                self.producer.close()
            if self.sink is not None:
                self.sink.close()
            for c in (getattr(self, "ref_consumer", None), getattr(self, "cp_consumer", None)):
                if c is not None:
                    c.close(autocommit=False)
            log.info(
                "fundflow worker stopped: %d records, %d alert revisions, %d checkpoints",
                self.stats["records"],
                self.stats["alerts"],
                self.stats["checkpoints"],
            )

    def _check_topics(self, kafka: Any, opts: dict[str, Any]) -> None:
        consumer = kafka.KafkaConsumer(enable_auto_commit=False, **opts)
        try:
            existing = consumer.topics()
            missing = [t for t in self.names.all() if t not in existing]
            if missing:
                raise WorkerError(
                    f"missing topics {', '.join(missing)}: run `fundflow topics create` "
                    f"with the same --namespace first"
                )
            counts = {t: len(consumer.partitions_for_topic(t) or ()) for t in self.inputs}
            if len(set(counts.values())) != 1:
                raise WorkerError(
                    "input topics must have one partition count (co-partitioned), got "
                    + ", ".join(f"{t} {n}" for t, n in counts.items())
                )
            n = next(iter(counts.values()))
            self.n_partitions = n
            if self.expect_partitions is not None and n != self.expect_partitions:
                raise WorkerError(
                    f"input topics have {n} partitions, --partitions says {self.expect_partitions}"
                )
        finally:
            consumer.close()

    # -- reference data and the checkpoint table --------------------------------

    def _reader(self, kafka: Any, opts: dict[str, Any], topic: str) -> Any:
        """A group-less consumer over every partition of ``topic``, from the start."""
        consumer = kafka.KafkaConsumer(
            group_id=None, enable_auto_commit=False, max_poll_records=5000, **opts
        )
        tps = [kafka.TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic))]
        consumer.assign(tps)
        consumer.seek_to_beginning(*tps)
        return consumer

    def _read_to_end(self, consumer: Any, handle: Callable[[Any], None], timeout: float) -> None:
        tps = list(consumer.assignment())
        end = consumer.end_offsets(tps)
        # Progress is counted from the records handed over, not from
        # consumer.position(), which may run ahead of them (see _consumed).
        done = self._read_upto.setdefault(id(consumer), consumer.beginning_offsets(tps))
        deadline = time.monotonic() + timeout
        while any(done.get(tp, 0) < end[tp] for tp in tps):
            if time.monotonic() > deadline:
                raise WorkerError(
                    f"could not read {tps[0].topic} to its end within {timeout:.0f} s"
                )
            for tp, records in consumer.poll(timeout_ms=200).items():
                for m in records:
                    handle(m)
                if records:
                    done[tp] = records[-1].offset + 1

    def _catch_up_reference(self) -> None:
        self._read_to_end(self.ref_consumer, self._apply_reference, timeout=600)

    def _poll_reference(self, timeout_ms: int) -> None:
        done = self._read_upto.setdefault(id(self.ref_consumer), {})
        for tp, records in self.ref_consumer.poll(timeout_ms=timeout_ms).items():
            for m in records:
                self._apply_reference(m)
            if records:
                done[tp] = records[-1].offset + 1

    def _apply_reference(self, m: Any) -> None:
        self.ref_seen[m.partition] = m.offset + 1
        if m.value is None:  # a tombstone: reference records are never deleted
            return
        rec = self.decoder.decode(m.value)
        if type(rec) is DeadLetter or type(rec).TYPE not in (
            "entity",
            "account",
            "product",
            "loan",
        ):
            if type(rec) is not DeadLetter:
                rec = DeadLetter(
                    reason="unknown_type",
                    detail=f"a {type(rec).TYPE} record on the reference topic",
                    raw=bytes(m.value).decode("utf-8", "backslashreplace"),
                )
            self._dead_letter(rec, f"{m.topic}/{m.partition}@{m.offset}", self.names.reference)
            return
        self.stats["reference_records"] += 1
        self.ref.add(rec)
        self.ref_log.append((m.partition, m.offset, rec))
        for st in self.parts.values():
            engines.feed_reference(st.engine, rec)
            st.ref_offsets[m.partition] = m.offset + 1

    def _refresh_table(self) -> None:
        def keep(m: Any) -> None:
            key = m.key.decode()
            if m.value is None:
                self.table.pop(key, None)
            else:
                self.table[key] = m.value

        self._read_to_end(self.cp_consumer, keep, timeout=120)

    # -- partitions come and go -------------------------------------------------

    def _rebalanced(self, batch: dict[Any, list[Any]]) -> dict[Any, list[Any]]:
        """Applies the partition changes of the last ``poll()`` and returns
        the part of its batch that may be processed.

        kafka-python runs rebalance callbacks on its I/O thread, which must
        not block (a slow callback there stalled the group's coordinator in
        our runs), so the callbacks only queue events and the work happens
        here, on the main thread, right after the poll that delivered them.
        A revoked partition is *not* checkpointed: its new owner may already
        have read the table, and a late save would race with the new owner's.
        Its state is kept aside instead, and taken back if the partition
        returns with no newer checkpoint in the table (an eager rebalance
        that revokes and re-assigns everything). Otherwise the new owner
        resumes from the last periodic checkpoint and repeats what followed:
        the same records give the same alerts with the same ids.
        """
        if not self._events:
            return batch
        events, self._events = self._events, []
        fresh: set[int] = set()
        for what, tps in events:
            numbers = sorted({tp.partition for tp in tps if tp.topic in self.inputs})
            if what == "revoked":
                for p in numbers:
                    st = self.parts.pop(p, None)
                    if st is not None:
                        st.merge.clear()
                self._pending_commits = {
                    tp: o for tp, o in self._pending_commits.items() if tp.partition not in numbers
                }
            else:
                new = [p for p in numbers if p not in self.parts]
                if new:
                    self._refresh_table()
                for p in new:
                    self._take_partition(p)
                fresh.update(new)
        if not fresh:
            return batch
        # Records fetched from before our seek, for partitions just set up.
        return {tp: recs for tp, recs in batch.items() if tp.partition not in fresh}

    def _take_partition(self, p: int) -> None:
        kafka = _kafka()
        try:
            cp = decode_checkpoint(p, self.table)
        except CheckpointError as e:
            # Should not happen (the head is written last); rebuild the
            # partition from the start of its topics rather than refuse to run.
            log.error("%s; rebuilding partition %d from the start of its topics", e, p)
            cp = None
        # A partition (re)assigned always starts from its checkpoint: keeping
        # the in-memory state across a rebalance that gives it straight back
        # would save the replay of a few seconds, but that path lost records
        # in our runs with kafka-python 3.0 and was not worth its risk.
        engine = engines.new_engine(self.config, self.ref)
        if cp is not None:
            engines.restore(engine, cp.state, self.ref)
            st = PartitionState(p, engine, PartitionMerge(), dict(cp.offsets), {}, cp.generation)
            st.finished = cp.finished
            ref_from = dict(cp.ref_offsets)
            how = f"checkpoint generation {cp.generation}, offsets {cp.offsets}"
        else:
            st = PartitionState(p, engine, PartitionMerge(), {}, {})
            ref_from = {}
            how = "no checkpoint"
        # Reference records the engine's detectors have not seen yet.
        for rp, off, rec in self.ref_log:
            if off >= ref_from.get(rp, 0):
                engines.feed_reference(engine, rec)
        st.ref_offsets = dict(self.ref_seen)
        st.checkpointed_at = time.monotonic()
        self.parts[p] = st
        for full, short in self.inputs.items():
            tp = kafka.TopicPartition(full, p)
            if short in st.offsets:
                self.consumer.seek(tp, st.offsets[short])
                self._next_fetch[tp] = st.offsets[short]
            else:
                start = self.consumer.beginning_offsets([tp])[tp]
                self.consumer.seek(tp, start)
                self._next_fetch[tp] = start
        log.info("partition %d assigned (%s)", p, how)

    # -- records -------------------------------------------------------------------

    def _enqueue(self, batch: dict[Any, list[Any]]) -> None:
        decode = self.decoder.decode
        for tp, records in batch.items():
            short = self.inputs[tp.topic]
            st = self.parts.get(tp.partition)
            if st is None:
                continue
            kind = INPUT_KINDS[short][0] if len(INPUT_KINDS[short]) == 1 else None
            push = st.merge.queues[short].append
            expect = self._next_fetch.get(tp)
            if expect is not None and records and records[0].offset != expect:
                log.warning(
                    "%s/%d: fetched from offset %d, expected %d",
                    tp.topic, tp.partition, records[0].offset, expect,
                )  # fmt: skip
            if records:
                self._next_fetch[tp] = records[-1].offset + 1
                self._enqueued[short] = self._enqueued.get(short, 0) + len(records)
                log.debug(
                    "fetched %s/%d %d..%d (%d)",
                    tp.topic,
                    tp.partition,
                    records[0].offset,
                    records[-1].offset,
                    len(records),
                )
            for m in records:
                value = m.value
                if value is None:
                    rec: Any = DeadLetter(
                        reason="not_json", detail="empty message (null value)", raw=""
                    )
                else:
                    rec = decode(value, kind)
                t = type(rec)
                if t is CustodyTxn or t is ClearingTxn:
                    key = rec.ts
                elif t is DeadLetter:
                    key = _DEAD_KEY
                elif t is Balance:
                    key = rec.as_of
                elif t is ReserveReport:
                    key = self._report_time(rec.as_of)
                else:  # a reference record on an input topic: refused
                    rec = DeadLetter(
                        reason="unknown_type",
                        detail=f"a {t.TYPE} record on the {short} topic",
                        raw=bytes(value).decode("utf-8", "backslashreplace"),
                    )
                    key = _DEAD_KEY
                push((key, m.offset, rec, m.timestamp))
            if len(st.merge.queues[short]) > MAX_BUFFERED and tp not in self._warned:
                # Not paused: kafka-python 3.0's fetcher stalled for good
                # after pause/resume in our runs. The fetcher takes every
                # partition in turn, so a queue grows only as far as one
                # input runs ahead of another in event time.
                self._warned.add(tp)
                log.warning(
                    "%s/%d: %d records wait in the merge for another input of the partition",
                    tp.topic, tp.partition, len(st.merge.queues[short]),
                )  # fmt: skip

    def _report_time(self, as_of: str) -> int:
        """A reserve report of day D is known at the end of D (local time)."""
        ms = self._report_ms.get(as_of)
        if ms is None:
            d = date.fromisoformat(as_of) + timedelta(days=1)
            ms = int(datetime(d.year, d.month, d.day, tzinfo=self.zone).timestamp() * 1000) - 1
            self._report_ms[as_of] = ms
        return ms

    def _caught_up(self, tp: Any) -> bool:
        end = self.consumer.highwater(tp)
        if end is None:
            now = time.monotonic()
            cached = self._end_cache.get(tp)
            if cached is None or now - cached[0] > 0.5:
                cached = (now, self.consumer.end_offsets([tp])[tp])
                self._end_cache[tp] = cached
            end = cached[1]
        return self._consumed(tp) >= end

    def _consumed(self, tp: Any) -> int:
        """The offset after the last record ``poll()`` returned for ``tp``.

        Not ``consumer.position()``: kafka-python 3 may count records it has
        fetched but not yet returned, and a worker that took that for "read
        to the end" stopped early (and merged out of order) in our runs."""
        return self._next_fetch.get(tp, 0)

    def _release_all(self) -> None:
        kafka_tp = _kafka().TopicPartition
        for st in list(self.parts.values()):
            merge = st.merge
            if not len(merge):
                continue
            caught = {
                short
                for full, short in self.inputs.items()
                if not merge.queues[short] and self._caught_up(kafka_tp(full, st.partition))
            }
            n = self._process(st, merge.pop_ready(caught))
            if n:
                st.finished = False

    def _process(self, st: PartitionState, ready: Any) -> int:
        engine = st.engine
        process = engine.process
        offsets = st.offsets
        names = self.names
        n = 0
        by = self._records_by
        for short, offset, rec, ts in ready:
            n += 1
            offsets[short] = offset + 1
            kind = "invalid" if type(rec) is DeadLetter else rec.TYPE
            by[(short, kind)] = by.get((short, kind), 0) + 1
            if ts > self._last_event_ms:
                self._last_event_ms = ts
            if type(rec) is DeadLetter:
                self._dead_letter(
                    rec, f"{names.topic(short)}/{st.partition}@{offset}", names.topic(short)
                )
                continue
            try:
                alerts = process(rec)
            except Exception as e:  # noqa: BLE001 - one bad record must not stop the worker
                log.exception("engine failed on %s/%d@%d", short, st.partition, offset)
                self._dead_letter(
                    DeadLetter(
                        reason="bad_field",
                        detail=f"engine error {type(e).__name__}: {e}",
                        raw=self._encode(rec).decode(),
                    ),
                    f"{names.topic(short)}/{st.partition}@{offset}",
                    names.topic(short),
                )
                continue
            if alerts:
                alerts = self._owned(alerts, st.partition)
                if alerts:
                    self._emit(alerts, ts)
            if engine.dead_letters:
                for letter in engine.dead_letters:
                    self._dead_letter(
                        letter, f"{names.topic(short)}/{st.partition}@{offset}", names.topic(short)
                    )
                engine.dead_letters.clear()
        self.stats["records"] += n
        st.since_checkpoint += n
        return n

    def _owned(self, alerts: list[Alert], partition: int) -> list[Alert]:
        """The alerts whose subject's records are keyed to ``partition``.

        Every engine sees every reference record, and detector state built
        from reference data alone (a payment institution's reserve accounts
        and their banks) exists in all of them, so a finding about subject S
        can come out of every partition's engine, each with its own clock.
        S's transactions and reports are keyed by S, so the engine of S's
        partition is the one with S's whole story: only its alerts about S
        are kept."""
        if self.n_partitions <= 1:
            return alerts
        part = self._subject_partition
        kept = []
        for a in alerts:
            p = part.get(a.subject_id)
            if p is None:
                p = part[a.subject_id] = (
                    murmur2(a.subject_id.encode()) & 0x7FFFFFFF
                ) % self.n_partitions
            if p == partition:
                kept.append(a)
        return kept

    def _emit(self, alerts: list[Alert], source_ts: int = -1) -> None:
        topic = self.names.alerts
        headers = [("source_ts", str(source_ts).encode())] if source_ts >= 0 else None
        send = self.producer.send
        encode = self._encode
        for a in alerts:
            send(topic, key=a.alert_id.encode(), value=encode(a), headers=headers)
            self._alert_reporter.report(a)
        self.stats["alerts"] += len(alerts)
        if self.sink is not None:
            self.sink.upsert(alerts)

    def _dead_letter(self, letter: DeadLetter, source: str, source_topic: str) -> None:
        letter = msgspec.structs.replace(letter, source=source)
        dead = self.stats["dead_letters"]
        dead[letter.reason] = dead.get(letter.reason, 0) + 1
        self.metrics.dead_letters(letter.reason, 1)
        self.producer.send(
            self.names.deadletter, key=source_topic.encode(), value=self._encode(letter)
        )

    # -- checkpoints ------------------------------------------------------------------

    def _commit_pending(self) -> None:
        """Commits the offsets of saved checkpoints. They are informational
        (a restarted worker resumes from its checkpoint's offsets, not from
        these), so a commit refused during a rebalance is only logged."""
        if not self._pending_commits:
            return
        commit, self._pending_commits = self._pending_commits, {}
        try:
            self.consumer.commit(commit)
        except Exception as e:  # noqa: BLE001 - the checkpoint is what counts
            log.warning("offset commit failed (the checkpoints hold the offsets): %s", e)

    def _maybe_checkpoint(self) -> None:
        now = time.monotonic()
        s = self.settings
        for st in list(self.parts.values()):
            if st.since_checkpoint >= s.checkpoint_records or (
                st.since_checkpoint and now - st.checkpointed_at >= s.checkpoint_seconds
            ):
                self._checkpoint(st)

    def _checkpoint(self, st: PartitionState) -> None:
        """Saves the partition's state, then commits the offsets it covers.

        Alerts and dead letters of the covered records are flushed first: a
        checkpoint must never cover a record whose output could still be lost.
        """
        kafka = _kafka()
        t0 = time.perf_counter()
        self.producer.flush()
        if self.sink is not None:
            self.sink.flush()
        st.generation += 1
        cp = Checkpoint(
            partition=st.partition,
            generation=st.generation,
            offsets=dict(st.offsets),
            ref_offsets=dict(st.ref_offsets),
            state=engines.snapshot(st.engine, self.ref),
            finished=st.finished,
        )
        futures = [
            self.producer.send(self.names.checkpoints, key=k.encode(), value=v, partition=0)
            for k, v in encode_checkpoint(cp)
        ]
        self.producer.flush()
        for f in futures:
            f.get(timeout=60)  # raises if the checkpoint was not written
        commit = {
            kafka.TopicPartition(full, st.partition): kafka.structs.OffsetAndMetadata(
                st.offsets[short], "", -1
            )
            for full, short in self.inputs.items()
            if short in st.offsets
        }
        # Committed from the main loop (kafka-python runs rebalance callbacks,
        # where revoked partitions are checkpointed, on its I/O thread, which
        # must not block on a commit).
        self._pending_commits.update(commit)
        st.since_checkpoint = 0
        st.checkpointed_at = time.monotonic()
        self.stats["checkpoints"] += 1
        log.debug(
            "checkpoint partition %d generation %d offsets %s (%.1f ms)",
            st.partition,
            st.generation,
            st.offsets,
            1000 * (time.perf_counter() - t0),
        )

    # -- draining -------------------------------------------------------------------------

    def _drained(self) -> bool:
        """Every assigned input partition is consumed to its end offset and
        nothing waits in a merge (checked at most every 200 ms)."""
        now = time.monotonic()
        if now - self._drained_checked_at() < 0.2:
            return False
        self._drain_checked = now
        if not self._joined:
            return False
        if any(len(st.merge) for st in self.parts.values()):
            return False
        tps = list(self.consumer.assignment())
        if not tps:
            # More workers than partitions: nothing to drain, once the
            # assignment has been empty for a while (not just between two
            # rebalances).
            return now - self._assigned_at > 5.0
        end = self.consumer.end_offsets(tps)
        done = all(self._consumed(tp) >= end[tp] for tp in tps)
        if done:
            log.info(
                "consumed to the end: %s",
                ", ".join(f"{tp.topic}/{tp.partition}@{end[tp]}" for tp in sorted(tps)),
            )
        return done

    def _drained_checked_at(self) -> float:
        return self._drain_checked

    _joined = False
    _assigned_at = 0.0

    def _finish_all(self) -> None:
        """The end of the stream (drain mode): settle what waits for time."""
        for st in self.parts.values():
            if not st.finished:
                alerts = self._owned(st.engine.finish(), st.partition)
                if alerts:
                    self._emit(alerts)
                st.finished = True
                self.stats["finished_partitions"] += 1
        log.info(
            "drained: every assigned partition consumed to its end; finishing "
            "(records fetched %s, processed %d, offsets %s)",
            self._enqueued,
            self.stats["records"],
            {p: st.offsets for p, st in self.parts.items()},
        )

    # -- metrics ---------------------------------------------------------------------------

    def _report_metrics(self) -> None:
        """Counter increments since the last report, lag and state size."""
        self._metrics_at = time.monotonic()
        m = self.metrics
        for (short, kind), n in self._records_by.items():
            m.records_in(self.names.topic(short), kind, n)
        self._records_by.clear()
        totals = {"accepted": 0, "duplicates": 0}
        subjects = accounts = edges = 0
        for st in list(self.parts.values()):
            for k in totals:
                totals[k] += st.engine.counts[k]
            s_, a_, e_ = st.engine.state_size()
            subjects += s_
            accounts, edges = a_, e_  # reference data is shared: the same in every engine
        # A partition that moved away takes its counts with it: never report a decrease.
        for k, report in (("accepted", m.accepted), ("duplicates", m.duplicates)):
            if totals[k] > self._reported[k]:
                report(totals[k] - self._reported[k])
            self._reported[k] = totals[k]
        m.state_size(subjects, accounts, edges)
        if self._last_event_ms >= 0:
            m.last_record_timestamp_seconds(self._last_event_ms / 1000)
            m.event_time_lag_seconds(max(0.0, time.time() - self._last_event_ms / 1000))
        if self.consumer is not None:
            # The high watermark each fetch response carries: no extra request.
            kafka_tp = _kafka().TopicPartition
            for p in list(self.parts):
                for full in self.inputs:
                    tp = kafka_tp(full, p)
                    end = self.consumer.highwater(tp)
                    if end is not None:
                        m.consumer_lag(full, p, max(0, end - self._consumed(tp)))

    # -- health ---------------------------------------------------------------------------

    def health(self) -> dict[str, Any]:
        counts = {"accepted": 0, "duplicates": 0, "too_late": 0}
        for st in list(self.parts.values()):
            for k, v in st.engine.counts.items():
                counts[k] = counts.get(k, 0) + v
        return {
            "status": "ready" if self.ready else "starting",
            "namespace": self.settings.namespace,
            "assigned_partitions": sorted(self.parts),
            "records": self.stats["records"],
            "reference_records": self.stats["reference_records"],
            "alert_revisions": self.stats["alerts"],
            "dead_letters": dict(self.stats["dead_letters"]),
            "checkpoints": self.stats["checkpoints"],
            "uncheckpointed_records": sum(st.since_checkpoint for st in list(self.parts.values())),
            "engine_counts": counts,
            "offsets": {str(p): dict(st.offsets) for p, st in list(self.parts.items())},
            "draining": self.drain,
        }


def _listener(worker: Worker) -> Any:
    from kafka import ConsumerRebalanceListener  # noqa: PLC0415

    class Listener(_Callbacks, ConsumerRebalanceListener):
        pass

    return Listener(worker)


class _Callbacks:
    """kafka-python's rebalance callbacks, run inside ``poll()``."""

    def __init__(self, worker: Worker) -> None:
        self.worker = worker

    def on_partitions_revoked(self, revoked: Any) -> None:
        self.worker._events.append(("revoked", list(revoked)))

    def on_partitions_assigned(self, assigned: Any) -> None:
        self.worker._events.append(("assigned", list(assigned)))
        self.worker._joined = True
        self.worker._assigned_at = time.monotonic()

    def on_partitions_lost(self, lost: Any) -> None:
        self.worker._events.append(("revoked", list(lost)))
