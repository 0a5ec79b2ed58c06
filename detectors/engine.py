"""The engine: records in, in order; alerts out.

:class:`Engine` keeps the reference data, drops repeated transactions
(deduplicating by ``txn_id`` within an event-time horizon so memory stays
bounded), routes each record to the detectors and collects their alerts.
It is pure: no I/O, no wall clock. The same records in the same order give
the same alerts, byte for byte, whichever shell feeds them.

Accounting: every record handed to :meth:`Engine.process` is counted once as
``accepted``, ``duplicates`` or a dead letter (``too_late``: a transaction
older than the deduplication horizon behind the newest event time, which
could otherwise be counted twice). Shells add their own decoding dead
letters, so that read = accepted + duplicates + dead letters.

>>> from fundflow.schemas.records import Account, CustodyTxn
>>> eng = Engine()
>>> t = CustodyTxn(txn_id="T1", ts=0, bank_id="B", platform_id="P",
...                debit_account="A", credit_account="C", amount=100, purpose="invest")
>>> eng.process(t), eng.process(t), eng.counts
([], [], {'accepted': 1, 'duplicates': 1, 'too_late': 0})
"""

from __future__ import annotations

import importlib
import re
from dataclasses import dataclass
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import msgspec

from fundflow import _core
from fundflow._core import Decoder as LineDecoder
from fundflow.schemas.decode import MAX_LINE_BYTES, DeadLetter, encode_record
from fundflow.schemas.records import (
    Account,
    Alert,
    Balance,
    ClearingTxn,
    CustodyTxn,
    Entity,
    Loan,
    Product,
    Record,
    ReserveReport,
)

from . import snapshots
from .base import Detector
from .bipartite import Bipartite
from .config import Config, load_config
from .cross_bank_clearing import CrossBankClearing
from .down_payment_loan import DownPaymentLoan
from .excessive_return import ExcessiveReturn
from .fund_pool import FundPool
from .guaranteed_return import GuaranteedReturn
from .maturity_mismatch import MaturityMismatch
from .off_profile import OffProfile
from .ordering import KIND_RANK, NO_BOUND, EventOrder, sort_key
from .peel_chain import PeelChain
from .private_product_split import PrivateProductSplit
from .reference import Reference, feed_key
from .reserve_misuse import ReserveMisuse
from .self_financing import SelfFinancing
from .settings import MINUTE_MS, Custom, Days, Hours, section, setting, whole
from .split_payments import SplitPayments
from .stack import Stack
from .typologies import TYPOLOGY_DETECTORS
from .unlicensed_business import UnlicensedBusiness


def _zone(section: str, key: str, value: Any) -> str:
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError, TypeError):
        raise ValueError(f"{section}.{key} is not a known time zone: {value!r}") from None
    return value  # type: ignore[no-any-return]


def _tick(section: str, key: str, value: Any) -> int:
    tick = whole(section, key, value, 1, 1440)
    if 1440 % tick:
        raise ValueError(f"{section}.{key} must divide a day, got {tick}")
    return tick * MINUTE_MS


def _detectors(section: str, key: str, value: Any) -> tuple[str, ...]:
    """Detector names and group names (``default``, ``typologies``), checked
    against the registry."""
    if not isinstance(value, list) or not value or not all(isinstance(v, str) for v in value):
        raise ValueError(f"{section}.{key} must be a non-empty list of names, got {value!r}")
    try:
        # A rule is named by its module:Class here, never by its name alone
        # (which is known only once some configuration has loaded it).
        plain = [v for v in value if ":" not in v]
        detector_names(plain, rules=False)
        detector_names(value)
    except ValueError as e:
        raise ValueError(f"{section}.{key}: {e}") from None
    return tuple(value)


@section("engine")
@dataclass(frozen=True, slots=True)
class EngineConfig:
    """``[engine]``: time zone, allowed lateness, tick, detectors, loan retention."""

    zone: str = setting(Custom(_zone))
    dedup_window_ms: int = setting(Hours(1, 24 * 365), key="dedup_window_hours")
    tick_ms: int = setting(Custom(_tick), key="tick_minutes")
    detectors: tuple[str, ...] = setting(Custom(_detectors))
    loan_retention_ms: int = setting(Days(1, 3660), key="loan_retention_days")


