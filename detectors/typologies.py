"""Generic money-laundering typologies on raw transfers (seed 三(二): monitor
"资金来源和资金运用", where money comes from and where it goes).

Supervisors often hold nothing but a dump of who paid whom (``clearing_txn``
records, no roles, no platforms, no reference data). These detectors look
for the classic laundering shapes in such a stream, each on a windowed
:class:`~fundflow.detectors.transfer_graph.TransferGraph` of its own:

A payment *counts* when it reaches the ``min_payment_pct``-th percentile of
the payments seen before it in its currency
(:class:`~fundflow.detectors.data_scale.AmountScale`, trusted after
``[typologies] min_samples``) and, for CNY, the absolute ``min_payment``
(default 0: a legal threshold when a supervisor has one). Yuan totals
(``min_total``, ``min_inflow``) apply to CNY only.

``fan_in``
    One account receives counted payments from at least ``min_counterparties`` distinct payers, together at least
    ``min_total``, within ``window_hours``. Subject: the receiving hub.
``fan_out``
    The converse: one account pays that many distinct payees. Subject: the
    paying hub.
``cycle``
    Money returns to its origin: a chain of ``min_hops`` to ``max_hops``
    transfers through distinct accounts, each no earlier than the one
    before, the first to the last within ``window_hours``, every hop
    counted and passing on what the hop before it brought, less at most
    ``tolerance_pct`` of it (each account keeps a cut, none adds money).
    Subject: the origin, the first account of the loop.
``gather_scatter``
    A pass-through hub: within ``window_hours`` it gathers at least
    ``min_inflow`` from ``min_sources`` distinct payers and, after its first
    counted receipt, pays ``min_pass_through_pct`` of it on to ``min_sinks``
    distinct payees. Subject: the hub.
``scatter_gather``
    One source splits money over ``min_intermediaries`` distinct accounts
    that each pay it on (within ``tolerance_pct`` of what they received,
    after receiving it) to one target, at least ``min_total`` in all, the
    whole within ``window_hours``. Subject: the source.

They read ``clearing_txn`` records, payments between accounts; a custody
ledger's bookings (``custody_txn``) are the business detectors' to judge,
with the roles they carry. Amounts are never added across currencies: a
currency named in ``[typologies] rates`` is converted to CNY, any other is
judged in a graph and against the payments of its own currency (one scale
for an engine's typologies, each payment added once: ``Detector.shares``).
A finding lasts while its shape does: an episode ends when the rule has not
held for a window, and a growing finding is re-emitted under the same id.
These detectors judge one transfer graph, so they need every transfer of
it in one ordered stream: a replay, or a daemon on a single partition. They
are the opt-in group ``typologies`` (platform and institution ledgers fan
into custody and reserve accounts by design).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, ClassVar, Self

from .alerting import NO_END, band, iso, make_alert_id, ratio_text, yuan
from .base import Detector
from .data_scale import AmountScale
from .episodes import Episode, Episodes
from .reference import Flow
from .settings import Custom, Fen, Hours, Int, at_most, dec, rising, section, setting
from .transfer_graph import Edge, TransferGraph


def _rates(section: str, key: str, value: Any) -> tuple[tuple[str, int, int], ...]:
    if not isinstance(value, dict):
        raise ValueError(f'{section}.{key} must be a table of currency = "yuan per unit"')
    out = []
    for cur, rate in sorted(value.items()):
        if not (len(cur) == 3 and cur.isalpha() and cur.isupper()) or cur == "CNY":
            raise ValueError(f"{section}.{key}: {cur!r} is not a three-letter code other than CNY")
        d = dec(section, f"{key}.{cur}", rate, Decimal("0.000001"), Decimal("1000000"))
        num, den = d.as_integer_ratio()
        out.append((cur, num, den))
    return tuple(out)


@section(
    "typologies",
    checks=(
        rising(
            "typologies severity bands must rise: medium <= high <= critical",
            "severity_medium", "severity_high", "severity_critical",
        ),
    ),
)  # fmt: skip
@dataclass(frozen=True, slots=True)
class TypologyGraphConfig:
    """``[typologies]``: bounds and severity shared by the typology detectors."""

    max_edges_per_account: int = setting(Int(2, 100_000))
    severity_medium: int = setting(Fen())
    severity_high: int = setting(Fen())
    severity_critical: int = setting(Fen())
    min_samples: int = setting(Int(1))
    #: ``(currency, numerator, denominator)``: one unit of it is worth
    #: numerator/denominator yuan.
    rates: tuple[tuple[str, int, int], ...] = setting(Custom(_rates))

    def rate(self, currency: str) -> tuple[int, int] | None:
        """The rate table's ``(numerator, denominator)`` for ``currency``."""
        for cur, num, den in self.rates:
            if cur == currency:
                return num, den
        return None


