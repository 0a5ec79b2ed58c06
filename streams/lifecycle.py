"""The worker's life cycle: start and its retries, the periodic tick,
signals, shutdown and the drain.

* **Start** (:meth:`Lifecycle.run`): no checkpoint key, no start. The
  topics are checked (a one-line :class:`WorkerError`), the reference topic
  is read to its end, and the Faust app is built
  (:mod:`~fundflow.streams.faust_app`) and run on a fresh event loop. Faust's
  services can race while they start on a loaded machine: an app that fails
  before it is ready, or is not ready ``start_timeout_seconds`` after it
  starts (a watchdog thread), is replaced by a fresh process running the
  same command line, :data:`START_ATTEMPTS` attempts in all (nothing was
  consumed before ready: nothing is lost or repeated).
* **The tick** (:meth:`Lifecycle.tick`, every ``batch_ms``): release what
  waits, retry the alert store when due, look for stalled inputs, start the
  checkpoints that are due, and in drain mode see whether the input is
  drained.
* **Signals and stop**: the app runs in Faust's worker, extended here
  (:func:`_worker_class`: it overrides mode's ``_stop_on_signal`` and calls
  its ``_schedule_shutdown``, private functions fingerprinted in
  :mod:`~fundflow.streams.internals`). SIGTERM takes a final checkpoint of
  every partition (:meth:`Lifecycle.stop_gracefully`), or leaves at once
  before the worker is ready; SIGUSR1 asks for a drain
  (:meth:`Lifecycle.start_draining`).
* **The drain**: once every assigned input partition is consumed to its end
  offset (:meth:`Lifecycle._drained`), every partition releases what it
  holds and is finished at one end, the latest event time any partition
  has seen or the stream's own end (:meth:`Lifecycle.stream_end`), so
  idle money and open days are stated as of one time (:meth:`Lifecycle._finish_all`);
  then each is checkpointed and the worker stops.
"""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
import signal
import tempfile
import threading
import time
from typing import Any

from fundflow.detectors.engine import partitioned, whole_stream
from fundflow.schemas.decode import RecordDecoder
from fundflow.schemas.records import ClearingTxn, CustodyTxn

from .checkpoint import NO_KEY
from .faust_app import _build_app

log = logging.getLogger("fundflow.worker")

#: Tries to start the Faust app before giving up (see Lifecycle.run).
START_ATTEMPTS = 3
START_ATTEMPT_ENV = "FUNDFLOW_WORKER_START_ATTEMPT"


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


def _worker_class(faust: Any) -> type:
    class FundflowFaustWorker(faust.Worker):
        """Faust's worker with the fundflow shutdown: SIGTERM checkpoints
        every partition before the app stops; SIGUSR1 starts draining."""

        def __init__(self, *args: Any, fundflow: Lifecycle, **kwargs: Any) -> None:
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


class Lifecycle:
    """Worker mixin: start, tick, stop and drain. Its state is the "life
    cycle" part of ``Worker.__init__`` (``ready``, ``drain``, ``app``,
    ``faust_worker``, ``datadir``, ``exit_code``, ...)."""

    def run(self) -> int:
        if self.checkpoint_key is None:
            # An unkeyed worker could neither trust the checkpoints it reads
            # (state of anyone's choosing) nor sign those it writes.
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
            missing = [t for t in self.names.needed() if t not in existing]
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
            self._choose_detectors(n)
            self.n_partitions = n
            if self.expect_partitions is not None and n != self.expect_partitions:
                raise WorkerError(
                    f"input topics have {n} partitions, --partitions says {self.expect_partitions}"
                )
        finally:
            consumer.close()

    def _choose_detectors(self, n: int) -> None:
        """Which of ``[engine] detectors`` this worker runs on input topics
        of ``n`` partitions: every one on one partition; on more, those a
        key co-locates (:func:`~fundflow.detectors.engine.partitioned`),
        and the whole-stream worker the others
        (:func:`~fundflow.detectors.engine.whole_stream`)."""
        configured = self.config.engine.detectors
        whole = whole_stream(configured)
        if self.whole:
            if n == 1:
                raise WorkerError(
                    "--whole-stream is for input topics of more than one partition; on topics "
                    "of one partition `fundflow worker` runs every detector itself"
                )
            if not whole:
                raise WorkerError(
                    "none of [engine] detectors needs the whole stream (down_payment_loan, the "
                    "typologies): a whole-stream worker would run nothing"
                )
            self.detectors = whole
            log.info(
                "whole-stream worker: %s, on every partition of topics of %d",
                ", ".join(whole), n,
            )  # fmt: skip
        elif n > 1 and whole:
            self.detectors = partitioned(configured)
            if not self.detectors:
                raise WorkerError(
                    f"{', '.join(whole)} read the whole stream: on input topics of {n} "
                    "partitions they run in `fundflow worker --whole-stream`, and this worker "
                    "would run nothing"
                )
            self.elsewhere = whole
            log.warning(
                "%s read the whole stream: on topics of %d partitions they run in "
                "`fundflow worker --whole-stream`, not here",
                ", ".join(whole), n,
            )  # fmt: skip

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
                # The store went down, or partitions moved: judged again.
                self._finishing = False

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
        if self.whole and 0 not in self._assigned:
            return False  # the whole-stream worker drains once it holds every partition
        for tp in tps:
            st = self.parts.get(self._slot(tp.partition))
            end = self._end.get(tp)
            if end is None:
                return False
            consumed = self._next.get(tp)
            if consumed is None:
                consumed = st.offsets.get(self._key(tp), 0) if st is not None else 0
                if consumed < end and end > 0:
                    earliest = await self.app.consumer.earliest_offsets(tp)
                    if earliest.get(tp, 0) < end:
                        return False
            elif consumed < end:
                return False
        for p in {self._slot(tp.partition) for tp in tps}:
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
        held = dict(self.parts)
        for st in held.values():
            if not st.finished:
                self._emit(st, st.engine.release())
        end = max((st.engine.now for st in held.values()), default=-1)
        end = max(end, await asyncio.to_thread(self.stream_end))
        if self._moved_since(held):
            return False
        for st in held.values():
            if not st.finished:
                self._emit(st, st.engine.finish(end))
                st.finished = True
                self.stats["finished_partitions"] += 1
            saved = await self._checkpoint(st, force=True) and saved
        if self._moved_since(held) or not saved:
            return False
        log.info(
            "drained: every assigned partition consumed to its end; finished "
            "(processed %d, offsets %s)",
            self.stats["records"],
            {p: st.offsets for p, st in self.parts.items()},
        )
        return True

    def _moved_since(self, held: dict[int, Any]) -> bool:
        """Whether a rebalance moved partitions while ``held`` (the
        partitions a finish started with) were being finished: another
        worker leaving its group revokes every partition for a moment. The
        drain is then judged again on the new assignment (a partition
        finished and checkpointed is not finished twice; one revoked before
        its checkpoint is finished by whoever holds it next)."""
        now = self.parts
        if now.keys() == held.keys() and all(now[p] is st for p, st in held.items()):
            return False
        log.info(
            "partitions moved while finishing (%s, now %s): the drain waits for the new assignment",
            sorted(held),
            sorted(now),
        )
        return True

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
