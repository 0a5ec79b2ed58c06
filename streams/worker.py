"""The always-on worker: a Faust app, input topics in, engines, alerts out.

* **Agents**, one per input topic (custody, clearing, reports), take their
  records a fetched batch at a time: the consumer hands each run of records
  aiokafka fetched for one input partition to the topic's agent whole,
  without Faust's per-record message and event path
  (:mod:`~fundflow.streams.delivery`). The three topics are
  co-partitioned: Faust's assignor hands partition *p* of all three, and
  partition *p* of the checkpoint table, to one worker, where they feed one
  :class:`~fundflow.detectors.Engine` through the event-time
  :class:`~fundflow.streams.merge.PartitionMerge`.
* **Reference data** is a ``GlobalTable`` whose changelog is the reference
  topic (compacted, one partition). Every worker holds all of it, as one
  shared :class:`~fundflow.detectors.reference.Reference`, and reads it to
  its end before its streams start; later reference records reach the
  engines as they arrive.
* **Detector state** is the ``checkpoints`` table, backed by the checkpoint
  topic as its changelog: per partition *p*, the engine's snapshot (chunked)
  and the input offsets it covers. Faust recovers the table before the
  streams of a (re)assigned partition start; the engine is restored from it
  at the partition's first record.
* **Offsets**: a partition's offsets are committed only after its
  checkpoint is written, itself only after the alerts and dead letters of
  the records it covers are produced and stored. A restarted worker, or the
  new owner of a moved partition, resumes from the checkpoint; records
  between the checkpoint and the crash are processed again and give the
  same alerts with the same ids and revisions, and records the checkpoint
  already covers are skipped.

**Layout.** :class:`Worker` is one object made of one mixin per job, each in
its own module:

=============================================  ===========================================
:mod:`~fundflow.streams.lifecycle`             start and retries, the tick, signals, stop, drain
:mod:`~fundflow.streams.partitions`            partition state and the record path
:mod:`~fundflow.streams.checkpointing`         checkpoints, their steps in order
:mod:`~fundflow.streams.store_guard`           the alert store's outages
:mod:`~fundflow.streams.reference_feed`        the reference topic into the engines
:mod:`~fundflow.streams.gaps`                  missing records read again
:mod:`~fundflow.streams.faust_app`             the Faust app, agents, tables, timers
this module                                    the state they share, metrics, health
=============================================  ===========================================

Mixins rather than collaborating objects because the jobs share one state
and call each other both ways: the record path needs the reference feed's
progress and the gap recovery's offsets, the checkpoint reads the
partitions' offsets and the store guard, the drain runs the record path and
the checkpoint. As separate objects each would hold the others and reach
into their state; as mixins every job reads the one state set up in
:meth:`Worker.__init__`, in one part per job (each mixin's docstring names
its part), and the worker keeps the names its callers and tests use. The
store guard, which needs nothing of the worker, is an object of its own.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any
from zoneinfo import ZoneInfo

import msgspec

from fundflow._core import Decoder
from fundflow.detectors import Config
from fundflow.detectors.engine import detector_names
from fundflow.detectors.metrics import AlertReporter, Metrics, NullMetrics
from fundflow.detectors.reference import Reference
from fundflow.schemas.decode import MAX_LINE_BYTES

from .checkpointing import Checkpointing
from .faust_app import _build_app
from .gaps import GapRecovery
from .lifecycle import (
    START_ATTEMPT_ENV,
    START_ATTEMPTS,
    Lifecycle,
    WorkerError,
    _worker_class,
    start_attempt,
)
from .partitions import MAX_BUFFERED, Partitions, PartitionState
from .reference_feed import READY_LINE, ReferenceFeed
from .settings import KafkaSettings
from .store_guard import StoreBackpressure, StoreGuard
from .topics import TopicNames

__all__ = [
    "MAX_BUFFERED",
    "READY_LINE",
    "START_ATTEMPTS",
    "START_ATTEMPT_ENV",
    "PartitionState",
    "StoreGuard",
    "Worker",
    "WorkerError",
    "_build_app",
    "_worker_class",
    "start_attempt",
]

log = logging.getLogger("fundflow.worker")


class Worker(Lifecycle, ReferenceFeed, Partitions, Checkpointing, GapRecovery, StoreBackpressure):
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
        whole_stream: bool = False,
    ) -> None:
        self.settings = settings
        self.config = config
        # The whole-stream worker: one engine over every input partition,
        # running the detectors that need the whole stream (its own group
        # and checkpoint table; streams/partitions.py).
        self.whole = whole_stream
        self.names = TopicNames(settings.namespace, whole=whole_stream)
        # The detectors its engines run (None: the configuration's), chosen
        # once the input topics' partition count is known.
        self.detectors: list[str] | None = None
        # The configured detectors left to the whole-stream worker (topics
        # of several partitions), for health.
        self.elsewhere: list[str] = []
        self.inputs = self.names.inputs()  # full -> short
        # The compiled decoders of the messages' values, by the kind their
        # topic gives (decode_values).
        self._decoders: dict[str | None, Decoder] = {}
        self.zone = ZoneInfo(config.engine.zone)
        self._encode = msgspec.json.encode
        # What every job counts; reported by health() and the metrics.
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

        # -- life cycle (streams/lifecycle.py) --
        # Starts start-up attempt n in a fresh process (the command line's
        # shell does it; None: a failed start is the exit code).
        self.restart = restart
        self.drain = drain
        # What asked for the drain, for the log line of the stop that ends it.
        self.drain_cause = "--drain-and-exit" if drain else None
        self.expect_partitions = expect_partitions
        self.on_ready = on_ready
        self.ready = False
        self._finishing = False
        self.n_partitions = 1
        self.app: Any = None
        self.faust_worker: Any = None
        self.datadir: str | None = None  # the app's folder; snapshot files
        self.exit_code = 0

        # -- the reference feed (streams/reference_feed.py) --
        # Shared by the partitions' engines; no detector reads entity names there.
        self.ref = Reference(names=False)
        self.ref_log: list[tuple[int, int, Any]] = []  # (partition, offset, record)
        self.ref_seen: dict[int, int] = {}  # reference partition -> next offset

        # -- partitions and the record path (streams/partitions.py) --
        self.parts: dict[int, PartitionState] = {}
        self._early_dead: list[tuple[bytes, bytes]] = []
        self._report_ms: dict[str, int] = {}
        self._warned: set[Any] = set()
        self._subject_partition: dict[str, int] = {}
        self._next: dict[Any, int] = {}  # input tp -> next offset to take in
        self._moved: dict[Any, float] = {}  # input tp -> when its last record was taken in
        self._assigned: set[int] = set()
        self._assigned_at = 0.0

        # -- checkpoints (streams/checkpointing.py) --
        # Signs the checkpoints this worker writes and verifies those it
        # restores (streams/checkpoint.py); run() refuses to start without it.
        self.checkpoint_key = checkpoint_key
        self._saves: set[Any] = set()  # checkpoints being taken in the background

        # -- gap recovery (streams/gaps.py) --
        self._start: dict[Any, int] = {}  # input tp -> log start, for partitions with no checkpoint
        self._seeks: dict[Any, int] = {}  # input tp -> offset to read again from
        self._seeking: dict[Any, tuple[int, float]] = {}  # input tp -> (offset, when asked)
        self._end: dict[Any, int] = {}  # input tp -> end offset last asked for
        self._watched_at = 0.0

        # -- the alert store (streams/store_guard.py) --
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

        # -- metrics (this module) --
        # Reported through the pure protocol (the shell supplies the
        # Prometheus adapter): counters once a second from what the worker
        # already counts, one call per alert and per dead letter.
        self.metrics: Metrics = metrics if metrics is not None else NullMetrics()
        self._alert_reporter = AlertReporter(self.metrics)
        self._reported: dict[str, int] = {"accepted": 0, "duplicates": 0}
        self._records_by: dict[tuple[str, str], int] = {}
        self._last_event_ms = -1
        self._progress_at = 0.0

    def decode_values(self, values: list[bytes | None], kind: str | None) -> list[Any]:
        """The records (or dead letters, with no source) that messages'
        ``values`` hold, in one call of the compiled decoder (the decoder of
        ``fundflow replay``, :mod:`fundflow.detectors.engine`'s
        ``process_batch``); ``kind`` is the topic's kind, when it has one."""
        dec = self._decoders.get(kind)
        if dec is None:
            dec = self._decoders[kind] = Decoder(self.config.engine.zone, MAX_LINE_BYTES, kind)
        return dec.values(values)[0]

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
            for st in list(self.parts.values()):
                for tp, _ in st.tps:
                    end = self._highwater(tp)
                    if end is not None:
                        m.consumer_lag(tp.topic, tp.partition, max(0, end - self._consumed(tp, st)))

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
            "whole_stream": self.whole,
            # The whole-stream worker: whether it holds every partition (it
            # reads nothing until it does).
            "holds_every_partition": (not self.whole) or 0 in self._assigned,
            "whole_stream_detectors_elsewhere": list(self.elsewhere),
            "detectors": (
                detector_names(self.config.engine.detectors)
                if self.detectors is None
                else self.detectors
            ),
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