#: A typology's window, in the data's hours.
WINDOW = Hours(1, 24 * 366)
#: A percentile of the dump's payments that a transfer must reach.
PERCENTILE = Int(0, 99)
SEARCH_STEPS = Int(1, 10**7)


@section("fan_in")
@section("fan_out")
@dataclass(frozen=True, slots=True)
class FanConfig:
    """``[fan_in]`` and ``[fan_out]``."""

    window_ms: int = setting(WINDOW, key="window_hours")
    min_payment: int = setting(Fen())
    min_payment_pct: int = setting(PERCENTILE)
    min_counterparties: int = setting(Int(2))
    min_total: int = setting(Fen())


@section("cycle", checks=(at_most("min_hops", "max_hops"),))
@dataclass(frozen=True, slots=True)
class CycleConfig:
    """``[cycle]``."""

    window_ms: int = setting(WINDOW, key="window_hours")
    min_hops: int = setting(Int(2, 12))
    max_hops: int = setting(Int(2, 12))
    min_payment: int = setting(Fen())
    min_payment_pct: int = setting(PERCENTILE)
    tolerance_pct: int = setting(Int(0, 99))
    max_search_steps: int = setting(SEARCH_STEPS)


@section("gather_scatter")
@dataclass(frozen=True, slots=True)
class GatherScatterConfig:
    """``[gather_scatter]``."""

    window_ms: int = setting(WINDOW, key="window_hours")
    min_payment: int = setting(Fen())
    min_payment_pct: int = setting(PERCENTILE)
    min_sources: int = setting(Int(1))
    min_sinks: int = setting(Int(1))
    min_inflow: int = setting(Fen())
    min_pass_through_pct: int = setting(Int(1, 100))


@section("scatter_gather")
@dataclass(frozen=True, slots=True)
class ScatterGatherConfig:
    """``[scatter_gather]``."""

    window_ms: int = setting(WINDOW, key="window_hours")
    min_payment: int = setting(Fen())
    min_payment_pct: int = setting(PERCENTILE)
    min_intermediaries: int = setting(Int(2))
    min_total: int = setting(Fen())
    tolerance_pct: int = setting(Int(0, 99))
    max_search_steps: int = setting(SEARCH_STEPS)


def passes_on(received: int, paid_on: int, lo_pct: int, hi_pct: int) -> bool:
    """Whether ``paid_on`` is ``lo_pct``-``hi_pct`` % of ``received`` (exact, in fen):
    the conservation band of the tracing typologies (a hop passing on money
    it received, less a cut, never more than the band allows).

    >>> passes_on(10000, 9000, 90, 100), passes_on(10000, 8999, 90, 100), passes_on(100, 101, 90, 100)
    (True, False, False)
    """
    return received * lo_pct <= paid_on * 100 <= received * hi_pct


def _converted(f: Flow, amount: int) -> Flow:
    """``f`` with its amount in the currency it is judged in."""
    return Flow(
        f.txn_id, f.ts, amount, "CNY", f.purpose, f.src_id, f.dst_id, f.src, f.dst,
        f.platform_id, f.product_id, f.loan_id, f.system, f.initiator_id, f.custody,
    )  # fmt: skip


