"""Snapshot benchmark (a script, not a test): encode and decode time and
size of an engine's snapshot, against the pickle it replaced.

    .venv/bin/python tests/bench_snapshot.py [--records 1000000] [--scale 10]

A simulated world (``fundflow simulate``'s generator, ``--scale`` times
over, as many days as the record count needs) is replayed through an engine
of every default detector; its snapshot is then taken in the data-only
format and, laid out the same way, as a pickle (protocol 5, the C pickler,
as checkpoints were written up to checkpoint format 2). Each is timed as the
best of ``--repeat`` runs (decoding: reading the engine's and every
detector's blob back into objects, no engine built), and its size given as written and after zlib at
level 1 (what a checkpoint stores).
"""

from __future__ import annotations

import argparse
import pickle
import tempfile
import time
import zlib
from pathlib import Path

from bench_memory import machine

from fundflow.detectors import Engine, load_config, snapshots
from fundflow.schemas import DeadLetter, RecordDecoder
from fundflow.simulate import write_world


def _pickle_snapshot(engine: Engine) -> bytes:
    """The engine's snapshot as checkpoint format 2 held it."""
    engine._sync()
    dets = {}
    for d in engine.detectors:
        payload = {
            "state": {k: getattr(d, k) for k in d._state_names},
            "said": d.book.said,
            "waiting": d.book.waiting_state(),
            "now": d.now,
            "ref": d.ref if d._owns_ref else None,
        }
        dets[d.name] = pickle.dumps(payload, protocol=pickle.HIGHEST_PROTOCOL)
    return pickle.dumps(
        {
            "ref": None if engine._shared_ref else engine.ref,
            "dedup": (engine.dedup.watermarks, engine.dedup.seen, len(engine.dedup)),
            "counts": dict(engine.counts),
            "clock": engine.now,
            "order": engine.order,
            "waiting": engine._waiting,
            "unplaced": engine._unplaced,
            "detectors": dets,
        },
        protocol=pickle.HIGHEST_PROTOCOL,
    )


def _pickle_restore(blob: bytes) -> None:
    payload = pickle.loads(blob)  # noqa: S301 - the baseline being measured
    for det in payload["detectors"].values():
        pickle.loads(det)  # noqa: S301


def _snapshot_restore(blob: bytes) -> None:
    payload = snapshots.loads(blob)
    for det in payload["detectors"].values():
        snapshots.loads(det)


def _best(fn, repeat: int) -> tuple[float, object]:  # type: ignore[no-untyped-def]
    best, out = float("inf"), None
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t0)
    return best, out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--records", type=int, default=1_000_000)
    ap.add_argument("--scale", type=int, default=10)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    days = max(8, -(-args.records * 30 // (75_000 * args.scale)))
    engine = Engine(load_config())
    dec = RecordDecoder()
    n = 0
    with tempfile.TemporaryDirectory() as tmp:
        write_world(Path(tmp), seed=args.seed, scale=args.scale, days=days)
        with open(Path(tmp) / "world.jsonl", "rb") as f:
            for line in f:
                r = dec.decode(line)
                if type(r) is not DeadLetter:
                    engine.submit(r, "")
                    n += 1
                if n >= args.records:
                    break
    print(f"machine            {machine()}")
    print(f"world              scale {args.scale}, {days} days, {n:,} records replayed")
    subjects, accounts, edges = engine.state_size()
    print(f"state              {subjects:,} subjects, {accounts:,} accounts, {edges:,} edges")
    rows = []
    for name, enc, dec_ in (
        ("snapshot", engine.snapshot, _snapshot_restore),
        ("pickle", lambda: _pickle_snapshot(engine), _pickle_restore),
    ):
        t_enc, blob = _best(enc, args.repeat)
        t_dec, _ = _best(lambda: dec_(blob), args.repeat)  # noqa: B023
        t_zip, packed = _best(lambda: zlib.compress(blob, 1), 1)  # noqa: B023
        rows.append((name, t_enc, t_dec, len(blob), len(packed), t_zip))  # type: ignore[arg-type]
    print(
        f"{'':10} {'encode s':>9} {'decode s':>9} {'bytes':>13} {'zlib-1 bytes':>13} {'zlib s':>7}"
    )
    for name, t_enc, t_dec, size, packed, t_zip in rows:
        print(f"{name:10} {t_enc:9.3f} {t_dec:9.3f} {size:13,} {packed:13,} {t_zip:7.3f}")


if __name__ == "__main__":
    main()
