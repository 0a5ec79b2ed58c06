"""Engines that share one reference: building, snapshotting, restoring.

Every input partition has its own :class:`~fundflow.detectors.Engine`, and
all of them read one :class:`~fundflow.detectors.reference.Reference` that
the worker fills from the reference topic. The engine's own snapshot would
carry that reference (the whole of it, for every partition, at every
checkpoint): it is swapped out while the snapshot is taken and attached again
after a restore.
"""

from __future__ import annotations

from fundflow.detectors import Config, Engine
from fundflow.detectors.reference import Reference


def attach(engine: Engine, ref: Reference) -> Engine:
    """Points the engine and every detector of it at ``ref``."""
    engine.ref = ref
    for det in engine.detectors:
        det.ref = ref
    return engine


def new_engine(config: Config, ref: Reference) -> Engine:
    return Engine(config, reference=ref)


def snapshot(engine: Engine, ref: Reference) -> bytes:
    """The engine's state without the shared reference data."""
    attach(engine, Reference(names=False))
    try:
        return engine.snapshot()
    finally:
        attach(engine, ref)


def restore(engine: Engine, blob: bytes, ref: Reference) -> Engine:
    engine.restore(blob)
    return attach(engine, ref)


def feed_reference(engine: Engine, record: object) -> None:
    """One reference record to the detectors (not to the shared reference,
    which the worker updates once): what ``Engine.process`` does for it."""
    for det in engine.detectors:
        det.update(record)
