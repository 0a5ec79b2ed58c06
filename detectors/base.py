"""The one detector interface.

A detector is fed one record at a time with :meth:`Detector.update` (which
returns the detector) and asked what it found with :attr:`Detector.alerts`;
the engine takes them with :meth:`Detector.drain`. Time is the records' time, and
each subject (platform, institution) has its own clock, moved only by that
subject's records: when a subject's event time crosses a tick of the
configured step, the detector settles what waited for time (idle money,
closing days, book ratios) for that subject. Its findings therefore do not
depend on how records of different subjects interleave, which is what lets
a partitioned daemon give the same alerts as a replay. ``advance`` moves
every subject's clock at once (a heartbeat, the end of a stream).
A detector never raises on odd data: a missing reference is an unknown party.

Episodes (:mod:`~fundflow.detectors.episodes`: a finding's start, the gap
within which its rule must hold again, its end) settle on the same clocks.
Each offer of a finding tells the alert book when its episode ends in event
time (``ends``, see
:class:`~fundflow.detectors.alerting.AlertBook`); a detector calls
``Detector._settle`` with a subject and its event time as that subject's
records arrive, before they change its state, and the book states once more,
as the final revision, the figures of every episode of that subject that
ended before then and moved since its last revision. ``advance`` settles
every subject's ended episodes; ``finish`` settles every episode still open.

A detector works on its own (it then keeps its own reference data) or inside
an :class:`~fundflow.detectors.engine.Engine`, which shares one
:class:`~fundflow.detectors.reference.Reference` among all detectors and
hands them resolved :class:`~fundflow.detectors.reference.Flow` objects.
"""

from __future__ import annotations

from typing import Any, ClassVar, Self
from zoneinfo import ZoneInfo

from fundflow.schemas.records import (
    Account,
    Alert,
    ClearingTxn,
    CustodyTxn,
    Entity,
    Loan,
    Product,
)

from . import snapshots
from .alerting import AlertBook, local_day_end, local_offset_ms
from .config import Config, load_config
from .reference import Flow, Reference

_REFERENCE_TYPES = (Entity, Account, Product, Loan)
_TXN_TYPES = (CustodyTxn, ClearingTxn)


class SlotState:
    """Detector state kept in ``__slots__`` (no per-object dict) that
    snapshots as a dict of its slots, so a checkpoint names every field. A
    subclass with a field added since a version sets its default in
    ``__setstate__`` before calling this one."""

    __slots__ = ()

    def __getstate__(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self.__slots__}

    def __setstate__(self, state: dict[str, Any]) -> None:
        for k, v in state.items():
            setattr(self, k, v)