class _Typology(Detector):
    """Shared by the typologies: the graph and episodes.

    Each offer carries the plain data its evidence is built from, and its
    episode's end (the last time the rule held plus a window): the alert
    book settles it, stating figures that moved since the last revision,
    once the stream's clock (the graph's watermark) passes that end, or at
    the end of the stream.
    """

    version = "1.0"
    # Payments between accounts: a custody ledger's bookings are not read.
    flow_kinds = frozenset({"clearing_txn"})
    one_feed = True
    whole_stream = True
    keeps_incoming: ClassVar[bool] = True
    keeps_outgoing: ClassVar[bool] = True
    # One scale of the dump's payments for an engine's typologies.
    shares: ClassVar[str | None] = "typologies.scale"
    # Each typology defines both: what a new transfer shows, and an alert's
    # accounts, summary and evidence from the plain data kept for it.
    _see: Callable[[Flow], None]
    _describe: Callable[[str, dict[str, Any]], tuple[list[str], str, dict[str, Any]]]

    def _window_ms(self) -> int:
        return getattr(self.config, self.name).window_ms  # type: ignore[no-any-return]

    def _min_payment(self) -> int:
        return getattr(self.config, self.name).min_payment  # type: ignore[no-any-return]

    def _hop_evidence(self, hops: list[Any]) -> list[dict[str, str]]:
        """A chain's transfers ``(ts, payer, payee, amount, txn_id)`` as its
        evidence lists them (``cycle``, ``peel_chain``)."""
        return [
            {
                "txn_id": txn,
                "ts": iso(ts, self.zone),
                "from": payer,
                "to": payee,
                "amount": yuan(amount),
            }
            for ts, payer, payee, amount, txn in hops
        ]

    def _since(self, now: int) -> int:
        """The earliest booked time in the window that ends at ``now``: the
        window before it, inclusive. A dump that books one time a tick books
        a shape that took at most the window on ticks up to a window apart
        (46 real hours, from a noon to ten in the morning two days on, are
        booked at three midnights, the first and the last 48 h apart), so,
        for a window of whole ticks, an inclusive start judges every tick
        such a shape can book; a start open by a millisecond would lose the
        first."""
        return now - self._window

    def _min_payment_pct(self) -> int:
        return getattr(self.config, self.name).min_payment_pct  # type: ignore[no-any-return]

    def _fresh(self) -> dict[str, Any]:
        self._window = self._window_ms()
        self._episodes = Episodes(self._window)
        self._abs_floor = max(self._min_payment(), 1)
        self._pct = self._min_payment_pct()
        self._unit = "yuan"
        # graphs: currency -> its transfer graph (amounts are never added across
        # currencies); scale: the dump's payment sizes per currency.
        # episodes: key -> its Episode
        return {
            "graphs": {},
            "scale": self._asking(AmountScale()),
            "episodes": {},
            "last_sweep": {},
        }

    def _questions(self) -> list[tuple[int, bool]]:
        """What this typology asks the scale before each payment
        (:meth:`AmountScale.ask`): its ``min_payment_pct``, at least."""
        return [(self._pct, True)] if self._pct else []

    def _asking(self, scale: AmountScale) -> AmountScale:
        for pct, upper in self._questions():
            scale.ask(pct, upper)
        return scale

    def share(self, first: Detector) -> None:
        self.scale = self._asking(first.scale)  # type: ignore[attr-defined]

    def _new_graph(self) -> TransferGraph:
        return TransferGraph(
            self._window + self.config.engine.dedup_window_ms,
            self.config.typologies.max_edges_per_account,
            incoming=self.keeps_incoming,
            outgoing=self.keeps_outgoing,
        )

    def _own_terms(self, f: Flow) -> tuple[str, int]:
        """The currency a payment is judged in and its amount there: CNY at
        the configured rate when the rate table names its currency."""
        if f.currency == "CNY":
            return "CNY", f.amount
        rate = self.config.typologies.rate(f.currency)
        if rate is None:
            return f.currency, f.amount
        return "CNY", f.amount * rate[0] // rate[1]

    def _at_least(self, currency: str, amount: int, floor: int) -> bool:
        """``amount`` reaches the absolute ``floor`` (yuan: CNY only)."""
        return currency != "CNY" or amount >= floor

    def _counts(self, f: Flow, currency: str, amount: int) -> int | None:
        """Whether payment ``f`` counts: the floor it reached, or ``None``.
        The floor is the smallest payment that counts in ``currency``: the
        dump's ``min_payment_pct``-th percentile there before this payment
        (none until ``min_samples`` payments are seen: nothing counts yet),
        raised to the absolute floor for CNY; then the payment joins the
        scale."""
        min_samples = self.config.typologies.min_samples
        self._seen, before = self.scale.take(f, currency, amount, min_samples)
        floor = self._abs_floor if currency == "CNY" else 1
        if self._pct:
            if self._seen < min_samples:
                return None
            floor = max(floor, before.get((self._pct, True)) or 1)
        return None if amount < floor else floor

    def _on_flow(self, f: Flow) -> None:
        if f.custody or f.src_id == f.dst_id:
            return
        currency, amount = self._own_terms(f)
        counted = self._counts(f, currency, amount)
        if counted is None:
            return
        self._currency, self._counted_from = currency, counted
        self._unit = "yuan" if currency == "CNY" else currency
        g = self.graphs.get(currency)
        if g is None:
            g = self.graphs[currency] = self._new_graph()
        self.graph = g
        g.add(f.ts, f.src_id, f.dst_id, amount, f.txn_id)
        # One clock, the whole stream's: every subject's ended episodes settle.
        self.book.settle_due(g.watermark)
        if g.swept_at != self.last_sweep.get(currency):
            self.last_sweep[currency] = g.swept_at
            # Ended episodes settled as the clock passed their end: let them go.
            self._episodes.forget(self.episodes, g.watermark)
        self._see(f if amount == f.amount else _converted(f, amount))

    # -- findings ------------------------------------------------------------

    def _severity(self, amount: int, unit: str) -> str:
        cfg = self.config.typologies
        if unit != "yuan":  # the bands are yuan
            return "low"
        return band(
            amount,
            (
                (cfg.severity_medium, "medium"),
                (cfg.severity_high, "high"),
                (cfg.severity_critical, "critical"),
            ),
            "low",
        )

    def _episode(self, key: tuple[str, ...], now: int) -> int:
        """The start of the episode the rule holding at ``now`` belongs to
        (:mod:`~fundflow.detectors.episodes`, the window as its gap)."""
        return self._episodes.hold_key(self.episodes, key, now)[0].start  # type: ignore[no-any-return]

    def _offer(
        self,
        key: tuple[str, ...],
        alert_id: str,
        subject: str,
        amount: int,
        first_ts: int,
        last_ts: int,
        args: dict[str, Any],
    ) -> None:
        """Offer the figures to the alert book, with the end of the episode
        of ``key`` (a finding with no episode ends with the stream). ``args``
        gain the unit and the baseline in force now, for the evidence built
        later."""
        if "unit" not in args:
            args = {**args, "unit": self._unit, "baseline": self._baseline()}
        ep = self.episodes.get(key)
        self.book.offer(
            alert_id,
            subject,
            self._severity(amount, args["unit"]),
            amount,
            first_ts,
            last_ts,
            lambda: self._describe(subject, args),
            ends=NO_END if ep is None else self._episodes.ends(ep),
        )

    def _thresholds(self) -> dict[str, Any]:
        return {**self.config.thresholds(self.name), **self.config.thresholds("typologies")}

    def _baseline(self) -> dict[str, Any]:
        """What made the payments count: the floor in force and the dump's
        figure it came from (evidence ``baseline``)."""
        cur = self._currency
        out: dict[str, Any] = {"currency": cur, "counted_from": yuan(self._counted_from)}
        if self._pct:
            out["percentile"] = self._pct
            out["payments_seen"] = self._seen
        if cur == "CNY" and self._abs_floor > 1:
            out["absolute_floor"] = yuan(self._abs_floor)
        return out

    def restore(self, blob: bytes) -> Self:
        super().restore(blob)
        # A checkpoint of the layout before graphs per currency (one graph,
        # the episodes' last figures kept here): its transfers cannot be
        # judged against a scale it never kept, so the typology starts
        # afresh; the alert ids it issued stay issued.
        if self.__dict__.pop("pending", None) is not None:
            self.__dict__.pop("graph", None)
            for key, value in self._fresh().items():
                setattr(self, key, value)
        # A checkpoint of 1.0 kept each episode as a [start, last] list.
        self.episodes = {
            k: Episode(*ep) if type(ep) is list else ep for k, ep in self.episodes.items()
        }
        self._asking(self.scale)
        return self

    def _samples(self, edges: list[Edge]) -> list[str]:
        return [e[3] for e in edges[: self.config.alerts.sample_txns]]

    def _passed(self, account: str, start: int, now: int) -> tuple[list[Edge], list[Edge]]:
        """What ``account`` received from ``start`` to ``now`` and what it paid
        from its first receipt then to ``now`` (no receipt: nothing paid on)."""
        g = self.graph
        ins = g.within(g.incoming, account, start, now)
        if not ins:
            return [], []
        return ins, g.within(g.outgoing, account, ins[0][0], now)

    def _trace(
        self,
        account: str,
        before: int,
        path: list[Edge],
        seen: set[str],
        fits: Callable[[str, Edge, Edge], bool],
        ends: Callable[[str, list[Edge]], bool],
        max_hops: int,
        *,
        longest: bool = False,
    ) -> list[Edge] | None:
        """Money traced backwards from ``path`` (newest hop first, its oldest
        paid to ``account``), depth first, newest first, through what each
        account received no later than the hop it paid and from
        ``self._start``, within ``self._budget`` transfers examined. A hop
        ``e`` into ``via`` joins when ``fits(via, e, hop paid on)``; a path
        ending at a payer ``ends(payer, path)`` accepts is a finding (the
        first found, or with ``longest`` the longest); paths go on through
        accounts not in ``seen``, to at most ``max_hops`` transfers. A search
        that wanted to examine more leaves ``self._budget`` below zero."""
        edges = self.graph.incoming.get(account)
        if not edges:
            return None
        best: list[Edge] | None = None
        for e in reversed(edges):
            ts, payer, _amount, _txn = e
            if ts > before:
                continue
            if ts < self._start:
                break
            if self._budget <= 0:
                self._budget = -1  # ran out: the search is incomplete
                break
            self._budget -= 1
            if not fits(account, e, path[-1]):
                continue
            longer = [*path, e]
            if ends(payer, longer):
                if not longest:
                    return longer
                if best is None or len(longer) > len(best):
                    best = longer
            if payer in seen or len(longer) >= max_hops:
                continue
            seen.add(payer)
            found = self._trace(payer, ts, longer, seen, fits, ends, max_hops, longest=longest)
            seen.discard(payer)
            if found is not None:
                if not longest:
                    return found
                if best is None or len(found) > len(best):
                    best = found
        return best


