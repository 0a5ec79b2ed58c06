"""Checkpointing: a partition's engine and the offsets it covers, saved so
that nothing is lost or done twice.

A checkpoint of partition *p* is due every ``checkpoint_records`` records or
``checkpoint_seconds`` seconds (:meth:`Checkpointing.maybe_checkpoint`) and
is taken in the background while records keep flowing, one at a time per
partition; a drain and a stop take a final one (``force``).
:meth:`Checkpointing._checkpoint` does it in this order, and the order is
the guarantee:

1. A forced checkpoint waits for one of the partition in flight; a
   periodic one leaves it, and is not taken when no record came since the
   last one.
2. Flush the alert store (:class:`~fundflow.streams.store_guard.StoreGuard`):
   while it is down no checkpoint is taken and nothing is committed, so a
   checkpoint never covers an alert the store lacks.
3. Read the offsets (inputs and reference), ``finished`` and the next
   generation, and take the engine's snapshot at once, with no record
   processed in between (:meth:`Checkpointing._snapshot`: a forked child
   snapshots, compresses and signs its copy-on-write image of the engine
   while this process goes on; where ``fork`` is missing or the child fails
   it is done here).
4. Flush the producer: the alerts and dead letters of the records the
   snapshot covers, queued before it, are now on their topics. The store is
   flushed again for the alerts of records taken in since the snapshot (a
   failure there is retried later; step 2 covered the snapshot's).
5. A partition revoked meanwhile is not written: its new owner may already
   have read the table.
6. Write the checkpoint (:mod:`~fundflow.streams.checkpoint`: chunks, two
   alternating slots, the head last) to the ``checkpoints`` table and its
   changelog partition *p*, and wait for the broker to acknowledge it.
7. Commit the input offsets the checkpoint covers, while the partition is
   still assigned (the input topics are consumed with acks off: nothing
   else commits them). A failed commit is only logged: the checkpoint holds
   the offsets.

:meth:`Checkpointing.checkpoint_rows` reads a partition's rows back for its
restore (``Partitions._state`` in :mod:`~fundflow.streams.partitions`).
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import os
import signal
import time
from typing import TYPE_CHECKING

from .checkpoint import Checkpoint, compress_state, encode_compressed, seal

if TYPE_CHECKING:
    from .partitions import PartitionState

log = logging.getLogger("fundflow.worker")


class Checkpointing:
    """Worker mixin: takes, writes and reads back checkpoints. Its state is
    the "checkpoints" part of ``Worker.__init__`` (``checkpoint_key``,
    ``_saves``); it uses the app's table, producer and consumer and the
    store guard."""

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

        Snapshotting and compressing a large engine takes seconds, and the
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
            blob = compress_state(st.engine.snapshot())
            return blob, seal(cp, blob, key)

        if not hasattr(os, "fork") or self.datadir is None:
            out = take()
            self.stats["last_snapshot_ms"] = round(1000 * (time.perf_counter() - t0), 1)
            return out
        path = os.path.join(self.datadir, f"snapshot-{st.partition}-{st.generation}")
        pid = os.fork()
        if pid == 0:  # the child: snapshot, compress, write, leave without any cleanup
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
                tp: st_off for tp, key in st.tps if (st_off := cp.offsets.get(key)) is not None
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

    def checkpoint_rows(self, p: int) -> dict[str, bytes]:
        prefix = str(p)
        rows: dict[str, bytes] = {}
        for key, value in self.table.data.items():
            k = key.decode() if isinstance(key, bytes) else str(key)
            if k == prefix or k.startswith(prefix + "/"):
                rows[k] = value
        return rows