#: The detectors an engine runs unless told otherwise, in the order their
#: alerts are emitted for one record.
DEFAULT_DETECTORS: tuple[type[Detector], ...] = (
    FundPool,
    ReserveMisuse,
    MaturityMismatch,
    SelfFinancing,
    GuaranteedReturn,
    ExcessiveReturn,
    CrossBankClearing,
    UnlicensedBusiness,
    DownPaymentLoan,
    PrivateProductSplit,
)
DETECTORS: dict[str, type[Detector]] = {d.name: d for d in DEFAULT_DETECTORS}
#: The opt-in money-laundering typologies for raw transfer dumps (typologies.py,
#: split_payments.py, off_profile.py, bipartite.py, stack.py, peel_chain.py).
TYPOLOGIES: dict[str, type[Detector]] = {
    d.name: d for d in (*TYPOLOGY_DETECTORS, SplitPayments, OffProfile, Bipartite, Stack, PeelChain)
}


#: Rules of the operator's own (docs/rules.md), named ``module:Class`` in
#: ``[engine] detectors``: name -> class, registered as they are loaded.
RULES: dict[str, type[Detector]] = {}
_RULE_NAME = re.compile(r"[a-z][a-z0-9_]{0,63}")


def load_rule(path: str) -> str:
    """Imports the rule named ``module:Class`` (a :class:`Detector` subclass
    on the Python path) and registers it under its ``name``; returns the
    name. A ``ValueError`` names what is wrong."""
    module, sep, attr = path.partition(":")
    if not sep or not module or not attr.isidentifier():
        raise ValueError(f"a rule is named module:Class, got {path!r}")
    try:
        mod = importlib.import_module(module)
    except Exception as e:  # noqa: BLE001 - any failure of the operator's module is one line
        raise ValueError(f"rule {path}: cannot import {module}: {type(e).__name__}: {e}") from None
    cls = getattr(mod, attr, None)
    if not isinstance(cls, type) or not issubclass(cls, Detector) or cls is Detector:
        raise ValueError(f"rule {path} is not a Detector subclass")
    name = cls.__dict__.get("name")
    if not isinstance(name, str) or not _RULE_NAME.fullmatch(name):
        raise ValueError(
            f"rule {path} must set name: lower-case letters, digits and _, got {name!r}"
        )
    from .config import CONFIG_SECTIONS, SHELL_SECTIONS  # noqa: PLC0415 - config imports engine lazily

    reserved = {*DETECTORS, *TYPOLOGIES, "default", "typologies", *CONFIG_SECTIONS, *SHELL_SECTIONS}
    if name in reserved:
        raise ValueError(f"rule {path}: {name!r} is a built-in detector's or section's name")
    held = RULES.get(name)
    if held is not None and held is not cls:
        raise ValueError(f"rule {path}: another rule is named {name!r} ({held.__module__})")
    RULES[name] = cls
    return name


def _known() -> dict[str, type[Detector]]:
    return {**DETECTORS, **TYPOLOGIES, **RULES}


def whole_stream(names: list[str] | tuple[str, ...]) -> list[str]:
    """Those of the detectors ``names`` (groups expanded) that may need any
    record of the stream (``Detector.whole_stream``): on topics of more than
    one partition they run in the whole-stream worker, the others in the
    partitioned workers (:func:`partitioned`).

    >>> whole_stream(["default"]), whole_stream(["fund_pool", "cycle"])
    (['down_payment_loan'], ['cycle'])
    """
    known = _known()
    return [n for n in detector_names(names) if known[n].whole_stream]


def partitioned(names: list[str] | tuple[str, ...]) -> list[str]:
    """Those of the detectors ``names`` (groups expanded) whose records a
    key brings to one partition: what a partitioned worker runs.

    >>> partitioned(["fund_pool", "down_payment_loan", "cycle"])
    ['fund_pool']
    """
    known = _known()
    return [n for n in detector_names(names) if not known[n].whole_stream]