class _Ordered(_Typology):
    """A typology that judges a transfer with every transfer booked at its
    time in the graph.

    A dump that books one time a tick (a day) says nothing of the order of
    the transfers within it, so a transfer is judged (``_judge``) once the
    stream has moved past its booked time (a later transfer, a heartbeat,
    the end): then every transfer booked with it is in the graph. A transfer
    later than one already held is judged at once.
    """

    _judge: Callable[[Flow], None]

    def _fresh(self) -> dict[str, Any]:
        return {**super()._fresh(), "held": []}

    def _see(self, f: Flow) -> None:
        held = self.held
        context = (self.graph, self._currency, self._unit, self._counted_from, self._seen)
        if held and f.ts > held[-1][0].ts:
            self._release()
        if self.held and f.ts < self.held[-1][0].ts:
            self._judge(f)
        else:
            self.held.append((f, context))

    def _release(self) -> None:
        held, self.held = self.held, []
        for f, (graph, currency, unit, counted_from, seen) in held:
            self.graph, self._currency, self._unit, self._counted_from, self._seen = (
                graph, currency, unit, counted_from, seen,
            )  # fmt: skip
            self._judge(f)

    def _on_tick(self, now_ms: int) -> None:
        if self.held and now_ms > self.held[-1][0].ts:
            self._release()

    def _on_finish(self) -> None:
        self._release()
        super()._on_finish()


