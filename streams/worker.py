"""The always-on worker: a Faust app, input topics in, engines, alerts out.

* **Agents**, one per input topic (custody, clearing, reports), take their
  records a fetched batch at a time: the consumer hands each run of records
  aiokafka fetched for one input partition to the topic's agent whole,
  without Faust's per-record message and event path
  (:mod:`~fundflow.streams.delivery`). The three topics are
  co-partitioned: Faust's assignor hands partition *p* of all three, and
  partition *p* of the checkpoint table, to one worker, where they feed one
  :class:`~fundflow.detectors.Engine` through the event-time
  :class:`~fundflow.streams.merge.PartitionMerge` (the three topics of a
  partition leave it in event-time order, which is what makes the daemon
  give the alerts of a replay).
* **Reference data** is a ``GlobalTable`` whose changelog is the reference
  topic (compacted, one partition). Every worker holds all of it, as one
  shared :class:`~fundflow.detectors.reference.Reference`, and reads it to
  its end before its streams start (the table is synchronised as an active
  partition on every worker); later reference records reach the engines as
  they arrive.
* **Detector state** is the ``checkpoints`` table, backed by the checkpoint
  topic as its changelog: per partition *p*, the engine's snapshot (chunked)
  and the input offsets it covers, written to changelog partition *p*. Faust
  recovers the table before the streams of a (re)assigned partition start;
  the engine is restored from it at the partition's first record.
* **Offsets**: the input topics are consumed with acks off, so Faust never
  commits them on its own. A partition's offsets are committed only after
  its checkpoint is written, itself only after the alerts and dead letters
  of the records it covers are produced. A restarted worker, or the new
  owner of a moved partition, resumes from the checkpoint; records between
  the checkpoint and the crash are processed again and give the same alerts
  with the same ids and revisions (the alerts topic is compacted by id and
  the store keeps the highest revision), and records the checkpoint already
  covers are skipped.
* **The alert store** is written through :class:`StoreGuard`: a store that
  is down holds back checkpoints and offset commits (never the alerts topic)
  and is retried with an exponential backoff; its alerts are kept meanwhile.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import math
import os
import shutil
import signal
import tempfile
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import msgspec

from fundflow.detectors import Config, Engine
from fundflow.detectors.metrics import AlertReporter, Metrics, NullMetrics
from fundflow.detectors.reference import Reference
from fundflow.schemas.decode import DeadLetter, RecordDecoder
from fundflow.schemas.records import Alert, ClearingTxn, CustodyTxn, ReserveReport
from fundflow.store import StoreError

from . import engines
from .checkpoint import (
    NO_KEY,
    Checkpoint,
    CheckpointError,
    compress_state,
    decode_checkpoint,
    encode_compressed,
    seal,
)
from .delivery import batch_transport_class
from .merge import PartitionMerge
from .settings import KafkaSettings
from .topics import INPUT_KINDS, REFERENCE_KINDS, TopicNames, partition_for

log = logging.getLogger("fundflow.worker")

READY_LINE = "fundflow worker ready"
#: Tries to start the Faust app before giving up (see Worker.run).
START_ATTEMPTS = 3
START_ATTEMPT_ENV = "FUNDFLOW_WORKER_START_ATTEMPT"
#: A warning when a partition's queue in the merge grows beyond this.
MAX_BUFFERED = 50_000
_DEAD_KEY = -(1 << 62)  # dead letters leave the merge first


class WorkerError(Exception):
    """A start-up problem for the user (one line): missing topics, bad setup."""


def start_attempt() -> int:
    """This process's start attempt (1 unless a failed start re-ran it)."""
    try:
        return max(1, int(os.environ.get(START_ATTEMPT_ENV, "1")))
    except ValueError:
        return 1


def _faust():
    try:
        import faust  # noqa: PLC0415
    except ImportError:
        raise WorkerError("the worker needs faust-streaming: pip install faust-streaming") from None
    return faust


def _where(names: TopicNames, short: str, st: PartitionState, offset: int) -> str:
    """``topic/partition@offset`` of an input record (for dead letters)."""
    return f"{names.topic(short)}/{st.partition}@{offset}"


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
    saving: bool = False


