"""maturity_mismatch — 期限错配 / 期限拆分 (seed 二(一)1: P2P platforms must not
"期限错配、期限拆分").

Money raised from investors for a short term must not fund loans for a longer
term: the platform would need new investors to pay the old ones. Per
platform, three signals:

``mismatch_exposure``
    A funding of loan L (term Tl) by product P (term Tp) with Tl > Tp is
    mismatched. Fundings are ``invest``/``disburse`` transactions naming a
    ``loan_id``; the product is named on the same transaction or, where it is
    not, traced first-in-first-out through the platform's controlled
    accounts back to the ``invest`` transactions that brought the money in
    with a ``product_id`` (lineage, as lots of :mod:`~fundflow.detectors.lots`). Repayments (``repay`` with the loan id)
    close the book pro rata. An alert when the mismatched part of the open
    book exceeds ``max_exposure``, or ``max_exposure_pct`` of the open book
    once that book holds at least ``min_book``.
``term_ratio``
    The amount-weighted mean term of the platform's outstanding loans (loan
    records, from ``issued_at``, less repayments) over that of the money its
    investors hold in products (``invest`` with a ``product_id``, until the
    product term has run) above ``max_term_ratio``, once both sides hold at
    least ``min_book``. Looked at on each clock tick.
``term_split``
    One loan funded by two or more products each shorter than the loan, or
    by one shorter product again after its term ran out (rolled over).

``mismatch_exposure`` and ``term_ratio`` are episodes with no gap
(:mod:`~fundflow.detectors.episodes`), named by when they first held: an
exposure lasts until no mismatched money is left open, a ratio until the
loans are no longer than the money funding them or run out.

Memory: a loan's book entry is kept while it can still move a figure. Once
a loan is past its maturity by ``engine.loan_retention_days`` on its
platform's clock and repaid in full (nothing open, nothing outstanding), it
is forgotten: a repayment can no longer change anything, and money lent
for it again after that is booked as for a loan seen afresh. A loan record
issued longer ago than its term plus that retention is not booked at all.
"""

from __future__ import annotations

import heapq
from array import array
from bisect import bisect_right
from collections import deque
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from fundflow.schemas.records import Loan

from .alerting import Stated, band, iso, make_alert_id, ratio_text, yuan
from .base import Detector, SlotState
from .config import DAY_MS
from .episodes import NONE, Episode, Episodes
from .lots import Fifo, Lot, restored
from .reference import Flow
from .settings import Dec, Fen, Int, rising, section, setting


@section(
    "maturity_mismatch",
    checks=(
        rising(
            "maturity_mismatch ratios must rise: max_term_ratio <= ratio_high <= ratio_critical",
            "max_term_ratio", "ratio_high", "ratio_critical",
        ),
    ),
)  # fmt: skip
@dataclass(frozen=True, slots=True)
class MaturityConfig:
    """``[maturity_mismatch]``."""

    max_exposure: int = setting(Fen())
    max_exposure_pct: int = setting(Int(0, 100))
    min_book: int = setting(Fen())
    max_term_ratio: Decimal = setting(Dec(1, 1000))
    severity_high: int = setting(Fen())
    severity_critical: int = setting(Fen())
    ratio_high: Decimal = setting(Dec(1, 1000))
    ratio_critical: Decimal = setting(Dec(1, 1000))


FUNDING_PURPOSES = frozenset({"invest", "disburse"})
# Lineage is followed until the money is spent, however long: no window.
_FIFO = Fifo()