def _by_party(edges: list[Edge]) -> list[tuple[str, int, int]]:
    """``(account, amount, transfers)`` per counterparty, largest first."""
    sums: dict[str, list[int]] = {}
    for _ts, party, amount, _txn in edges:
        s = sums.setdefault(party, [0, 0])
        s[0] += amount
        s[1] += 1
    return sorted(((a, s[0], s[1]) for a, s in sums.items()), key=lambda r: (-r[1], r[0]))


class _Fan(_Typology):
    """fan_in / fan_out: many distinct counterparties on one side of a hub."""

    inbound: ClassVar[bool] = True

    def _see(self, f: Flow) -> None:
        cfg: FanConfig = getattr(self.config, self.name)
        g = self.graph
        hub = f.dst_id if self.inbound else f.src_id
        table = g.incoming if self.inbound else g.outgoing
        edges = g.within(table, hub, self._since(f.ts), f.ts)
        parties = {e[1] for e in edges}
        total = sum(e[2] for e in edges)
        if len(parties) < cfg.min_counterparties or not self._at_least(
            self._currency, total, cfg.min_total
        ):
            return
        start = self._episode((hub,), f.ts)
        aid = make_alert_id(self.name, hub, start)
        self._offer((hub,), aid, hub, total, edges[0][0], f.ts, {"edges": edges, "now": f.ts})

    def _describe(
        self, subject: str, args: dict[str, Any]
    ) -> tuple[list[str], str, dict[str, Any]]:
        unit = args["unit"]
        edges: list[Edge] = args["edges"]
        parties = _by_party(edges)
        total = sum(e[2] for e in edges)
        hours = self._window // 3_600_000
        side, verb = ("payers", "received") if self.inbound else ("payees", "paid")
        role = "payer" if self.inbound else "payee"
        evidence = {
            "signal": self.name,
            "hub": subject,
            "counterparties": len(parties),
            "transfers": len(edges),
            "total": yuan(total),
            "window_start": iso(edges[0][0], self.zone),
            "window_end": iso(args["now"], self.zone),
            f"{role}s": [
                {"account": a, "amount": yuan(amt), "transfers": n} for a, amt, n in parties[:50]
            ],
            "sample_txn_ids": self._samples(edges),
            "baseline": args["baseline"],
        }
        summary = (
            f"Account {subject} {verb} {yuan(total)} {unit} in {len(edges)} transfers of at least "
            f"{args['baseline']['counted_from']} {unit} {'from' if self.inbound else 'to'} {len(parties)} distinct "
            f"{side} within {hours} hours."
        )
        return [subject, *(p[0] for p in parties[:19])], summary, evidence


