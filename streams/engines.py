"""Engines that share one reference: building them, feeding them reference
records.

Every input partition has its own :class:`~fundflow.detectors.Engine`, and
all of them read one :class:`~fundflow.detectors.reference.Reference` that
the worker fills from the reference topic. An engine built on a shared
reference leaves it out of its own snapshot and keeps it across a restore
(``Engine.snapshot`` and ``Engine.restore``): a checkpoint carries a
partition's state, never the reference data every worker holds anyway.
"""

from __future__ import annotations

from fundflow.detectors import Config, Engine
from fundflow.detectors.reference import Reference


def new_engine(config: Config, ref: Reference, detectors: list[str] | None = None) -> Engine:
    """An engine on the shared ``ref``: its snapshots leave ``ref`` out.
    It runs ``detectors`` (default: the configuration's) and notes which
    record raised each alert (``Engine.raised_by``)."""
    engine = Engine(config, detectors, reference=ref)
    engine.raised_by = []
    return engine


def feed_reference(engine: Engine, record: object) -> None:
    """One reference record to an engine (not to the shared reference,
    which the worker updates once): what ``Engine.process`` does for it
    (:meth:`Engine.referenced`: the detectors take it, and records queued
    before an account it names was known move to their own feeds)."""
    engine.referenced(record)  # type: ignore[arg-type]