class _Expiries:
    """Product investments alive within their term: per term, parallel
    arrays of expiry ts and amount (16 bytes an investment, where a heap of
    tuples costs about 130), kept sorted by expiry. Investments of one term
    arrive in event-time order, so each lands at or near the end."""

    __slots__ = ("by_term",)

    def __init__(self) -> None:
        # term days -> [expiries, amounts, index of the first not yet expired]
        self.by_term: dict[int, list[Any]] = {}

    def add(self, expiry: int, amount: int, term: int) -> None:
        q = self.by_term.get(term)
        if q is None:
            q = self.by_term[term] = [array("q"), array("q"), 0]
        exp, amt = q[0], q[1]
        if not exp or exp[-1] <= expiry:
            exp.append(expiry)
            amt.append(amount)
        else:  # a late record: keep the order
            i = bisect_right(exp, expiry, q[2])
            exp.insert(i, expiry)
            amt.insert(i, amount)

    def pop_due(self, now: int) -> list[tuple[int, int]]:
        """Remove and return ``(amount, term)`` of every investment expired by ``now``."""
        due: list[tuple[int, int]] = []
        for term, q in self.by_term.items():
            exp, amt, head = q
            while head < len(exp) and exp[head] <= now:
                due.append((amt[head], term))
                head += 1
            if head * 2 >= len(exp):  # compact: drop the expired front
                del exp[:head], amt[:head]
                head = 0
            q[2] = head
        return due

    def __len__(self) -> int:
        return sum(len(q[0]) - q[2] for q in self.by_term.values())

    def __getstate__(self) -> dict[int, list[Any]]:
        return self.by_term

    def __setstate__(self, state: dict[int, list[Any]]) -> None:
        self.by_term = state


class _Loan(SlotState):
    __slots__ = ("funded", "repaid", "mismatched", "short", "rolled", "outstanding", "active")

    def __init__(self) -> None:
        self.funded = 0
        self.repaid = 0
        self.mismatched = 0
        # product id -> [first funding ts, amount] for products shorter than the loan
        self.short: dict[str, list[int]] = {}
        self.rolled = False
        # principal still outstanding, as counted in the term ratio
        self.outstanding = 0
        self.active = False

    def settled(self) -> bool:
        """Issued and repaid in full: nothing of it is left in the open
        book or the term ratio, and no repayment can change that."""
        return self.active and not self.outstanding and self.repaid >= self.funded

    def open_parts(self) -> tuple[int, int]:
        """(open funded amount, open mismatched amount)."""
        if self.funded <= 0:
            return 0, 0
        open_funded = max(0, self.funded - self.repaid)
        return open_funded, self.mismatched * open_funded // self.funded


#: The exposure and ratio episodes last until the detector ends them.
_UNTIL_CLOSED = Episodes(gap_ms=None)


class _Platform(SlotState):
    __slots__ = (
        "loans",
        "book",
        "exposure",
        "exposure_episode",
        "lots",
        "loan_amount",
        "loan_weighted",
        "product_amount",
        "product_weighted",
        "expiries",
        "pending_loans",
        "ratio_episode",
        "ratio_moved",
        "last_ts",
        "mismatch_txns",
        "next_tick",
        "retiring",
    )

    def __init__(self) -> None:
        self.loans: dict[str, _Loan] = {}
        self.book = 0
        self.exposure = 0
        # The mismatch_exposure and term_ratio episodes: no gap, they last
        # until the detector ends them (_check_exposure, _check_ratio).
        self.exposure_episode = Episode()
        # controlled account -> lots (ts, remaining, product_id) (lineage)
        self.lots: dict[str, list[Lot]] = {}
        self.loan_amount = 0
        self.loan_weighted = 0
        self.product_amount = 0
        self.product_weighted = 0
        # product investments alive within their term
        self.expiries = _Expiries()
        # (issued_at, loan_id) of loans not yet issued
        self.pending_loans: list[tuple[int, str]] = []
        self.ratio_episode = Episode()
        # the term ratio's figures changed since the last tick looked at them
        self.ratio_moved = False
        self.last_ts = -1
        self.mismatch_txns: deque[str] = deque(maxlen=20)
        # The platform's own clock: its next tick (see base.Detector).
        self.next_tick = -1
        # (retire_at, loan_id) of settled loans: maturity plus engine.loan_retention_days
        self.retiring: list[tuple[int, str]] = []

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.retiring = []  # absent from checkpoints of version 1.0
        if "exposure_first" in state:  # checkpoints of 1.0 kept the episodes as numbers
            state = dict(state)
            del state["exposure_first"]
            for name in ("exposure_episode", "ratio_episode"):
                start = state[name]
                state[name] = Episode(start, start)
        super().__setstate__(state)
        self.lots = restored(self.lots)  # checkpoints of 1.0 kept deques of lists