class FanIn(_Fan):
    """Many distinct payers into one account; see the module docstring."""

    name = "fan_in"
    inbound = True
    keeps_outgoing = False


class FanOut(_Fan):
    """One account paying many distinct payees; see the module docstring."""

    name = "fan_out"
    inbound = False
    keeps_incoming = False


class Cycle(_Ordered):
    """Money returning to its origin; see the module docstring.

    Searched backwards from each transfer that could close a loop, through
    what each account received earlier, depth first, newest first, within a
    budget of ``max_search_steps`` transfers examined; once the stream has
    moved past the transfer's booked time (:class:`_Ordered`).
    """

    name = "cycle"
    keeps_outgoing = False

    def _judge(self, f: Flow) -> None:
        """Search for a loop that ``f`` closes."""
        cfg = self.config.cycle
        origin = f.dst_id
        closing: Edge = (f.ts, f.src_id, f.amount, f.txn_id)
        kept = 100 - cfg.tolerance_pct
        self._start = self._since(f.ts)
        self._budget = cfg.max_search_steps

        def fits(_via: str, e: Edge, passed: Edge) -> bool:
            # The next hop passes on this one's money, less at most the
            # tolerance: no more than it brought, no less than its share.
            return passes_on(e[2], passed[2], kept, 100)

        def ends(payer: str, path: list[Edge]) -> bool:
            return payer == origin and len(path) >= cfg.min_hops

        path = self._trace(f.src_id, f.ts, [closing], {origin, f.src_id}, fits, ends, cfg.max_hops)
        if path is None:
            return
        # path: newest first, (ts, payer, amount, txn_id) with the payee one step later
        hops = []
        payee = origin
        for ts, payer, amount, txn in path:
            hops.append((ts, payer, payee, amount, txn))
            payee = payer
        hops.reverse()
        first = hops[0]
        aid = make_alert_id(self.name, origin, first[4])
        args = {"hops": hops}
        # A loop's figures never move: it has no episode to settle.
        self._offer((origin,), aid, origin, first[3], first[0], f.ts, args)

    def _describe(
        self, subject: str, args: dict[str, Any]
    ) -> tuple[list[str], str, dict[str, Any]]:
        unit = args["unit"]
        hops = args["hops"]
        accounts = [h[1] for h in hops]
        hours = self._window // 3_600_000
        evidence = {
            "signal": self.name,
            "origin": subject,
            "hops": self._hop_evidence(hops),
            "hop_count": len(hops),
            "sent": yuan(hops[0][3]),
            "returned": yuan(hops[-1][3]),
            "span_hours": ratio_text(hops[-1][0] - hops[0][0], 3_600_000, 2),
            "sample_txn_ids": [h[4] for h in hops],
            "baseline": args["baseline"],
        }
        summary = (
            f"{yuan(hops[0][3])} {unit} left account {subject} and {yuan(hops[-1][3])} {unit} came "
            f"back to it through {len(hops) - 1} other account(s) in {len(hops)} transfers "
            f"within {hours} hours."
        )
        return accounts, summary, evidence