def detector_names(names: list[str] | tuple[str, ...], rules: bool = True) -> list[str]:
    """Detector names with the groups expanded, each once, in order: group
    ``default`` is :data:`DEFAULT_DETECTORS`, ``typologies`` the typologies,
    ``module:Class`` a rule of the operator's own (``rules``: the names of
    rules loaded so far count too).

    >>> detector_names(["fan_in", "typologies"])
    ['fan_in', 'fan_out', 'cycle', 'gather_scatter', 'scatter_gather', 'split_payments', 'off_profile', 'bipartite', 'stack', 'peel_chain']
    """
    groups = {"default": list(DETECTORS), "typologies": list(TYPOLOGIES)}
    out: list[str] = []
    for name in names:
        # A rule of the operator's own: ``module:Class`` (docs/rules.md).
        expanded = [load_rule(name)] if ":" in name else groups.get(name, [name])
        for n in expanded:
            if n not in out:
                out.append(n)
    own = RULES if rules else {}
    unknown = [n for n in out if n not in DETECTORS and n not in TYPOLOGIES and n not in own]
    if unknown:
        known = [*groups, *DETECTORS, *TYPOLOGIES]
        raise ValueError(
            f"unknown detector(s): {', '.join(unknown)}; known: {', '.join(known)}, "
            "or a rule of your own as module:Class"
        )
    return out


_NO_ALERTS: list[Alert] = []


@dataclass(slots=True)
class Batch:
    """What :meth:`Engine.process_batch` made of a chunk of lines."""

    #: The alerts the chunk's records raised, in order.
    alerts: list[Alert]
    #: The lines refused by the decoder and the records refused by the
    #: engine, in the order met.
    dead_letters: list[DeadLetter]
    #: Records read: the chunk's lines that are not blank.
    read: int
    #: Records decoded, by kind (kinds with none left out).
    kinds: dict[str, int]


class Deduplicator(_core.Deduplicator):
    """Remembers ``txn_id``s for ``horizon_ms`` of event time, per feed.

    A feed is one subject's ordered stream of transactions (see
    :func:`~fundflow.detectors.reference.feed_key`): one partition's worth on
    Kafka. Each feed has its own watermark, so what is too late never depends
    on how feeds interleave or how far one lags another. A transaction older
    than its feed's horizon is refused as ``too_late`` rather than risk
    counting it twice. Ids older than the horizon are swept out whenever the
    table has doubled since the last sweep, so memory stays within about
    twice what the horizons hold, at O(1) amortised per id.

    A feed's first transaction sets its watermark; after that one transaction
    moves it forward by at most one horizon. A lone far-future time (a clock
    or keying error: 2099 for 2026) is accepted but pulls the watermark only
    one horizon ahead, so the honest transactions after it are not refused;
    a feed that resumes after a long silence catches up within a few records.

    The table is the compiled core's (``core/src/dedup.rs``): an id of up
    to 22 bytes is held inline in its 24-byte slot with its time, a longer
    one on the heap. ``admit(kind, feed, txn_id, ts)`` gives the verdict;
    ``watermarks`` and ``seen`` (each feed's ids in the order of their
    times) are the state a checkpoint keeps, ``load`` takes it back.
    """

    __slots__ = ()