class MaturityMismatch(Detector):
    """Finds maturity mismatch and term splitting; see the module docstring."""

    name = "maturity_mismatch"
    version = "1.0"
    # Its subjects are platforms, named by custody transactions only.
    flow_kinds = frozenset({"custody_txn"})

    def _fresh(self) -> dict[str, Any]:
        return {"platforms": {}}

    def _platform(self, pid: str) -> _Platform:
        st = self.platforms.get(pid)
        if st is None:
            st = self.platforms[pid] = _Platform()
        return st

    # -- reference -----------------------------------------------------------

    def _on_reference(self, record: Any) -> None:
        if type(record) is Loan:
            st = self._platform(record.platform_id)
            loan = st.loans.get(record.loan_id)
            if loan is None or not loan.active:
                heapq.heappush(st.pending_loans, (record.issued_at, record.loan_id))

    # -- flows ---------------------------------------------------------------

    def _on_flow(self, f: Flow) -> None:
        pid = f.platform_id
        if pid is None:
            return
        self._settle(pid, f.ts)
        if f.currency != "CNY":
            return
        purpose = f.purpose
        st = self.platforms.get(pid)
        if st is not None and f.ts >= st.next_tick:
            self._platform_tick(pid, st, f.ts)  # settle the past before this record
            st.next_tick = self._next_tick_after(f.ts)
        # Money leaving a controlled account takes its lots with it, first in
        # first out, whatever it is paid for (lots exist on controlled accounts only).
        taken = (
            [(lot[2], lot[1]) for lot in _FIFO.take(st.lots, f.src_id, f.amount, f.ts)]
            if st is not None and f.src_id in st.lots
            else None
        )
        if purpose == "invest" and f.product_id is not None:
            product = self.ref.products.get(f.product_id)
            if product is not None:
                if st is None:
                    st = self.platforms[pid] = _Platform()
                self._product_money(st, f, product.term_days)
        if f.loan_id is not None:
            if purpose in FUNDING_PURPOSES:
                if st is None:
                    st = self.platforms[pid] = _Platform()
                self._fund(pid, st, f, taken)
            elif purpose == "repay":
                self._repay(pid, f)
        elif purpose == "invest" and f.product_id is not None and f.dst_in:
            st = self._platform(pid)
            _FIFO.add(st.lots, f.dst_id, (f.ts, f.amount, f.product_id))
        elif taken and f.dst_in:
            for product, amount in taken:
                _FIFO.add(st.lots, f.dst_id, (f.ts, amount, product))  # type: ignore[union-attr]

    def _product_money(self, st: _Platform, f: Flow, term: int) -> None:
        st.product_amount += f.amount
        st.product_weighted += f.amount * term
        st.ratio_moved = True
        st.expiries.add(f.ts + term * DAY_MS, f.amount, term)

    def _fund(self, pid: str, st: _Platform, f: Flow, taken: list[tuple[str, int]] | None) -> None:
        loan_id: str = f.loan_id  # type: ignore[assignment]
        loan = st.loans.get(loan_id)
        if loan is None:
            loan = st.loans[loan_id] = _Loan()
        before = loan.open_parts()
        links = [(f.product_id, f.amount)] if f.product_id is not None else taken or []
        loan.funded += f.amount
        record = self.ref.loans.get(loan_id)
        if record is not None:
            for product_id, part in links:
                product = self.ref.products.get(product_id)
                if product is None or product.term_days >= record.term_days:
                    continue
                loan.mismatched += part
                st.mismatch_txns.append(f.txn_id)
                self._split(pid, st, loan_id, loan, product_id, product.term_days, part, f)
        self._rebook(pid, st, loan, before, f.ts)

    def _repay(self, pid: str, f: Flow) -> None:
        st = self.platforms.get(pid)
        if st is None:
            return
        loan = st.loans.get(f.loan_id)  # type: ignore[arg-type]
        if loan is None:
            return
        before = loan.open_parts()
        was_settled = loan.settled()
        loan.repaid += f.amount
        if loan.active:
            record = self.ref.loans.get(f.loan_id)  # type: ignore[arg-type]
            if record is not None:
                self._set_outstanding(
                    st, loan, max(0, record.principal - loan.repaid), record.term_days
                )
                if not was_settled and loan.settled():
                    self._retire(st, f.loan_id, record, f.ts)  # type: ignore[arg-type]
        self._rebook(pid, st, loan, before, f.ts)

    def _retire(self, st: _Platform, loan_id: str, record: Loan, now: int) -> None:
        """A loan has just been settled: forget it now if it matured more
        than the retention ago, else once it has."""
        retire_at = (
            record.issued_at + record.term_days * DAY_MS + self.config.engine.loan_retention_ms
        )
        if retire_at <= now:
            del st.loans[loan_id]
        else:
            heapq.heappush(st.retiring, (retire_at, loan_id))

    def _rebook(
        self, pid: str, st: _Platform, loan: _Loan, before: tuple[int, int], ts: int
    ) -> None:
        after = loan.open_parts()
        st.book += after[0] - before[0]
        st.exposure += after[1] - before[1]
        st.last_ts = max(st.last_ts, ts)
        self._check_exposure(pid, st, ts)

    # -- findings ------------------------------------------------------------

    def _check_exposure(self, pid: str, st: _Platform, now: int) -> None:
        cfg = self.config.maturity_mismatch
        exposure, book = st.exposure, st.book
        over = exposure > cfg.max_exposure or (
            book >= cfg.min_book and exposure * 100 > book * cfg.max_exposure_pct
        )
        if not over:
            # The episode (and its alert id) lasts until no mismatched money is
            # left open, so a book hovering at the threshold keeps one alert.
            if exposure <= 0:
                self._close(pid, "mismatch_exposure", st.exposure_episode)
            return
        _UNTIL_CLOSED.hold(st.exposure_episode, now)
        first = st.exposure_episode.start
        severity = band(
            exposure, ((cfg.severity_high, "high"), (cfg.severity_critical, "critical")), "medium"
        )
        aid = make_alert_id(self.name, pid, "mismatch_exposure", first)
        self.book.offer(
            aid,
            pid,
            severity,
            exposure,
            first,
            now,
            # The book can move below the line and back without a new offer:
            # the evidence is taken now.
            Stated(self._exposure_evidence(pid, st)),
            # The episode ends when its exposure closes (above).
            ends=_UNTIL_CLOSED.ends(st.exposure_episode),
        )

    def _exposure_evidence(self, pid: str, st: _Platform) -> tuple[list[str], str, dict[str, Any]]:
        rows = []
        for loan_id in sorted(st.loans):
            loan = st.loans[loan_id]
            open_funded, open_mismatched = loan.open_parts()
            if not open_mismatched:
                continue
            record = self.ref.loans.get(loan_id)
            rows.append(
                {
                    "loan_id": loan_id,
                    "loan_term_days": None if record is None else record.term_days,
                    "products": self._product_terms(loan),
                    "open_mismatched": yuan(open_mismatched),
                    "open_funded": yuan(open_funded),
                }
            )
        rows.sort(key=lambda r: (-int(r["open_mismatched"].replace(".", "")), r["loan_id"]))
        accounts = sorted(
            {
                self.ref.loans[r["loan_id"]].borrower_account
                for r in rows[:20]
                if r["loan_id"] in self.ref.loans
            }
        )
        share = ratio_text(st.exposure, st.book)
        summary = (
            f"Platform {pid} funds longer loans with shorter investor products: {yuan(st.exposure)} yuan "
            f"of its {yuan(st.book)} yuan open book ({share}) is mismatched across {len(rows)} loans."
        )
        evidence = {
            "signal": "mismatch_exposure",
            "mismatched_exposure": yuan(st.exposure),
            "open_book": yuan(st.book),
            "exposure_share": share,
            "loans": rows[:20],
            "sample_txn_ids": list(st.mismatch_txns),
        }
        return accounts, summary, evidence

    def _product_terms(self, loan: _Loan) -> list[dict[str, Any]]:
        out = []
        for product_id in sorted(loan.short):
            product = self.ref.products.get(product_id)
            out.append(
                {
                    "product_id": product_id,
                    "term_days": None if product is None else product.term_days,
                }
            )
        return out

    def _split(
        self,
        pid: str,
        st: _Platform,
        loan_id: str,
        loan: _Loan,
        product_id: str,
        term: int,
        part: int,
        f: Flow,
    ) -> None:
        entry = loan.short.get(product_id)
        if entry is None:
            loan.short[product_id] = [f.ts, part]
        else:
            if f.ts >= entry[0] + term * DAY_MS:
                loan.rolled = True
            entry[1] += part
        if len(loan.short) < 2 and not loan.rolled:
            return
        cfg = self.config.maturity_mismatch
        amount = sum(e[1] for e in loan.short.values())
        first = min(e[0] for e in loan.short.values())
        severity = band(
            amount, ((cfg.severity_high, "high"), (cfg.severity_critical, "critical")), "medium"
        )
        aid = make_alert_id(self.name, pid, "term_split", loan_id)
        record = self.ref.loans[loan_id]

        def build() -> tuple[list[str], str, dict[str, Any]]:
            products = self._product_terms(loan)
            how = (
                "rolled over"
                if loan.rolled and len(loan.short) < 2
                else f"split across {len(products)} products"
            )
            return (
                [record.borrower_account],
                f"Platform {pid} funds loan {loan_id} ({record.term_days} days) with shorter investor "
                f"products, {how}: {yuan(amount)} yuan.",
                {
                    "signal": "term_split",
                    "loan_id": loan_id,
                    "loan_term_days": record.term_days,
                    "loan_principal": yuan(record.principal),
                    "products": [
                        p | {"amount": yuan(loan.short[p["product_id"]][1])} for p in products
                    ],
                    "rolled_over": loan.rolled,
                    "sample_txn_ids": [f.txn_id],
                },
            )

        self.book.offer(aid, pid, severity, amount, first, f.ts, build, ends=self._day_ends(f.ts))

    # -- the book's term ratio -----------------------------------------------

    def _set_outstanding(self, st: _Platform, loan: _Loan, amount: int, term: int) -> None:
        delta = amount - loan.outstanding
        loan.outstanding = amount
        st.loan_amount += delta
        st.loan_weighted += delta * term
        st.ratio_moved = True

    def _on_tick(self, now: int) -> None:
        for pid in sorted(self.platforms):
            self._platform_tick(pid, self.platforms[pid], now)

    def _platform_tick(self, pid: str, st: _Platform, now: int) -> None:
        """Loans issued, product money run out, settled loans retired, and
        the term ratio, as of ``now``."""
        changed = False
        retention = self.config.engine.loan_retention_ms
        while st.pending_loans and st.pending_loans[0][0] <= now:
            _, loan_id = heapq.heappop(st.pending_loans)
            record = self.ref.loans.get(loan_id)
            if record is None or record.platform_id != pid:
                continue
            loan = st.loans.get(loan_id)
            if loan is not None and loan.active:
                continue
            retire_at = record.issued_at + record.term_days * DAY_MS + retention
            if retire_at <= now:
                continue  # matured longer ago than the retention: not booked
            if loan is None:
                loan = st.loans[loan_id] = _Loan()
            loan.active = True
            self._set_outstanding(
                st, loan, max(0, record.principal - loan.repaid), record.term_days
            )
            if loan.settled():  # repaid in full before it was issued
                heapq.heappush(st.retiring, (retire_at, loan_id))
            changed = True
        while st.retiring and st.retiring[0][0] <= now:
            _, loan_id = heapq.heappop(st.retiring)
            loan = st.loans.get(loan_id)
            if loan is not None and loan.settled():  # not lent again since
                del st.loans[loan_id]
        for amount, term in st.expiries.pop_due(now):
            st.product_amount -= amount
            st.product_weighted -= amount * term
            changed = True
        # Investor money and repayments move the ratio between ticks, however
        # long ago the last record was: look whenever a figure moved.
        if changed or st.ratio_moved or st.ratio_episode.start != NONE:
            st.ratio_moved = False
            self._check_ratio(pid, st, now)

    def _check_ratio(self, pid: str, st: _Platform, now: int) -> None:
        cfg = self.config.maturity_mismatch
        loans, products = st.loan_amount, st.product_amount
        if loans < cfg.min_book or products < cfg.min_book or st.product_weighted <= 0:
            if loans <= 0:
                self._close(pid, "term_ratio", st.ratio_episode)
            return
        # ratio = (loan_weighted / loans) / (product_weighted / products), in integers
        num = st.loan_weighted * products
        den = loans * st.product_weighted
        n, d = cfg.max_term_ratio.as_integer_ratio()
        if num * d <= n * den:
            # One alert per episode: it ends once loans are no longer than
            # the money funding them (ratio 1), not at every dip below the line.
            if num <= den:
                self._close(pid, "term_ratio", st.ratio_episode)
            return
        _UNTIL_CLOSED.hold(st.ratio_episode, now)
        episode = st.ratio_episode.start
        hn, hd = cfg.ratio_high.as_integer_ratio()
        cn, cd = cfg.ratio_critical.as_integer_ratio()
        severity = (
            "critical" if num * cd >= cn * den else "high" if num * hd >= hn * den else "medium"
        )
        aid = make_alert_id(self.name, pid, "term_ratio", episode)
        ratio = ratio_text(num, den, 2)
        loan_term = ratio_text(st.loan_weighted, loans, 1)
        product_term = ratio_text(st.product_weighted, products, 1)

        def build() -> tuple[list[str], str, dict[str, Any]]:
            return (
                [],
                f"Platform {pid}'s outstanding loans run {loan_term} days on average against "
                f"{product_term} days for its investors' money: a term ratio of {ratio}.",
                {
                    "signal": "term_ratio",
                    "term_ratio": ratio,
                    "loan_mean_term_days": loan_term,
                    "product_mean_term_days": product_term,
                    "outstanding_loans": yuan(loans),
                    "investor_money": yuan(products),
                    "as_of": iso(now, self.zone),
                },
            )

        # The episode ends when the ratio falls to 1 or the loans run out (above).
        ends = _UNTIL_CLOSED.ends(st.ratio_episode)
        self.book.offer(aid, pid, severity, loans, episode, now, build, ends=ends)

    def _close(self, pid: str, signal: str, episode: Episode) -> None:
        """An exposure or ratio episode (none open: nothing) has ended."""
        start = _UNTIL_CLOSED.end(episode)
        if start != NONE:
            self.book.close(pid, make_alert_id(self.name, pid, signal, start))

    def _on_finish(self) -> None:
        # The end of a stream: loans issued, money run out and the term ratio
        # as of its last event time.
        if self.now >= 0:
            self._on_tick(self.now)