class GatherScatter(_Typology):
    """A pass-through hub; see the module docstring."""

    name = "gather_scatter"

    def _see(self, f: Flow) -> None:
        self._check(f.dst_id, f.ts)
        self._check(f.src_id, f.ts)

    def _check(self, hub: str, now: int) -> None:
        cfg = self.config.gather_scatter
        ins, outs = self._passed(hub, self._since(now), now)
        if len(ins) < cfg.min_sources:
            return
        inflow = sum(e[2] for e in ins)
        outflow = sum(e[2] for e in outs)
        if (
            not self._at_least(self._currency, inflow, cfg.min_inflow)
            or outflow * 100 < inflow * cfg.min_pass_through_pct
            or len({e[1] for e in ins}) < cfg.min_sources
            or len({e[1] for e in outs}) < cfg.min_sinks
        ):
            return
        start = self._episode((hub,), now)
        aid = make_alert_id(self.name, hub, start)
        args = {"ins": ins, "outs": outs, "now": now}
        self._offer((hub,), aid, hub, min(inflow, outflow), ins[0][0], now, args)

    def _describe(
        self, subject: str, args: dict[str, Any]
    ) -> tuple[list[str], str, dict[str, Any]]:
        unit = args["unit"]
        ins, outs = args["ins"], args["outs"]
        sources, sinks = _by_party(ins), _by_party(outs)
        inflow, outflow = sum(e[2] for e in ins), sum(e[2] for e in outs)
        ratio = ratio_text(outflow, inflow)
        k = self.config.alerts.sample_txns
        evidence = {
            "signal": self.name,
            "hub": subject,
            "distinct_sources": len(sources),
            "distinct_sinks": len(sinks),
            "inflow": yuan(inflow),
            "outflow": yuan(outflow),
            "pass_through_ratio": ratio,
            "window_start": iso(ins[0][0], self.zone),
            "window_end": iso(args["now"], self.zone),
            "sources": [{"account": a, "amount": yuan(m), "transfers": n} for a, m, n in sources],
            "sinks": [{"account": a, "amount": yuan(m), "transfers": n} for a, m, n in sinks],
            "sample_txn_ids": [e[3] for e in ins[: k - k // 2]] + [e[3] for e in outs[: k // 2]],
            "baseline": args["baseline"],
        }
        summary = (
            f"Account {subject} gathered {yuan(inflow)} {unit} from {len(sources)} payers and paid "
            f"{ratio} of it on to {len(sinks)} payees within {self._window // 3_600_000} hours."
        )
        accounts = [subject, *(s[0] for s in sources[:9]), *(s[0] for s in sinks[:10])]
        return accounts, summary, evidence


class ScatterGather(_Typology):
    """One source split through many intermediaries onto one target; see the
    module docstring. Checked when an intermediary pays the target."""

    name = "scatter_gather"
    keeps_outgoing = False

    def _see(self, f: Flow) -> None:
        cfg = self.config.scatter_gather
        g = self.graph
        start = self._since(f.ts)
        target, via = f.dst_id, f.src_id
        sources = sorted(
            {
                e[1]
                for e in g.within(g.incoming, via, start, f.ts)
                if e[1] != target and self._conserved(e[2], f.amount)
            }
        )
        if not sources:
            return
        gathered = g.within(g.incoming, target, start, f.ts)
        budget = cfg.max_search_steps
        for source in sources:
            legs: dict[str, tuple[Edge, Edge]] = {}
            for out in gathered:
                mid = out[1]
                if mid == source or mid in legs:
                    continue
                for e in g.incoming.get(mid, ()):
                    budget -= 1
                    if e[0] > out[0]:
                        break
                    if e[0] >= start and e[1] == source and self._conserved(e[2], out[2]):
                        legs[mid] = (e, out)
                        break
                if budget <= 0:
                    return
            total = sum(out[2] for _e, out in legs.values())
            if len(legs) < cfg.min_intermediaries or not self._at_least(
                self._currency, total, cfg.min_total
            ):
                continue
            ep = self._episode((source, target), f.ts)
            aid = make_alert_id(self.name, source, target, ep)
            first = min(e[0] for e, _out in legs.values())
            rows = sorted(legs.items(), key=lambda kv: (kv[1][0][0], kv[0]))
            args = {"target": target, "legs": [(mid, e, out) for mid, (e, out) in rows]}
            self._offer((source, target), aid, source, total, first, f.ts, args)

    def _conserved(self, received: int, paid_on: int) -> bool:
        tol = self.config.scatter_gather.tolerance_pct
        return passes_on(received, paid_on, 100 - tol, 100 + tol)

    def _describe(
        self, subject: str, args: dict[str, Any]
    ) -> tuple[list[str], str, dict[str, Any]]:
        unit = args["unit"]
        target, legs = args["target"], args["legs"]
        sent = sum(e[2] for _m, e, _o in legs)
        total = sum(o[2] for _m, _e, o in legs)
        first, last = min(e[0] for _m, e, _o in legs), max(o[0] for _m, _e, o in legs)
        evidence = {
            "signal": self.name,
            "source": subject,
            "target": target,
            "intermediaries": len(legs),
            "sent": yuan(sent),
            "gathered": yuan(total),
            "window_start": iso(first, self.zone),
            "window_end": iso(last, self.zone),
            "legs": [
                {
                    "via": mid,
                    "in_txn": e[3],
                    "in_amount": yuan(e[2]),
                    "out_txn": o[3],
                    "out_amount": yuan(o[2]),
                }
                for mid, e, o in legs[:50]
            ],
            "sample_txn_ids": [t for _m, e, o in legs for t in (e[3], o[3])][
                : self.config.alerts.sample_txns
            ],
            "baseline": args["baseline"],
        }
        summary = (
            f"Account {subject} sent {yuan(sent)} {unit} through {len(legs)} intermediaries that "
            f"paid {yuan(total)} {unit} on to account {target} within "
            f"{self._window // 3_600_000} hours."
        )
        return [subject, target, *(m for m, _e, _o in legs[:18])], summary, evidence


#: The typology detectors, in the order their alerts are emitted for one record.
TYPOLOGY_DETECTORS: tuple[type[Detector], ...] = (
    FanIn,
    FanOut,
    Cycle,
    GatherScatter,
    ScatterGather,
)

__all__ = [
    "FanIn",
    "FanOut",
    "Cycle",
    "GatherScatter",
    "ScatterGather",
    "TYPOLOGY_DETECTORS",
]