class Engine:
    """Runs the detectors over one ordered stream of records.

    ``process(record)`` returns the alerts that record raised (often none);
    ``finish()`` settles what waits for time at the end of a stream and
    returns the last alerts. ``dead_letters`` holds the records the engine
    itself refused since the caller last emptied it.

    Episodes settle in event time as the records arrive: when a subject's
    records pass the end of one of its episodes, the episode's final
    revision (its complete figures, when they moved since the last one) is
    among the alerts of that record (see :mod:`~fundflow.detectors.base`).
    ``advance(now)`` does the same for every subject at a heartbeat;
    ``finish()`` for every episode still open.
    """

    def __init__(
        self,
        config: Config | None = None,
        detectors: list[str] | None = None,
        reference: Reference | None = None,
    ) -> None:
        """``reference`` shares one set of reference data among several
        engines (one per partition in the daemon); a shared reference is the
        caller's to keep and is left out of :meth:`snapshot`."""
        self.config = config or load_config()
        self._shared_ref = reference is not None
        # Its own reference keeps no entity names: no detector reads them there.
        self.ref = reference if reference is not None else Reference(names=False)
        # Names or groups; by default those of the configuration (engine.detectors).
        names = detector_names(self.config.engine.detectors if detectors is None else detectors)
        # A rule runs where its configuration names it (its settings are read there).
        configured = {load_rule(e) for e in self.config.engine.detectors if ":" in e}
        stray = [n for n in names if n in RULES and n not in configured]
        if stray:
            raise ValueError(
                f"rule {', '.join(stray)} is not named in [engine] detectors of the "
                "configuration (as module:Class), where its settings are read"
            )
        known = _known()
        self.detectors: list[Detector] = [known[n](self.config, self.ref) for n in names]
        self.dedup = Deduplicator(self.config.engine.dedup_window_ms)
        self.counts = {"accepted": 0, "duplicates": 0, "too_late": 0}
        self.dead_letters: list[DeadLetter] = []
        #: When a shell sets it to a list, the engine appends, for every
        #: alert it returns, the ``source`` of the record that raised it
        #: (``""`` for a heartbeat's or the end's), in the order of the
        #: alerts; the shell empties it (the daemon's alerts name their
        #: record on the alerts topic).
        self.raised_by: list[str] | None = None
        self.now = -1
        self.zone = ZoneInfo(self.config.engine.zone)
        # The allowed lateness is the deduplication horizon: one bound.
        self.order = EventOrder(self.config.engine.dedup_window_ms)
        # A detector that joins many subjects' records sees them in the
        # order of the whole stream: one feed.
        self._one_feed = any(det.one_feed for det in self.detectors)
        #: Set by a shell while records may still lack reference data that
        #: is on its way (the daemon: the reference topic not read to its
        #: end): records wait in arrival order, before their feed is even
        #: known, until :meth:`release_ready`.
        self.holding = False
        self._waiting: list[tuple[Record, str]] = []
        # Records queued before an account they name was known (see _feed).
        self._unplaced: dict[str, list[Any]] = {}  # account -> [feeds, latest event time]
        self._unplaced_sweep = 1024
        # The compiled decoders of process_batch, by (kind, line limit).
        self._decoders: dict[tuple[str | None, int], LineDecoder] = {}
        self._link()

    def _link(self) -> None:
        """All detectors' alert books write into one list, in detector order,
        and each record kind is routed to the hooks of the detectors that
        care about it, bound once: a transaction kind to the detectors whose
        ``flow_kinds`` name it, reference records and reports to those that
        define ``_on_reference`` or ``_on_report``. Skipping the others
        changes nothing they would find: their hooks do nothing with it."""
        self._out: list[Alert] = []
        first: dict[str, Detector] = {}
        for det in self.detectors:
            det.book.out = self._out
            if det.shares is not None:
                lead = first.setdefault(det.shares, det)
                if lead is not det:
                    det.share(lead)
        self._routes = {
            kind: [det._on_flow for det in self.detectors if kind in det.flow_kinds]
            for kind in (CustodyTxn.TYPE, ClearingTxn.TYPE)
        }
        self._on_reference = [
            det._on_reference
            for det in self.detectors
            if type(det)._on_reference is not Detector._on_reference
        ]
        self._on_report = [
            det._on_report
            for det in self.detectors
            if type(det)._on_report is not Detector._on_report
        ]

    def subjects_of(self, record: Record) -> tuple[str, ...]:
        """Every subject whose findings ``record`` can change, among this
        engine's detectors: its feed first (:meth:`Reference.key_of`, its
        Kafka key), then the others the detectors name
        (:meth:`Detector.subjects_of`), each once. A partitioned stream
        sends the record to each of their partitions (the producer, from
        the reference records sent before it), since every engine keeps
        only the alerts of its own partition's subjects."""
        key = self.ref.key_of(record)
        t = type(record)
        if t is not CustodyTxn and t is not ClearingTxn:
            return (key,)
        flow = self.ref.flow(record)  # type: ignore[arg-type]
        kind = t.TYPE
        out = [key]
        for det in self.detectors:
            if kind in det.flow_kinds:
                for subject in det.subjects_of(flow):
                    if subject not in out:
                        out.append(subject)
        return tuple(out)

    def process(self, record: Record, source: str = "") -> list[Alert]:
        t = type(record)
        if t is CustodyTxn or t is ClearingTxn:
            ts = record.ts  # type: ignore[union-attr]
            flow = self.ref.flow(record)  # type: ignore[arg-type]
            # A custody transaction's feed is its platform (feed_key, inline).
            feed = flow.platform_id if t is CustodyTxn else feed_key(flow)
            verdict = self.dedup.admit(t.TYPE, feed, record.txn_id, ts)  # type: ignore[union-attr, arg-type]
            if verdict != "new":
                if verdict == "duplicate":
                    self.counts["duplicates"] += 1
                else:
                    self._refuse(record, source)
                return _NO_ALERTS
            self.counts["accepted"] += 1
            if ts > self.now:
                # Detectors keep per-subject clocks; the engine's is handed
                # to them only for heartbeats and the end (see _sync).
                self.now = ts
            for on_flow in self._routes[t.TYPE]:
                on_flow(flow)
        else:
            self.counts["accepted"] += 1
            if t is Entity or t is Account or t is Product or t is Loan:
                self.ref.add(record)  # type: ignore[arg-type]
                self.referenced(record)
            else:
                for on_report in self._on_report:
                    on_report(record)
        out = self._out
        if not out:
            return _NO_ALERTS
        alerts = out[:]
        out.clear()
        if self.raised_by is not None:
            self.raised_by.extend([source] * len(alerts))
        return alerts

    def process_batch(
        self,
        chunk: bytes,
        *,
        source: str | None = None,
        first_line: int = 1,
        kind: str | None = None,
        max_line_bytes: int = MAX_LINE_BYTES,
    ) -> Batch:
        """Every line of ``chunk`` (wire-format JSON lines split at ``\\n``),
        decoded by the compiled decoder (``fundflow._core``: the records and
        dead letters of :class:`~fundflow.schemas.decode.RecordDecoder`) in
        one call, and each record submitted in line order as by
        :meth:`submit`. ``kind`` is the kind of every line (a topic's),
        ``max_line_bytes`` the line limit; with ``source``, a dead letter of
        the decoder names ``"<source>:<line>"``, lines numbered from
        ``first_line`` (blank lines count). The engine's own dead letters are
        taken from :attr:`dead_letters` into the batch's."""
        dec = self._decoders.get((kind, max_line_bytes))
        if dec is None:
            dec = LineDecoder(self.config.engine.zone, max_line_bytes, kind)
            self._decoders[(kind, max_line_bytes)] = dec
        items, kinds = dec.records(chunk, source, first_line)
        alerts: list[Alert] = []
        letters: list[DeadLetter] = []
        refused = self.dead_letters
        submit = self.submit
        for rec in items:
            if type(rec) is DeadLetter:
                letters.append(rec)
                continue
            got = submit(rec)
            if got:
                alerts.extend(got)
            if refused:
                letters.extend(refused)
                refused.clear()
        return Batch(alerts, letters, len(items), kinds)

    def referenced(self, record: Entity | Account | Product | Loan) -> None:
        """A reference record already added to the engine's reference (by
        :meth:`process`, or once for every engine sharing it): the detectors
        take it, and the records queued while an account it names was
        unknown move to their own feeds (:meth:`_place_again`)."""
        for on_reference in self._on_reference:
            on_reference(record)
        if type(record) is Account and self._unplaced:
            self._place_again(record.account_id)

    # -- the ordered path ---------------------------------------------------------

    def submit(self, record: Record, source: str = "") -> list[Alert]:
        """A record as it arrives (the shells' entry): reference records are
        applied at once; transactions and reports wait in the ordering stage
        (:mod:`~fundflow.detectors.ordering`) and are processed in
        event-time order per feed. Returns the alerts of what was released."""
        t = type(record)
        if t is CustodyTxn or t is ClearingTxn:
            # sort_key, inline: most records are transactions.
            key: tuple[int, int, str] = (record.ts, KIND_RANK[t], record.txn_id)  # type: ignore[union-attr]
        elif t is ReserveReport or t is Balance:
            key = sort_key(record, self.zone)
        else:
            return self.process(record, source)
        if self.holding:
            self._waiting.append((record, source))
            return _NO_ALERTS
        if self._one_feed:
            feed = ""
        elif t is CustodyTxn:
            feed = record.platform_id  # type: ignore[union-attr]
        else:
            feed = self._feed(record)  # type: ignore[arg-type]
        ready = self.order.offer(feed, key, record, source)
        if ready is None:
            self._refuse_unplaced(record, source)
            return _NO_ALERTS
        if not ready:
            return _NO_ALERTS
        if len(ready) == 1:
            rec, src = ready[0]
            return self.process(rec, src)
        return self._run(ready)

    def _enqueue(self, record: Record, source: str) -> str | None:
        """Queues a record in its feed (``None`` when it is refused)."""
        if self._one_feed:
            feed = ""
        elif type(record) is CustodyTxn:
            feed = record.platform_id  # type: ignore[union-attr]
        else:
            feed = self._feed(record)  # type: ignore[arg-type]
        if self.order.push(feed, sort_key(record, self.zone), record, source):
            return feed
        self._refuse_unplaced(record, source)
        return None

    def _feed(self, record: ClearingTxn | ReserveReport | Balance) -> str:
        """The feed of a clearing payment, report or balance
        (:meth:`Reference.feed_of`). A feed is read from the accounts a
        record names: an account not known yet that could change it is
        noted with the feed the record is queued in, and when the account
        arrives (before the record is released) the feed's records are
        queued again in their own feeds (:meth:`_place_again`). Notes older
        than the allowed lateness behind the engine's clock are dropped
        (their records are released by then, or judged without the account)."""
        feed = self.ref.feed_of(record)
        t = type(record)
        if t is ReserveReport:
            return feed
        accounts = self.ref.accounts
        if t is ClearingTxn:
            payer = accounts.get(record.payer_account)  # type: ignore[union-attr]
            if payer is None:
                missing = record.payer_account  # type: ignore[union-attr]
            elif payer.role == "client_reserve":
                return feed
            elif record.payee_account not in accounts:  # type: ignore[union-attr]
                missing = record.payee_account  # type: ignore[union-attr]
            else:
                return feed
            ts = record.ts  # type: ignore[union-attr]
        elif record.account_id in accounts:  # type: ignore[union-attr]
            return feed
        else:
            missing, ts = record.account_id, record.as_of  # type: ignore[union-attr]
        note = self._unplaced.get(missing)
        if note is None:
            note = self._unplaced[missing] = [set(), ts]
            if len(self._unplaced) > self._unplaced_sweep:
                self._sweep_unplaced()
        note[0].add(feed)
        if ts > note[1]:
            note[1] = ts
        return feed

    def _sweep_unplaced(self) -> None:
        horizon = self.now - self.config.engine.dedup_window_ms
        self._unplaced = {a: n for a, n in self._unplaced.items() if n[1] >= horizon}
        self._unplaced_sweep = max(1024, 2 * len(self._unplaced))

    def _place_again(self, account_id: str) -> None:
        """Account ``account_id`` has arrived: the records queued while it
        was unknown go to the feeds it makes theirs (a reserve account's
        payments and balances to its institution), in key order; one whose
        new feed has already released a later record is refused
        (``too_late``)."""
        note = self._unplaced.pop(account_id, None)
        if note is None:
            return
        order = self.order
        for old in sorted(note[0]):
            for key, (rec, src) in order.take(old):
                if not order.push(self._feed(rec), key, rec, src):
                    self._refuse_unplaced(rec, src)

    def _refuse_unplaced(self, record: Record, source: str) -> None:
        self._refuse(
            record,
            source,
            "its feed has already released a later record: it can no longer be "
            "processed in its place",
        )

    @property
    def held(self) -> int:
        """Records submitted and not processed yet."""
        return len(self.order) + len(self._waiting)

    def _take_waiting(self) -> None:
        waiting, self._waiting = self._waiting, []
        for rec, src in waiting:
            self._enqueue(rec, src)

    def release_ready(self) -> list[Alert]:
        """Processes what every feed's mark releases now (after holding)."""
        self._take_waiting()
        ready = self.order.ready_all()
        return self._run(ready) if ready else []

    def release(self, until: int = NO_BOUND) -> list[Alert]:
        """Processes what the ordering stage holds at or before event time
        ``until`` on every feed (everything by default): the end of a
        stream, or a shell's idle release."""
        self._take_waiting()
        held = self.order.release_until(until)
        return self._run(held) if held else []

    def _run(self, items: list[tuple[Record, str]]) -> list[Alert]:
        out: list[Alert] = []
        process = self.process
        for rec, src in items:
            alerts = process(rec, src)
            if alerts:
                out.extend(alerts)
        return out

    def _refuse(self, record: Record, source: str, why: str | None = None) -> None:
        self.counts["too_late"] += 1
        hours = self.config.engine.dedup_window_ms // 3_600_000
        self.dead_letters.append(
            DeadLetter(
                reason="too_late",
                detail=why
                or f"event time is more than {hours} h behind the newest seen "
                "(the deduplication horizon)",
                raw=msgspec.json.encode(encode_record(record)).decode(),
                source=source,
            )
        )

    def advance(self, now_ms: int) -> list[Alert]:
        """Event time has reached ``now_ms`` with no record (a shell's idle
        heartbeat carrying the stream's own time, never the wall clock):
        every detector settles, for every subject, what waits for time as of
        then, and every episode that ended before ``now_ms`` states its final
        figures. Returns those alerts. What the ordering stage holds is left
        there (records at or before ``now_ms`` may still be on their way)."""
        if now_ms > self.now:
            self.now = now_ms
        self._sync()
        for det in self.detectors:
            det.advance(self.now)
        return self._take()

    def finish(self, end: int | None = None) -> list[Alert]:
        """The end of a stream, or of what has arrived so far, at event time
        ``end`` (by default the engine's last event time; a later ``end`` is
        a heartbeat at that time first, as :meth:`advance`):

        1. what the ordering stage holds is processed (:meth:`release`);
        2. every detector's clock is moved to ``end``;
        3. each detector settles what waits for time as of then (days to
           close, idle money, reports of days not yet closed, compared
           provisionally) and states, as a final revision, the figures of
           every episode still open that moved since its last revision.

        It keeps everything later records need: episodes stay open, reports
        stay pending, and records submitted after it extend them as if it had
        not been called (a daemon whose stream went quiet may call it, then
        go on), so the alerts' last figures are those of one ``finish()`` at
        the very end. What can differ: the revisions (an episode stated at an
        earlier call has that revision in between, and its later growth is
        measured from it); and, as at any heartbeat, step 3 acts on every
        subject at the engine's last event time, so a subject whose records
        after the call are older than that time (a feed lagging the others)
        has had its days closed without them; and a report compared
        provisionally that showed a shortfall keeps that alert even if its
        day then closes covered. Called again with nothing new, it returns
        nothing. Returns the alerts of steps 1-3.

        The engines of one stream's partitions, each finished at the same
        ``end`` (the stream's last event time), give together the alerts of
        one engine over the whole stream; each at its own last event time,
        idle money and days still open are stated as of different times."""
        released = self.release()
        if end is not None and end > self.now:
            self.now = end
        self._sync()
        for det in self.detectors:
            det.finish()
        return released + self._take()

    def _sync(self) -> None:
        for det in self.detectors:
            if det.now < self.now:
                det.now = self.now

    def _take(self) -> list[Alert]:
        alerts = self._out[:]
        self._out.clear()
        if alerts and self.raised_by is not None:
            self.raised_by.extend([""] * len(alerts))
        return alerts

    def state_size(self) -> tuple[int, int, int]:
        """``(subjects, accounts, edges)`` held now: subjects with detector
        state (platforms and institutions, each id once across detectors),
        accounts in the reference data, and related-entity links in the
        account graph (each pair once).

        Counted on demand in O(subjects + entities), so a shell calls it now
        and then (the replay: at most once a second), never per record.
        """
        subjects: set[str] = set()
        for det in self.detectors:
            # Per-subject state is a dict named for the subject kind.
            for name in ("platforms", "institutions"):
                held = getattr(det, name, None)
                if isinstance(held, dict):
                    subjects.update(held)
        edges = sum(len(peers) for peers in self.ref._related.values()) // 2
        return len(subjects), len(self.ref.accounts), edges

    # -- checkpoints -----------------------------------------------------------

    def snapshot(self) -> bytes:
        self._sync()
        return snapshots.dumps(
            {
                "ref": None if self._shared_ref else self.ref,
                "dedup": (self.dedup.watermarks, self.dedup.seen, len(self.dedup)),
                "counts": dict(self.counts),
                "clock": self.now,
                "order": self.order,
                "waiting": self._waiting,
                "unplaced": self._unplaced,
                "detectors": {d.name: d.snapshot() for d in self.detectors},
            }
        )

    def restore(self, blob: bytes) -> Engine:
        payload = snapshots.loads(blob)
        if not self._shared_ref:
            self.ref = payload["ref"]
        self.dedup.load(*payload["dedup"])
        self.counts = payload["counts"]
        self.now = payload["clock"]
        self.order = payload.get("order") or EventOrder(self.config.engine.dedup_window_ms)
        self._waiting = payload.get("waiting") or []
        self._unplaced = payload.get("unplaced") or {}
        # Records that waited for reference data on its way still wait: the
        # shell releases them once it has read the reference topic.
        self.holding = bool(self._waiting)
        for det in self.detectors:
            det.ref = self.ref
            det.restore(payload["detectors"][det.name])
        self._link()
        return self


__all__ = [
    "Batch",
    "Engine",
    "Deduplicator",
    "DETECTORS",
    "DEFAULT_DETECTORS",
    "TYPOLOGIES",
    "detector_names",
]