class Detector:
    """Base class: dispatch, clock, alert book, reset and snapshots.

    Subclasses set ``name``, ``version`` and, when they ignore a transaction
    kind, ``flow_kinds``; they build their state in
    :meth:`_fresh` (a dict of attribute names to initial values: exactly what
    a snapshot saves) and implement ``_on_flow`` and, where they care,
    ``_on_reference``, ``_on_report``, ``_on_tick`` (every subject, at a
    heartbeat) and ``_on_finish``. Each offer to :attr:`book` names when its
    episode ends (``ends``), and ``_on_flow`` calls ``_settle`` for the
    subject whose clock the flow moves.
    """

    name: ClassVar[str] = ""
    version: ClassVar[str] = "1"
    #: The transaction kinds whose flows can change this detector's state or
    #: findings; an engine hands it no others (a detector that ignores
    #: clearing payments is never called for one).
    flow_kinds: ClassVar[frozenset[str]] = frozenset({"custody_txn", "clearing_txn"})
    #: ``True`` for a detector whose findings join many subjects' records
    #: (a graph of transfers): an engine running one orders the whole stream
    #: as one feed (:mod:`~fundflow.detectors.ordering`).
    one_feed: ClassVar[bool] = False
    #: ``True`` for a detector that may need any record of the stream,
    #: whatever its subject: no key brings its records to one partition
    #: (the typologies' graph; money followed through any account). On
    #: topics of more than one partition it runs in the whole-stream
    #: worker, which reads every partition into one engine
    #: (``fundflow worker --whole-stream``, streams/README.md).
    whole_stream: ClassVar[bool] = False
    #: Detectors of one engine with the same ``shares`` keep one running
    #: figure of the stream between them (the typologies: the dump's payment
    #: sizes), computed once a record: the engine hands the first one's to
    #: the others (:meth:`share`). ``None``: nothing shared.
    shares: ClassVar[str | None] = None

    def share(self, first: Detector) -> None:
        """Take ``first``'s shared figure (``first.shares == self.shares``,
        ``first`` earlier in the engine's detectors) in place of this
        detector's own; the figure then moves once a record for both."""
        raise NotImplementedError(f"{self.name} shares nothing")

    def subjects_of(self, flow: Flow) -> tuple[str, ...]:
        """The subjects other than the flow's feed
        (:func:`~fundflow.detectors.reference.feed_key`) whose findings this
        flow can change: on Kafka a copy of the record goes to each one's
        partition, since an engine keeps only its own subjects' alerts
        (:meth:`Engine.subjects_of`). Most detectors find only on the feed's
        subject: none."""
        return ()

    def __init__(self, config: Config | None = None, ref: Reference | None = None) -> None:
        self.config = config or load_config()
        self._owns_ref = ref is None
        self.ref = ref if ref is not None else Reference()
        self.zone = ZoneInfo(self.config.engine.zone)
        self._tick_ms = self.config.engine.tick_ms
        self._state_names: tuple[str, ...] = ()
        self.reset()

    # -- the interface ------------------------------------------------------

    def update(self, record: Any) -> Self:
        """Feed one record (a Flow, a transaction, a reference record, a
        reserve report or a balance). Returns the detector."""
        if type(record) is Flow:
            if record.ts > self.now:
                self.now = record.ts
            self._on_flow(record)
        elif isinstance(record, _TXN_TYPES):
            if record.ts > self.now:
                self.now = record.ts
            self._on_flow(self.ref.flow(record))
        elif isinstance(record, _REFERENCE_TYPES):
            if self._owns_ref:
                self.ref.add(record)
            self._on_reference(record)
        else:
            self._on_report(record)
        return self

    def advance(self, now_ms: int) -> Self:
        """Tell the detector that event time has reached ``now_ms`` for every
        subject (a heartbeat): each subject settles what waits for time as of
        then (``_on_tick``), and every episode that ended before then states
        its final figures."""
        if now_ms > self.now:
            self.now = now_ms
        if self.now >= 0:
            self._on_tick(self.now)
            self.book.settle_due(self.now)
        return self

    def finish(self) -> Self:
        """The stream has ended, for now (the end of a replay, a drain; a
        shell may call it when its inputs go quiet): ``_on_finish`` settles what waits for time (a
        detector's own end-of-stream look, e.g. reports for a day not yet
        closed), then every episode still open states its figures as a final
        revision if they moved since the last one.

        It forgets nothing later records need: the episodes stay open, and
        records after it extend them as if it had not been called (a growing
        episode is emitted again, and settles again when it ends or at the
        next ``finish``). Called again with nothing new, it emits nothing."""
        self._on_finish()
        self.book.settle_open()
        return self

    @property
    def alerts(self) -> list[Alert]:
        """Alerts raised since the last :meth:`drain`, oldest first."""
        return self.book.out

    def drain(self) -> list[Alert]:
        return self.book.drain()

    def reset(self) -> None:
        """Forget everything seen: the detector is as new (reference data it
        owns included)."""
        if self._owns_ref:
            self.ref = Reference()
        self.book = AlertBook(
            self.name, self.version, self.zone, self.config.alerts, self._thresholds()
        )
        #: ``_settle(subject_id, now)``: ``subject_id``'s clock is at ``now``;
        #: its episodes that ended before ``now`` state their final figures
        #: (see the module docstring). Called by ``_on_flow`` before the record
        #: at ``now`` changes the subject's state. The book's own method,
        #: bound: it is called for every record.
        self._settle = self.book.settle
        self.now = -1
        state = self._fresh()
        self._state_names = tuple(state)
        for key, value in state.items():
            setattr(self, key, value)

    def snapshot(self) -> bytes:
        """The detector's state as bytes: its own plain data in the snapshot
        format (:mod:`~fundflow.detectors.snapshots`, data only)."""
        state = {k: getattr(self, k) for k in self._state_names}
        payload = {
            "state": state,
            "said": self.book.said,
            "waiting": self.book.waiting_state(),
            "now": self.now,
            "ref": self.ref if self._owns_ref else None,
        }
        return snapshots.dumps(payload)

    def restore(self, blob: bytes) -> Self:
        """Replace the state with one from :meth:`snapshot`; raises
        :class:`~fundflow.detectors.snapshots.SnapshotRefused` for a blob
        that is not one (another format, or not detector state)."""
        payload = snapshots.loads(blob)
        stray = set(payload["state"]) - set(self._state_names)
        if stray:
            raise snapshots.SnapshotRefused(
                f"snapshot refused: {self.name} keeps no state {min(stray)!r}"
            )
        for key, value in payload["state"].items():
            setattr(self, key, value)
        self.book.said = payload["said"]
        # Checkpoints written before episodes settled in event time have none.
        self.book.load_waiting(payload.get("waiting", {}))
        self.book.out = []
        self.now = payload["now"]
        if self._owns_ref and payload["ref"] is not None:
            self.ref = payload["ref"]
        return self

    # -- for subclasses ------------------------------------------------------

    def _thresholds(self) -> dict[str, Any]:
        """The thresholds every alert's evidence states: the detector's
        section as written in the configuration."""
        return self.config.thresholds(self.name)

    def _fresh(self) -> dict[str, Any]:
        return {}

    def _on_flow(self, flow: Flow) -> None:
        pass

    def _on_reference(self, record: Any) -> None:
        pass

    def _on_report(self, record: Any) -> None:
        pass

    def _on_tick(self, now_ms: int) -> None:
        pass

    def _on_finish(self) -> None:
        pass

    def _day_ends(self, ts: int) -> int:
        """``ends`` for a finding with no end of its own: the last instant of
        the local day of ``ts`` (it settles once its subject's clock has
        passed that day with no new figures)."""
        return local_day_end(ts, self.zone) - 1

    def _next_tick_after(self, ts: int) -> int:
        """The first tick after ``ts``: ticks fall on local boundaries of the
        configured step, so a day's end is always one."""
        off = local_offset_ms(ts, self.zone)
        step = self._tick_ms
        return ((ts + off) // step + 1) * step - off