class StoreGuard:
    """The alert store as the worker uses it: a write that fails does not
    stop the worker.

    A :class:`~fundflow.store.StoreError` from the sink marks the store down
    and schedules a retry after ``first`` seconds, doubling up to ``cap``. The
    alerts are kept: the sink keeps a batch it could not commit (every
    buffered sink does, see :class:`~fundflow.store.BufferedSink`), and the
    alerts that come while the store is down wait in :attr:`backlog` (they
    are not handed to the sink, which would try to commit at each call).
    :meth:`flush` is the one way back: it writes everything or reports
    ``False``; the worker checkpoints only after it returned ``True``.

    A sink not open yet (a :class:`~fundflow.store.DeferredSink` whose first
    opening found the server unreachable: ``opened`` false) starts the guard
    down, as after a failed write: the retries open it, with the same
    backoff, and the first :meth:`flush` that returns ``True`` has opened it
    and written every alert kept."""

    def __init__(
        self,
        sink: Any,
        first: float,
        cap: float,
        limit: int,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.sink = sink
        self.first = first
        self.cap = cap
        self.limit = limit
        self.clock = clock
        self.backlog: list[Alert] = []
        self.delay = 0.0  # the last retry delay; 0 while the store is up
        self.retry_at: float | None = None  # set while the store is down
        self.failures = 0
        if getattr(sink, "opened", True) is False:
            self._failed(sink.error, "at start")

    @property
    def down(self) -> bool:
        return self.retry_at is not None

    @property
    def pending(self) -> int:
        """Alerts not yet committed to the store."""
        return len(self.backlog) + getattr(self.sink, "pending", 0)

    @property
    def full(self) -> bool:
        """The store is down and ``limit`` alerts wait for it."""
        return self.down and self.pending >= self.limit

    def upsert(self, alerts: list[Alert]) -> None:
        if self.down:
            self.backlog.extend(alerts)
            return
        try:
            self.sink.upsert(alerts)
        except StoreError as e:
            self._failed(e)

    def flush(self) -> bool:
        """Writes every alert kept; ``False`` when the store is down (the
        retry not due yet, or failed again)."""
        if self.retry_at is not None and self.clock() < self.retry_at:
            return False
        try:
            if self.backlog:
                backlog, self.backlog = self.backlog, []
                self.sink.upsert(backlog)  # what a failure leaves stays in the sink
            self.sink.flush()
        except StoreError as e:
            self._failed(e)
            return False
        if self.retry_at is not None:
            log.warning("alert store back after %d failed attempts; every kept alert written",
                        self.failures)  # fmt: skip
        self.retry_at = None
        self.delay = 0.0
        self.failures = 0
        return True

    def _failed(self, e: Exception, when: str = "") -> None:
        self.failures += 1
        self.delay = self.first if self.delay <= 0 else min(self.delay * 2, self.cap)
        self.retry_at = self.clock() + self.delay
        log.warning(
            "alert store unavailable%s (%s): %d alerts kept, no checkpoint until they are "
            "written; retry in %g s",
            f" {when}" if when else "", e, self.pending, self.delay,
        )  # fmt: skip

    def close(self) -> int:
        """A last attempt to write what is kept (due or not), then the sink
        is closed; returns how many alerts could not be written."""
        self.retry_at = None
        self.flush()
        left = self.pending
        with contextlib.suppress(StoreError):  # reported by the flush above
            self.sink.close()
        return left

    def status(self) -> str:
        """``ok``, or ``unavailable (retry in N s)``."""
        if self.retry_at is None:
            return "ok"
        return f"unavailable (retry in {max(0, math.ceil(self.retry_at - self.clock()))} s)"


class Worker:
    """Runs until SIGTERM or, in drain mode, until every assigned input
    partition is consumed to its end offset."""

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
        restart: Callable[[int], None] | None = None,
        checkpoint_key: bytes | None = None,
    ) -> None:
        self.settings = settings
        # Signs the checkpoints this worker writes and verifies those it
        # restores (streams/checkpoint.py); run() refuses to start without it.
        self.checkpoint_key = checkpoint_key
        # Starts start-up attempt n in a fresh process (the command line's
        # shell does it; None: a failed start is the exit code).
        self.restart = restart
        # Reported through the pure protocol (the shell supplies the
        # Prometheus adapter): counters once a second from what the worker
        # already counts, one call per alert and per dead letter.
        self.metrics: Metrics = metrics if metrics is not None else NullMetrics()
        self._alert_reporter = AlertReporter(self.metrics)
        self._reported: dict[str, int] = {"accepted": 0, "duplicates": 0}
        self._records_by: dict[tuple[str, str], int] = {}
        self._last_event_ms = -1
        self.config = config
        self.sink = sink
        # Writes to the store go through the guard: a store that is down
        # holds back checkpoints, not the worker.
        self.store = (
            StoreGuard(
                sink,
                settings.store_retry_seconds,
                settings.store_retry_max_seconds,
                settings.store_buffer_limit,
            )
            if sink is not None
            else None
        )
        self.drain = drain
        # What asked for the drain, for the log line of the stop that ends it.
        self.drain_cause = "--drain-and-exit" if drain else None
        self.expect_partitions = expect_partitions
        self.on_ready = on_ready
        self.names = TopicNames(settings.namespace)
        self.inputs = self.names.inputs()  # full -> short
        self.decoder = RecordDecoder(config.engine.zone)
        self.zone = ZoneInfo(config.engine.zone)
        # Shared by the partitions' engines; no detector reads entity names there.
        self.ref = Reference(names=False)
        self.ref_log: list[tuple[int, int, Any]] = []  # (partition, offset, record)
        self.ref_seen: dict[int, int] = {}  # reference partition -> next offset
        self._early_dead: list[tuple[bytes, bytes]] = []
        self.parts: dict[int, PartitionState] = {}
        self.ready = False
        self.stats: dict[str, Any] = {
            "records": 0,
            "reference_records": 0,
            "alerts": 0,
            "dead_letters": {},
            "checkpoints": 0,
            "last_snapshot_ms": 0.0,
            "last_snapshot_total_ms": 0.0,
            "last_snapshot_bytes": 0,
            "finished_partitions": 0,
            "skipped": 0,
            "gaps": 0,
        }
        self._encode = msgspec.json.encode
        self._report_ms: dict[str, int] = {}
        self._warned: set[Any] = set()
        self._subject_partition: dict[str, int] = {}
        self._next: dict[Any, int] = {}  # input tp -> next offset to take in
        self._start: dict[Any, int] = {}  # input tp -> log start, for partitions with no checkpoint
        self._seeks: dict[Any, int] = {}  # input tp -> offset to read again from
        self._seeking: dict[Any, tuple[int, float]] = {}  # input tp -> (offset, when asked)
        self._moved: dict[Any, float] = {}  # input tp -> when its last record was taken in
        self._watched_at = 0.0
        self._progress_at = 0.0
        self._end: dict[Any, int] = {}  # input tp -> end offset last asked for
        self._assigned: set[int] = set()
        self._assigned_at = 0.0
        self._finishing = False
        self.n_partitions = 1
        self.app: Any = None
        self.faust_worker: Any = None
        self.datadir: str | None = None  # the app's folder; snapshot files
        self._saves: set[Any] = set()  # checkpoints being taken in the background
        self.exit_code = 0

    # -- life cycle ------------------------------------------------------------

    def run(self) -> int:
        if self.checkpoint_key is None:
            # An unkeyed worker could neither trust the checkpoints it reads
            # (pickles: code) nor sign those it writes.
            raise WorkerError(NO_KEY)
        faust = _faust()
        self._check_topics()
        self.preload_reference()
        datadir = self.datadir = tempfile.mkdtemp(prefix="fundflow-worker-")
        attempt = start_attempt()
        watchdog = threading.Timer(
            self.settings.start_timeout_seconds, self._start_timed_out, args=(attempt,)
        )
        watchdog.daemon = True
        watchdog.start()
        try:
            self._start_app(faust, datadir)
            watchdog.cancel()
            if not self.ready and self.exit_code and attempt < START_ATTEMPTS:
                # Faust's services can race at start-up on a loaded machine.
                # Nothing was consumed yet: start again in a fresh process (a
                # second app in this one would inherit the first one's
                # threads and loops).
                log.warning(
                    "the Faust app failed before it was ready (attempt %d of %d); "
                    "starting it again",
                    attempt,
                    START_ATTEMPTS,
                )
                if self.restart is not None:
                    shutil.rmtree(datadir, ignore_errors=True)
                    self.restart(attempt + 1)
        finally:
            shutil.rmtree(datadir, ignore_errors=True)
            if self.store is not None and self.store.close():
                log.error(
                    "%d alerts not written to the alert store: no checkpoint covers "
                    "them, a restart produces them again",
                    self.store.pending,
                )
                self.exit_code = self.exit_code or 1
            log.info(
                "fundflow worker stopped: %d records, %d alert revisions, %d checkpoints",
                self.stats["records"],
                self.stats["alerts"],
                self.stats["checkpoints"],
            )
        return self.exit_code

    def _start_timed_out(self, attempt: int) -> None:
        """The start-up watchdog (a thread): Faust is not ready in time."""
        if self.ready:
            return
        timeout = self.settings.start_timeout_seconds
        if attempt < START_ATTEMPTS and self.restart is not None:
            log.warning(
                "the Faust app is not ready %.0f s after its start (attempt %d of %d); "
                "starting it again",
                timeout,
                attempt,
                START_ATTEMPTS,
            )
            self.restart(attempt + 1)
        else:
            log.error("the Faust app is not ready %.0f s after its start; still waiting", timeout)

    def _start_app(self, faust: Any, datadir: str) -> None:
        # The app is built on the loop it runs on: subscribing the input
        # topics at build time creates futures bound to it.
        loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)
        self.app = _build_app(faust, self, datadir, loop)
        self.faust_worker = _worker_class(faust)(
            self.app,
            fundflow=self,
            loglevel=logging.getLevelName(logging.getLogger().level),
            override_logging=False,
            redirect_stdouts=False,
            quiet=True,
            loop=loop,
        )
        # Faust's start-up spinner writes terminal escapes into the log.
        self.faust_worker.spinner = None
        try:
            self.faust_worker.execute_from_commandline()
        except SystemExit as e:
            code = e.code if isinstance(e.code, int) else 1
            if code and not self.exit_code:
                self.exit_code = code

    def _check_topics(self) -> None:
        """Missing or mismatched topics are a one-line error before Faust starts."""
        try:
            from kafka import KafkaConsumer  # noqa: PLC0415
        except ImportError:
            raise WorkerError("the worker needs kafka-python: pip install kafka-python") from None
        consumer = KafkaConsumer(enable_auto_commit=False, **self.settings.client_options())
        try:
            existing = consumer.topics()
            missing = [t for t in self.names.all() if t not in existing]
            if missing:
                raise WorkerError(
                    f"missing topics {', '.join(missing)}: run `fundflow topics create` "
                    f"with the same --namespace first"
                )
            table_topics = [*self.inputs, self.names.checkpoints]
            counts = {t: len(consumer.partitions_for_topic(t) or ()) for t in table_topics}
            if len(set(counts.values())) != 1:
                raise WorkerError(
                    "input and checkpoint topics must have one partition count "
                    "(co-partitioned), got " + ", ".join(f"{t} {n}" for t, n in counts.items())
                )
            ref_parts = len(consumer.partitions_for_topic(self.names.reference) or ())
            if ref_parts != 1:
                raise WorkerError(
                    f"{self.names.reference} must have one partition (a global table), "
                    f"has {ref_parts}"
                )
            n = next(iter(counts.values()))
            self.n_partitions = n
            if self.expect_partitions is not None and n != self.expect_partitions:
                raise WorkerError(
                    f"input topics have {n} partitions, --partitions says {self.expect_partitions}"
                )
        finally:
            consumer.close()

    async def stop_gracefully(self) -> None:
        """SIGTERM: checkpoint every partition (alerts flushed first), then stop."""
        for st in list(self.parts.values()):
            if not await self._checkpoint(st, force=True):
                log.warning(
                    "partition %d: no final checkpoint, the alert store is down; its records "
                    "since the last one are processed again on restart",
                    st.partition,
                )
        self.parts.clear()

    async def wait_for_store(self) -> None:
        """Holds an agent while the alert store is down and already keeps
        ``store_buffer_limit`` alerts (the periodic tick retries it)."""
        if self.store is None or not self.store.full:
            return
        log.warning(
            "%d alerts wait for the alert store: input paused until it is back",
            self.store.pending,
        )
        while self.store.full:
            await asyncio.sleep(0.1)

    def start_draining(self, sig: signal.Signals) -> None:
        """Signal ``sig`` (SIGUSR1) asks for a drain: finish and stop once
        every assigned input partition is consumed to its end."""
        log.info(
            "signal %s: draining: finishing once every assigned partition is consumed to its end",
            sig.name,
        )
        if self.drain_cause is None:
            self.drain_cause = f"signal {sig.name}"
        self.drain = True

    # -- reference data (the global table) ---------------------------------------

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
        rec = self.decoder.decode(value)
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

    def stream_end(self, tail: int = 64) -> int:
        """The latest event time among the last ``tail`` records of every
        partition of the transaction topics, held here or not (-1 when there
        is none): the end a drain finishes its partitions at, so that workers
        draining their own partitions state idle money and open days as of
        one time. Each record is decoded and only transactions count, by
        their own time (a record the producer could not read carries its
        send time as its Kafka timestamp). Gives up after 30 s with what it
        has read."""
        from kafka import KafkaConsumer, TopicPartition  # noqa: PLC0415

        consumer = KafkaConsumer(enable_auto_commit=False, **self.settings.client_options())
        end = -1
        try:
            tps = [
                TopicPartition(topic, p)
                for topic, short in self.inputs.items()
                if short != "reports"
                for p in sorted(consumer.partitions_for_topic(topic) or ())
            ]
            if not tps:
                return end
            consumer.assign(tps)
            ends = consumer.end_offsets(tps)
            begins = consumer.beginning_offsets(tps)
            left = {}
            for tp in tps:
                start = max(begins[tp], ends[tp] - tail)
                if start < ends[tp]:
                    consumer.seek(tp, start)
                    left[tp] = ends[tp]
                else:
                    consumer.pause(tp)
            decode = RecordDecoder(self.zone.key).decode  # its own: this runs in a thread
            deadline = time.monotonic() + 30.0
            while time.monotonic() < deadline and any(
                consumer.position(tp) < stop for tp, stop in left.items()
            ):
                for tp, batch in consumer.poll(timeout_ms=1000).items():
                    for m in batch:
                        if m.offset >= left[tp]:
                            continue
                        rec = decode(m.value)
                        if (type(rec) is CustodyTxn or type(rec) is ClearingTxn) and rec.ts > end:
                            end = rec.ts
                    if consumer.position(tp) >= left[tp]:
                        consumer.pause(tp)
        finally:
            consumer.close()
        return end

    def on_recovered(self) -> None:
        self.send_early_dead_letters()
        if not self.ready:
            self.ready = True
            log.info("%s: %d reference records", READY_LINE, len(self.ref_log))
            if self.on_ready is not None:
                self.on_ready()

    # -- partitions come and go -----------------------------------------------------

    def on_assigned(self, assigned: Iterable[Any]) -> None:
        numbers = {tp.partition for tp in assigned if tp.topic in self.inputs}
        for p in set(self.parts) - numbers:
            self._drop(p)
        self._assigned = numbers
        self._assigned_at = time.monotonic()

    def on_revoked(self, revoked: Iterable[Any]) -> None:
        """A revoked partition is not checkpointed: its new owner may already
        have read the table. It resumes from the last periodic checkpoint and
        repeats what followed: the same records give the same alerts."""
        for p in {tp.partition for tp in revoked if tp.topic in self.inputs}:
            self._drop(p)
            self._assigned.discard(p)

    def _drop(self, p: int) -> None:
        st = self.parts.pop(p, None)
        if st is not None:
            st.merge.clear()
        for table in (self._next, self._start, self._seeks, self._seeking, self._moved):
            for tp in [tp for tp in table if tp.partition == p]:
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
            # or written by someone else): nothing of it was unpickled. Rebuild
            # the partition from the start of its topics rather than refuse to run.
            log.error("%s; rebuilding partition %d from the start of its topics", e, p)
            cp = None
        engine = engines.new_engine(self.config, self.ref)
        if cp is not None:
            try:
                engines.restore(engine, cp.state, self.ref)
            except Exception as e:  # noqa: BLE001 - a snapshot of another version
                # Detector state written by an older version that this one
                # cannot read: rebuild the partition from its topics' start.
                log.error(
                    "partition %d: checkpoint generation %d cannot be restored (%s: %s); "
                    "rebuilding from the start of its topics",
                    p, cp.generation, type(e).__name__, e,
                )  # fmt: skip
                cp = None
                engine = engines.new_engine(self.config, self.ref)
        if cp is not None:
            st = PartitionState(p, engine, PartitionMerge(), dict(cp.offsets), {}, cp.generation)
            st.finished = cp.finished
            ref_from = dict(cp.ref_offsets)
            how = f"checkpoint generation {cp.generation}, offsets {cp.offsets}"
        else:
            st = PartitionState(p, engine, PartitionMerge(), {}, {})
            ref_from = {}
            how = "no checkpoint"
        for rp, off, rec in self.ref_log:
            if off >= ref_from.get(rp, 0):
                engines.feed_reference(engine, rec)
        st.ref_offsets = dict(self.ref_seen)
        self.parts[p] = st
        log.info("partition %d assigned (%s)", p, how)
        return st

    def checkpoint_rows(self, p: int) -> dict[str, bytes]:
        prefix = str(p)
        rows: dict[str, bytes] = {}
        for key, value in self.table.data.items():
            k = key.decode() if isinstance(key, bytes) else str(key)
            if k == prefix or k.startswith(prefix + "/"):
                rows[k] = value
        return rows

    # -- records ----------------------------------------------------------------------

    def ingest(self, short: str, tp: Any, records: list[Any]) -> None:
        """A fetched run of one input partition (aiokafka records, offsets
        ascending): decoded, queued in its partition's merge."""
        if tp not in self.app.consumer.assignment() or not self.app.tables.actives_ready:
            # Fetched before a rebalance took the partition away, or queued
            # while one recovers the tables: read again after it.
            return
        decode = self.decoder.decode
        kinds = INPUT_KINDS[short]
        kind = kinds[0] if len(kinds) == 1 else None
        expected = self._next
        p = tp.partition
        self._assigned.add(p)
        st = self._state(p)
        push = st.merge.push
        took = False
        for m in records:
            offset = m.offset
            want = expected.get(tp)
            if want is None:
                want = st.offsets.get(short)
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
            took = True
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
            elif t is ReserveReport:
                key = self._report_time(rec.as_of)
            else:
                key = rec.as_of
            ts = m.timestamp
            push(short, key, offset, rec, ts if ts is not None and ts > 0 else -1)
        if not took:
            return
        self._moved[tp] = time.monotonic()
        queued = len(st.merge.queues[short])
        if queued > MAX_BUFFERED and tp not in self._warned:
            self._warned.add(tp)
            log.warning(
                "%s/%d: %d records wait in the merge for another input of the partition",
                tp.topic, p, queued,
            )  # fmt: skip
        self.release(st)

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
        got = st.offsets.get(self.inputs[tp.topic])
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
        tp_of = self._tp
        caught = {
            short
            for full, short in self.inputs.items()
            if not merge.queues[short] and self._caught_up(tp_of(full, st.partition), st)
        }
        if self._process(st, merge.pop_ready(caught)):
            st.finished = False

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

    def release_held(self, st: PartitionState) -> None:
        """Records queued while the reference topic was behind: released
        once it is read to its end."""
        engine = st.engine
        if not engine.holding or not self._reference_read():
            return
        engine.holding = False
        self._emit_released(st, engine.release_ready())

    def _emit_released(self, st: PartitionState, alerts: list[Alert]) -> None:
        if alerts:
            alerts = self._owned(alerts, st.partition)
            if alerts:
                self._emit(alerts)
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
        for full in self.inputs:
            tp = self._tp(full, st.partition)
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
                self._dead_letter(rec, _where(names, short, st, offset), names.topic(short))
                continue
            where = _where(names, short, st, offset)
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
                    names.topic(short),
                )
                continue
            if alerts:
                alerts = self._owned(alerts, st.partition)
                if alerts:
                    self._emit(alerts, ts)
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
                p = part[a.subject_id] = partition_for(a.subject_id, self.n_partitions)
            if p == partition:
                kept.append(a)
        return kept

    def _emit(self, alerts: list[Alert], source_ts: int = -1) -> None:
        topic = self.alerts_topic
        headers = [("source_ts", str(source_ts).encode())] if source_ts >= 0 else None
        encode = self._encode
        for a in alerts:
            topic.send_soon(key=a.alert_id.encode(), value=encode(a), headers=headers)
            self._alert_reporter.report(a)
        self.stats["alerts"] += len(alerts)
        if self.store is not None:
            self.store.upsert(alerts)

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

    # -- checkpoints --------------------------------------------------------------------

    async def maybe_checkpoint(self) -> None:
        """Starts the checkpoints that are due, in the background: records
        keep flowing while a snapshot is taken and written (one at a time
        per partition)."""
        now = time.monotonic()
        s = self.settings
        for st in list(self.parts.values()):
            if st.saving:
                continue
            if st.since_checkpoint >= s.checkpoint_records or (
                st.since_checkpoint and now - st.checkpointed_at >= s.checkpoint_seconds
            ):
                st.saving = True  # claimed before the task runs
                task = asyncio.ensure_future(self._background_checkpoint(st))
                self._saves.add(task)
                task.add_done_callback(self._saves.discard)

    async def _background_checkpoint(self, st: PartitionState) -> None:
        st.saving = False
        try:
            await self._checkpoint(st)
        except Exception:  # noqa: BLE001 - the next one is tried at the next tick
            log.exception("checkpoint of partition %d failed", st.partition)

    async def _snapshot(self, st: PartitionState, cp: Checkpoint) -> tuple[bytes, str]:
        """The engine's snapshot as it is now, compressed, and its HMAC as the
        state of ``cp`` (:func:`seal`).

        Pickling and compressing a large engine takes seconds, and the
        event loop would stand still meanwhile (every record waits: that was
        the p99 latency). So a forked child does it on its copy-on-write
        image of the engine, writes the result to a file and exits, while
        this process goes on taking records; the snapshot is the state at
        the fork, with the offsets read just before it. Where ``fork`` is
        missing, or the child fails, it is done here."""
        t0 = time.perf_counter()

        key = self.checkpoint_key
        assert key is not None

        def take() -> tuple[bytes, str]:
            blob = compress_state(engines.snapshot(st.engine, self.ref))
            return blob, seal(cp, blob, key)

        if not hasattr(os, "fork") or self.datadir is None:
            out = take()
            self.stats["last_snapshot_ms"] = round(1000 * (time.perf_counter() - t0), 1)
            return out
        path = os.path.join(self.datadir, f"snapshot-{st.partition}-{st.generation}")
        pid = os.fork()
        if pid == 0:  # the child: pickle, compress, write, leave without any cleanup
            code = 1
            try:
                # Signals are the parent's business (asyncio's wakeup fd is shared).
                signal.set_wakeup_fd(-1)
                for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGUSR1):
                    signal.signal(sig, signal.SIG_DFL)
                gc.disable()
                blob, mac = take()
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
                view = memoryview(mac.encode() + blob)
                while view:
                    view = view[os.write(fd, view) :]
                os.close(fd)
                code = 0
            finally:
                os._exit(code)
        # The event loop stood still only for the fork.
        self.stats["last_snapshot_ms"] = round(1000 * (time.perf_counter() - t0), 1)
        loop = asyncio.get_running_loop()
        try:
            _, status = await loop.run_in_executor(None, os.waitpid, pid, 0)
            if status != 0:
                raise OSError(f"snapshot child exited with status {status}")
            with open(path, "rb") as f:
                data = await loop.run_in_executor(None, f.read)
            return data[64:], data[:64].decode()
        except OSError as e:
            log.warning(
                "partition %d: snapshot in a child failed (%s); taking it here", st.partition, e
            )
            return take()
        finally:
            with contextlib.suppress(OSError):
                os.unlink(path)

    async def _checkpoint(self, st: PartitionState, force: bool = False) -> bool:
        """Saves the partition's state, then commits the offsets it covers;
        ``False`` when the alert store is down (no checkpoint, nothing committed).

        The snapshot is taken first, at once with the offsets it covers; the
        alerts and dead letters of those records were queued before it, and
        are produced (and the store flushed) before the checkpoint is
        written: a checkpoint never covers a record whose output could still
        be lost."""
        while force and st.saving:
            await asyncio.sleep(0.01)  # the final checkpoint waits for one in flight
        if st.saving or (not force and not st.since_checkpoint):
            return True
        if self.store is not None and not self.store.flush():
            # The snapshot would cover alerts the store does not have yet.
            return False
        st.saving = True
        try:
            t0 = time.perf_counter()
            st.generation += 1
            offsets, ref_offsets, finished = dict(st.offsets), dict(st.ref_offsets), st.finished
            covered, st.since_checkpoint = st.since_checkpoint, 0
            cp = Checkpoint(
                partition=st.partition,
                generation=st.generation,
                offsets=offsets,
                ref_offsets=ref_offsets,
                state=b"",  # stored compressed: blob
                finished=finished,
            )
            blob, mac = await self._snapshot(st, cp)
            self.stats["last_snapshot_bytes"] = len(blob)
            self.stats["last_snapshot_total_ms"] = round(1000 * (time.perf_counter() - t0), 1)
            await self.app.producer.flush()
            if self.store is not None:
                # Alerts of records taken in since the snapshot (those it
                # covers were written above): a failure here is retried later.
                self.store.flush()
            if self.parts.get(st.partition) is not st:
                # Revoked meanwhile: its new owner may already have read the table.
                return True
            futures = []
            for key, value in encode_compressed(cp, blob, mac):
                k = key.encode()
                self.table.data[k] = value
                futures.append(self.table.send_changelog(st.partition, k, value))
            await self.app.producer.flush()
            for fut in futures:
                await asyncio.wait_for(asyncio.shield(fut), timeout=60)
            commit = {
                self._tp(full, st.partition): st_off
                for full, short in self.inputs.items()
                if (st_off := cp.offsets.get(short)) is not None
            }
            if commit and st.partition in self._assigned:
                try:
                    await self.app.consumer._commit(commit)
                except Exception as e:  # noqa: BLE001 - the checkpoint is what counts
                    log.warning("offset commit failed (the checkpoint holds the offsets): %s", e)
            st.checkpointed_at = time.monotonic()
            self.stats["checkpoints"] += 1
            log.debug(
                "checkpoint partition %d generation %d covering %d records, offsets %s (%.1f ms)",
                st.partition,
                st.generation,
                covered,
                cp.offsets,
                1000 * (time.perf_counter() - t0),
            )
            return True
        finally:
            st.saving = False

    # -- draining ---------------------------------------------------------------------------

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
        tps = [tp for tp in consumer.assignment() if tp.topic in self.inputs]
        for p in {tp.partition for tp in tps} - set(self.parts):
            # Its checkpoint is recovered: know its offsets before any record.
            self._state(p)
        new = [tp for tp in tps if tp not in self._next and tp not in self._start]
        if new:
            st_of = {tp: self.parts.get(tp.partition) for tp in new}
            unknown = [
                tp for tp in new
                if st_of[tp] is None or self.inputs[tp.topic] not in st_of[tp].offsets
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
                st = self.parts.get(tp.partition)
                short = self.inputs[tp.topic]
                want = st.offsets.get(short) if st is not None else None
                if want is None:
                    want = self._start.get(tp)
            if want is None or want >= end:
                continue
            since = self._moved.setdefault(tp, now)
            if now - since >= 3.0:
                self._seeks[tp] = want
                self._moved[tp] = now
        await self.seek_gaps()

    async def tick(self) -> None:
        """Every ``batch_ms``: release what waited, checkpoints, draining."""
        self.release_all()
        store = self.store
        # The store's retry, once it is due.
        store_down = store is not None and store.down and not store.flush()
        if self.ready:
            await self.watch_stalls()
        await self.maybe_checkpoint()
        if (
            self.drain
            and self.ready
            and not self._finishing
            and not store_down
            and await self._drained()
        ):
            self._finishing = True
            if await self._finish_all():
                self.faust_worker.shutdown_soon()
            else:
                self._finishing = False  # the store went down: finish once it is back

    async def refresh_ends(self) -> None:
        """End offsets of the assigned inputs (a request to the broker; the
        fetcher's high watermarks are used when they are newer)."""
        tps = [tp for tp in self.app.consumer.assignment() if tp.topic in self.inputs]
        if tps:
            ends = await self.app.consumer.highwaters(*tps)
            self._end.update({tp: v for tp, v in ends.items() if v is not None})

    async def _drained(self) -> bool:
        """Every assigned input partition consumed to its end offset and
        nothing waiting in a merge."""
        if not self.app.tables.actives_ready:
            return False  # a rebalance is recovering the tables
        if any(len(st.merge) for st in self.parts.values()):
            return False
        tps = [tp for tp in self.app.consumer.assignment() if tp.topic in self.inputs]
        if not tps:
            # More workers than partitions: nothing to drain, once the
            # assignment has been empty for a while (not just between two
            # rebalances).
            return bool(self._assigned_at) and time.monotonic() - self._assigned_at > 5.0
        await self.refresh_ends()
        for tp in tps:
            st = self.parts.get(tp.partition)
            end = self._end.get(tp)
            if end is None:
                return False
            consumed = self._next.get(tp)
            if consumed is None:
                consumed = st.offsets.get(self.inputs[tp.topic], 0) if st is not None else 0
                if consumed < end and end > 0:
                    earliest = await self.app.consumer.earliest_offsets(tp)
                    if earliest.get(tp, 0) < end:
                        return False
            elif consumed < end:
                return False
        for p in {tp.partition for tp in tps}:
            self._state(p)
        log.info(
            "consumed to the end: %s",
            ", ".join(f"{tp.topic}/{tp.partition}@{self._end[tp]}" for tp in sorted(tps)),
        )
        return True

    async def _finish_all(self) -> bool:
        """The end of the stream (drain mode): settle what waits for time;
        ``False`` when a checkpoint had to wait for the alert store."""
        saved = True
        # One end for every partition held: what each holds is released,
        # then each is finished as of the last event time any of them has
        # seen, so idle money and open days are stated as of one time, as
        # one engine would state them.
        for st in list(self.parts.values()):
            if not st.finished:
                alerts = self._owned(st.engine.release(), st.partition)
                if alerts:
                    self._emit(alerts)
        end = max((st.engine.now for st in self.parts.values()), default=-1)
        end = max(end, await asyncio.to_thread(self.stream_end))
        for st in list(self.parts.values()):
            if not st.finished:
                alerts = self._owned(st.engine.finish(end), st.partition)
                if alerts:
                    self._emit(alerts)
                st.finished = True
                self.stats["finished_partitions"] += 1
            saved = await self._checkpoint(st, force=True) and saved
        if not saved:
            return False
        log.info(
            "drained: every assigned partition consumed to its end; finished "
            "(processed %d, offsets %s)",
            self.stats["records"],
            {p: st.offsets for p, st in self.parts.items()},
        )
        return True

    # -- metrics ---------------------------------------------------------------------------

    def report_metrics(self) -> None:
        """Counter increments since the last report, lag and state size."""
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
        if self.app is not None:
            for p, st in list(self.parts.items()):
                for full in self.inputs:
                    tp = self._tp(full, p)
                    end = self._highwater(tp)
                    if end is not None:
                        m.consumer_lag(full, p, max(0, end - self._consumed(tp, st)))

    def maybe_log_progress(self) -> None:
        now = time.monotonic()
        if now - self._progress_at >= 10.0:
            self._progress_at = now
            self.log_progress()

    def log_progress(self) -> None:
        """Every 10 s: what was processed, and what waits in the merges."""
        waiting = {
            p: {short: len(q) for short, q in st.merge.queues.items() if q}
            for p, st in self.parts.items()
            if len(st.merge)
        }
        behind = {
            f"{tp.topic}/{tp.partition}": f"{got}/{self._highwater(tp)}"
            for tp, got in self._next.items()
        }
        c = self.app.consumer
        log.debug(
            "assignment %s; active %s; paused %s; buffered %s",
            sorted(c.assignment()),
            sorted(getattr(c, "_active_partitions", None) or ()),
            sorted(c._paused_partitions) if hasattr(c, "_paused_partitions") else None,
            sorted(getattr(c, "_buffered_partitions", ())),
        )
        idle = sorted(
            f"{tp.topic}/{tp.partition}@{self._end.get(tp)}"
            for tp in c.assignment()
            if tp.topic in self.inputs and tp not in self._next
        )
        log.info(
            "processed %d records, %d alert revisions; waiting in merges %s; read %s; "
            "nothing read yet from %s",
            self.stats["records"],
            self.stats["alerts"],
            waiting or "none",
            behind,
            idle or "none",
        )

    def _assigned_now(self) -> list[int]:
        if self.app is None:
            return []
        try:
            tps = self.app.consumer.assignment()
        except Exception:  # noqa: BLE001 - not started yet
            return []
        return sorted({tp.partition for tp in tps if tp.topic in self.inputs})

    # -- health ---------------------------------------------------------------------------

    def health(self) -> dict[str, Any]:
        counts = {"accepted": 0, "duplicates": 0, "too_late": 0}
        for st in list(self.parts.values()):
            for k, v in st.engine.counts.items():
                counts[k] = counts.get(k, 0) + v
        return {
            "status": "ready" if self.ready else "starting",
            "namespace": self.settings.namespace,
            "assigned_partitions": self._assigned_now(),
            "records": self.stats["records"],
            "reference_records": self.stats["reference_records"],
            "alert_revisions": self.stats["alerts"],
            "dead_letters": dict(self.stats["dead_letters"]),
            "checkpoints": self.stats["checkpoints"],
            "last_snapshot_ms": self.stats["last_snapshot_ms"],
            "last_snapshot_total_ms": self.stats["last_snapshot_total_ms"],
            "last_snapshot_bytes": self.stats["last_snapshot_bytes"],
            "skipped_covered_records": self.stats["skipped"],
            "refetched_gaps": self.stats["gaps"],
            "uncheckpointed_records": sum(st.since_checkpoint for st in list(self.parts.values())),
            "engine_counts": counts,
            # Records in the engines' ordering stages, not yet processed.
            "held": sum(st.engine.held for st in list(self.parts.values())),
            "reference_behind": self._reference_behind() if self.app is not None else 0,
            "offsets": {str(p): dict(st.offsets) for p, st in list(self.parts.items())},
            "draining": self.drain,
            "store": "none" if self.store is None else self.store.status(),
            "store_pending": 0 if self.store is None else self.store.pending,
        }


# -- the Faust app ---------------------------------------------------------------------


def _credentials(faust: Any, s: KafkaSettings) -> Any:
    """SASL/SSL settings as Faust credentials (``None`` for PLAINTEXT)."""
    proto = s.security_protocol.upper()
    if proto == "PLAINTEXT":
        return None
    context = None
    if proto.endswith("SSL"):
        from aiokafka.helpers import create_ssl_context  # noqa: PLC0415

        context = create_ssl_context(
            cafile=s.ssl_cafile,
            certfile=s.ssl_certfile,
            keyfile=s.ssl_keyfile,
            password=s.ssl_password,
        )
        context.check_hostname = s.ssl_check_hostname
    if proto.startswith("SASL"):
        return faust.SASLCredentials(
            username=s.sasl_username,
            password=s.sasl_password,
            ssl_context=context,
            mechanism=s.sasl_mechanism or "PLAIN",
        )
    return faust.SSLCredentials(context)


def _build_app(faust: Any, w: Worker, datadir: str, loop: Any) -> Any:
    s = w.settings
    names = w.names
    n = w.n_partitions
    brokers = [f"kafka://{b.strip()}" for b in s.bootstrap.split(",") if b.strip()]
    handlers: dict[str, Any] = {}
    ref_partitions = w.ref_seen
    floors = {names.reference: lambda tp: ref_partitions.get(tp.partition, 0)}
    app = faust.App(
        names.group,
        loop=loop,
        broker=brokers,
        broker_client_id=s.client_id,
        broker_credentials=_credentials(faust, s),
        broker_session_timeout=s.session_timeout_ms / 1000,
        broker_heartbeat_interval=max(1.0, s.session_timeout_ms / 4000),
        broker_max_poll_records=s.batch_size,
        # Nothing commits on a timer: the worker commits after checkpoints.
        broker_commit_livelock_soft_timeout=365 * 24 * 3600.0,
        consumer_auto_offset_reset="earliest",
        datadir=datadir,
        key_serializer="raw",
        value_serializer="raw",
        producer_acks=-1,
        store="memory://",
        stream_buffer_maxsize=max(4096, 2 * s.batch_size),
        stream_recovery_delay=0.0,
        stream_wait_empty=False,
        table_standby_replicas=0,
        topic_allow_declare=False,
        topic_disable_leader=True,
        topic_partitions=n,
        web_enabled=False,
    )
    # Before anything asks the app for its transport: input records reach
    # the agents a fetched batch at a time (streams/delivery.py).
    app.transport = batch_transport_class(handlers, floors)(app.conf.broker_consumer, app)

    def topic(name: str, partitions: int, acks: bool = True) -> Any:
        return app.topic(
            name,
            partitions=partitions,
            key_type=bytes,
            value_type=bytes,
            key_serializer="raw",
            value_serializer="raw",
            acks=acks,
        )

    w.alerts_topic = topic(names.alerts, n)
    w.deadletter_topic = topic(names.deadletter, 1)
    w.table = app.Table(
        "checkpoints",
        default=None,
        partitions=n,
        changelog_topic=topic(names.checkpoints, n),
        key_type=bytes,
        value_type=bytes,
    )
    reference = _reference_table_class(faust)(
        app,
        name="reference",
        default=None,
        partitions=1,
        changelog_topic=topic(names.reference, 1),
        key_type=bytes,
        value_type=bytes,
        is_global=True,
        synchronize_all_active_partitions=True,
        recovery_buffer_size=1000,
    )
    reference.worker = w
    app.tables.add(reference)

    @reference.on_recover
    async def recovered() -> None:
        w.on_recovered()

    for full, short in w.inputs.items():
        # Subscribed (the group assigns them) but fed to the agent by the
        # batch consumer, not by Faust's per-record streams.
        app.topics.add(topic(full, n, acks=False))
        handlers[full] = _add_agent(app, w, short)

    async def assigned(sender: Any, assigned: Any, **_: Any) -> None:
        w.on_assigned(assigned)

    async def revoked(sender: Any, revoked: Any, **_: Any) -> None:
        w.on_revoked(revoked)

    app.on_partitions_assigned.connect(assigned, weak=False)
    app.on_partitions_revoked.connect(revoked, weak=False)

    interval = max(0.01, s.batch_ms / 1000)

    @app.timer(interval)
    async def tick() -> None:
        try:
            await w.tick()
        except Exception:  # noqa: BLE001 - a timer that raises would stop the worker
            log.exception("periodic work failed; retrying at the next tick")

    @app.timer(1.0)
    async def metrics() -> None:
        try:
            w.report_metrics()
            w.maybe_log_progress()
        except Exception:  # noqa: BLE001
            log.exception("metrics report failed")

    return app


def _add_agent(app: Any, w: Worker, short: str) -> Any:
    """The agent of input topic ``short``: it takes the fetched batches of
    the topic's partitions from an in-memory channel. Returns the handler
    the batch consumer calls with each batch (it waits while the channel
    is full: back-pressure on the fetcher)."""
    channel = app.channel(maxsize=4)

    async def agent(stream: Any) -> None:
        async for tp, records in stream:
            await w.wait_for_store()
            await w.learn_start(tp)
            w.ingest(short, tp, records)
            await w.seek_gaps()
            await w.maybe_checkpoint()

    agent.__name__ = agent.__qualname__ = f"consume_{short}"
    app.agent(channel, name=f"fundflow.{short}", concurrency=1)(agent)

    async def handler(tp: Any, records: list[Any]) -> None:
        await channel.send(value=(tp, records))

    return handler


def _reference_table_class(faust: Any) -> type:
    class ReferenceTable(faust.GlobalTable):
        """The reference topic as a global table: its records go to the
        worker's shared :class:`Reference` (the table's store), not to a dict
        of raw bytes."""

        worker: Worker

        def _changelog_topic_name(self) -> str:
            # Faust's assignor names a global table's changelog by this
            # method, which ignores a changelog topic given to the table.
            return self.changelog_topic.get_topic_name()

        def persisted_offset(self, tp: Any) -> int | None:
            # What the worker read before Faust started (its preload) is
            # this table's persisted state: recovery reads what follows.
            seen = self.worker.ref_seen.get(tp.partition)
            return seen - 1 if seen else None

        async def on_changelog_event(self, event: Any) -> None:
            # Faust applies a table's changelog in batches of
            # recovery_buffer_size (1000) and, once the table is recovered,
            # only when a batch is full: the last records of a burst would
            # wait for the next thousand. Each is applied as it comes; the
            # batch then finds it applied.
            self.worker.apply_reference((event,))

        def apply_changelog_batch(self, batch: Iterable[Any]) -> None:
            self.worker.apply_reference(batch)

    return ReferenceTable


def _worker_class(faust: Any) -> type:
    class FundflowFaustWorker(faust.Worker):
        """Faust's worker with the fundflow shutdown: SIGTERM checkpoints
        every partition before the app stops; SIGUSR1 starts draining."""

        def __init__(self, *args: Any, fundflow: Worker, **kwargs: Any) -> None:
            self.fundflow = fundflow
            # What the stop's log line names: a signal, or a finished drain.
            self.stop_cause: str | None = None
            super().__init__(*args, **kwargs)

        def _on_sigusr1(self) -> None:
            self.fundflow.start_draining(signal.SIGUSR1)

        async def _stop_on_signal(self, sig: signal.Signals) -> None:
            cause = self.stop_cause or f"signal {sig.name}"
            if not self.fundflow.ready:
                # Nothing was consumed. Faust's stop can hang on services
                # that never finished starting: leave at once.
                log.info("%s before the worker was ready: stopping at once", cause)
                if self.fundflow.datadir is not None:
                    shutil.rmtree(self.fundflow.datadir, ignore_errors=True)
                for handler in logging.getLogger().handlers:
                    handler.flush()
                os._exit(0)
            log.info("%s: final checkpoints, then stop", cause)
            try:
                await self.fundflow.stop_gracefully()
            except Exception:  # noqa: BLE001 - stop anyway; the last checkpoint stands
                log.exception("final checkpoint failed")
                self.fundflow.exit_code = 1
            await super()._stop_on_signal(sig)

        def shutdown_soon(self) -> None:
            """The drain is done: stop as on SIGTERM, the log line naming
            what asked for the drain (unless a signal's stop came first)."""
            if not self._signal_stop_time:
                self.stop_cause = f"{self.fundflow.drain_cause or 'drain'}, input drained"
            self._schedule_shutdown(signal.SIGTERM)

    return FundflowFaustWorker
