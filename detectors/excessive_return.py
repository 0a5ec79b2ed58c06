"""excessive_return — 超高回报 / 补贴 (seed 三(四): no "明显不合理的超高回报率以及
变相补贴"; no "通过自有资金补贴…向客户提供高回报金融产品"; watch products whose
promised return is "显著高于项目回报率或行业水平").

Per platform (the custody transaction's ``platform_id``), three signals:

``rate_above_peers``
    A product's promised ``annual_rate`` far above its peers': above
    median + max(``mad_multiplier`` x MAD, ``min_margin_pct``), where the
    median and the median absolute deviation (MAD) are taken over the rates
    of every other product known whose term falls in the same bucket
    (``term_buckets_days``), on any platform. A product is judged when it is
    first invested in (an ``invest`` naming it), against the products known
    at that moment, once there are at least ``min_peers`` of them (until
    then, at each later investment); a product judged clean stays clean.
    The alert's amount is the money invested in the product since.
``rate_above_loans``
    An ``invest`` naming a product and a loan whose promised rate exceeds
    the loan's own rate: the platform pays its investors more than the
    project earns, so the difference comes from somewhere else.
``own_money_subsidy``
    ``subsidy``, or ``interest`` naming no loan, paid from the platform's
    ``platform_own`` account to lenders (``lender_sub``/``personal``): at
    least ``subsidy_min_amount`` within ``subsidy_window_days``. Later
    payments while the episode lasts (within a window of the last: the
    window is its gap, :mod:`~fundflow.detectors.episodes`) add to it.

All rates are exact fractions (the record's decimal), never floats.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from fractions import Fraction
from math import lcm
from typing import Any

from fundflow.schemas.records import Product

from .alerting import band, iso, make_alert_id, ratio_text, yuan
from .base import Detector, SlotState
from .episodes import Episode, Episodes
from .reference import Flow
from .settings import (
    Custom,
    Days,
    Fen,
    Int,
    Percent,
    Ratio,
    section,
    setting,
    severity_rising,
)
from .windows import expire_sum


def _term_buckets(section: str, key: str, value: Any) -> tuple[int, ...]:
    if (
        not isinstance(value, list)
        or not value
        or not all(isinstance(b, int) and not isinstance(b, bool) and b > 0 for b in value)
        or value != sorted(set(value))
    ):
        raise ValueError(f"{section}.{key} must be a rising list of whole days > 0, got {value!r}")
    return tuple(value)


@section("excessive_return", checks=(severity_rising,))
@dataclass(frozen=True, slots=True)
class ExcessiveReturnConfig:
    """``[excessive_return]``."""

    term_buckets_days: tuple[int, ...] = setting(Custom(_term_buckets))
    min_peers: int = setting(Int(1))
    mad_multiplier: Fraction = setting(Ratio(0, 100))
    min_margin: Fraction = setting(Percent(), key="min_margin_pct")
    subsidy_window_ms: int = setting(Days(1, 366), key="subsidy_window_days")
    subsidy_min_amount: int = setting(Fen())
    severity_high: int = setting(Fen())
    severity_critical: int = setting(Fen())


LENDER_ROLES = frozenset({"lender_sub", "personal"})


def rate_text(rate: Fraction) -> str:
    """A rate as a decimal with four places: ``Fraction(9, 50) -> '0.1800'``."""
    return ratio_text(rate.numerator, rate.denominator)


def median(values: list[Fraction]) -> Fraction:
    """The median of a non-empty list (the mean of the two middle values
    when even).

    >>> median([Fraction(1), Fraction(3), Fraction(2), Fraction(10)])
    Fraction(5, 2)
    """
    s = sorted(values)
    n = len(s)
    return s[n // 2] if n % 2 else (s[n // 2 - 1] + s[n // 2]) / 2


class _Platform(SlotState):
    __slots__ = ("judged", "flagged", "above_loans", "events", "window_sum", "episode", "sub")

    def __init__(self) -> None:
        self.judged: set[str] = set()
        # product id -> [invested since judged, first ts, last ts, evidence dict]
        self.flagged: dict[str, list[Any]] = {}
        # product id -> [amount, first ts, last ts, {loan id: loan rate text}, txn ids]
        self.above_loans: dict[str, list[Any]] = {}
        # subsidies: (ts, fen, txn id, lender account, payer account)
        self.events: deque[tuple[int, int, str, str, str]] = deque()
        self.window_sum = 0
        # The own_money_subsidy episode, named by the oldest payment of the
        # window where it first held, and its figures:
        # [total, {payer account}, {lender account}, txn ids]
        self.episode = Episode()
        self.sub: list[Any] = []

    def __setstate__(self, state: dict[str, Any]) -> None:
        if not isinstance(state.get("episode", 0), Episode):  # checkpoints of 1.0
            state = dict(state)
            sub = state["sub"]
            state["episode"] = Episode(state["episode"], sub[1] if sub else -1)
            state["sub"] = [sub[0], *sub[2:]] if sub else []
        super().__setstate__(state)


class ExcessiveReturn(Detector):
    """Finds promised returns far above peers or projects, and own-money subsidies."""

    name = "excessive_return"
    version = "1.0"
    # Its subjects are platforms, named by custody transactions only.
    flow_kinds = frozenset({"custody_txn"})

    def _fresh(self) -> dict[str, Any]:
        # Derived from the reference's products, not state: (reference,
        # its product_version, term bucket -> sorted peer rates).
        self._peer_rates: tuple[Any, int, dict[int, list[tuple[int, str]]], int] | None = None
        self._subsidies = Episodes(self.config.excessive_return.subsidy_window_ms)
        return {"platforms": {}}

    def _state(self, pid: str) -> _Platform:
        st: _Platform | None = self.platforms.get(pid)
        if st is None:
            st = self.platforms[pid] = _Platform()
        return st

    def _on_flow(self, f: Flow) -> None:
        pid = f.platform_id
        if pid is None:
            return
        self._settle(pid, f.ts)
        if f.currency != "CNY":
            return
        purpose = f.purpose
        if purpose == "invest" and f.product_id is not None:
            product = self.ref.products.get(f.product_id)
            if product is not None:
                self._invest(pid, f, product)
        elif purpose == "subsidy" or (purpose == "interest" and f.loan_id is None):
            src, dst = f.src, f.dst
            if (
                src is not None
                and src.role == "platform_own"
                and (src.owner_id == pid or src.platform_id == pid)
                and dst is not None
                and dst.role in LENDER_ROLES
            ):
                self._subsidy(pid, f)

    # -- rates -----------------------------------------------------------------

    def _bucket(self, term: int) -> int:
        for i, limit in enumerate(self.config.excessive_return.term_buckets_days):
            if term <= limit:
                return i
        return len(self.config.excessive_return.term_buckets_days)

    def _bucket_text(self, i: int) -> str:
        limits = self.config.excessive_return.term_buckets_days
        low = 1 if i == 0 else limits[i - 1] + 1
        return f"{low}-{limits[i]} days" if i < len(limits) else f"over {limits[-1]} days"

    def _invest(self, pid: str, f: Flow, product: Product) -> None:
        st = self._state(pid)
        pid_product = product.product_id
        flagged = st.flagged.get(pid_product)
        if flagged is not None:
            flagged[0] += f.amount
            flagged[2] = f.ts
            self._offer_peers(pid, pid_product, flagged)
        elif pid_product not in st.judged:
            self._judge(pid, st, f, product)
        if f.loan_id is not None:
            loan = self.ref.loans.get(f.loan_id)
            if loan is not None and product.annual_rate > loan.annual_rate:
                self._above_loan(pid, st, f, product, loan.annual_rate)

    def _rates_by_bucket(self) -> tuple[dict[int, list[tuple[int, str]]], int]:
        """Every known product's rate, per term bucket, as ``(rate x scale,
        product id)`` sorted, with the common ``scale`` that makes each rate
        a whole number: exact, and sorted the way the fractions are. Built
        again only when a product record has arrived since."""
        ref = self.ref
        cached = self._peer_rates
        if cached is not None and cached[0] is ref and cached[1] == ref.product_version:
            return cached[2], cached[3]
        rates = [(Fraction(p.annual_rate), p) for p in ref.products.values()]
        scale = 1
        for r, _ in rates:
            scale = lcm(scale, r.denominator)
        buckets: dict[int, list[tuple[int, str]]] = {}
        for r, p in rates:
            whole = r.numerator * (scale // r.denominator)
            buckets.setdefault(self._bucket(p.term_days), []).append((whole, p.product_id))
        for peers in buckets.values():
            peers.sort()
        self._peer_rates = (ref, ref.product_version, buckets, scale)
        return buckets, scale

    def _judge(self, pid: str, st: _Platform, f: Flow, product: Product) -> None:
        cfg = self.config.excessive_return
        bucket = self._bucket(product.term_days)
        buckets, scale = self._rates_by_bucket()
        in_bucket = buckets.get(bucket, [])
        # The product itself is in its bucket (it is a known product).
        if len(in_bucket) - 1 < cfg.min_peers:
            return  # judged at a later investment, once enough peers are known
        peers = [peer for peer in in_bucket if peer[1] != product.product_id]
        st.judged.add(product.product_id)
        # Median and MAD in whole numbers of 1/(2 x scale) and 1/(4 x scale):
        # the same exact values as over the fractions.
        n = len(peers)
        mid2 = 2 * peers[n // 2][0] if n % 2 else peers[n // 2 - 1][0] + peers[n // 2][0]
        devs = sorted(abs(2 * r - mid2) for r, _ in peers)
        mid = Fraction(mid2, 2 * scale)
        mad = (
            Fraction(devs[n // 2], 2 * scale)
            if n % 2
            else Fraction(devs[n // 2 - 1] + devs[n // 2], 4 * scale)
        )
        limit = mid + max(cfg.mad_multiplier * mad, cfg.min_margin)
        rate = Fraction(product.annual_rate)
        if rate <= limit:
            return
        evidence = {
            "signal": "rate_above_peers",
            "product_id": product.product_id,
            "term_days": product.term_days,
            "annual_rate": rate_text(rate),
            "term_bucket": self._bucket_text(bucket),
            "peer_count": len(peers),
            "peer_median": rate_text(mid),
            "peer_mad": rate_text(mad),
            "limit": rate_text(limit),
            "peer_sample": [p for _, p in peers][:20],
            "judged_at_txn_id": f.txn_id,
        }
        st.flagged[product.product_id] = [f.amount, f.ts, f.ts, evidence]
        self._offer_peers(pid, product.product_id, st.flagged[product.product_id])

    def _offer_peers(self, pid: str, product_id: str, flagged: list[Any]) -> None:
        amount, first, last, ev = flagged

        def build() -> tuple[list[str], str, dict[str, Any]]:
            evidence = {
                **ev,
                "invested_since": yuan(amount),
                "first_seen": iso(first, self.zone),
                "last_seen": iso(last, self.zone),
                "sample_txn_ids": [ev["judged_at_txn_id"]],
            }
            summary = (
                f"Platform {pid} promises {ev['annual_rate']} a year on product {product_id} "
                f"({ev['term_days']} days), above the limit {ev['limit']} set by the median "
                f"{ev['peer_median']} of {ev['peer_count']} peer products "
                f"({ev['term_bucket']}); {yuan(amount)} yuan invested in it."
            )
            return [], summary, evidence

        self.book.offer(
            make_alert_id(self.name, pid, "rate_above_peers", product_id),
            pid,
            "medium",
            amount,
            first,
            last,
            build,
            # Money keeps coming into a flagged product: settled by the day.
            ends=self._day_ends(last),
        )

    def _above_loan(
        self, pid: str, st: _Platform, f: Flow, product: Product, loan_rate: Any
    ) -> None:
        product_id = product.product_id
        rec = st.above_loans.get(product_id)
        if rec is None:
            rec = st.above_loans[product_id] = [0, f.ts, f.ts, {}, []]
        rec[0] += f.amount
        rec[2] = f.ts
        loans = rec[3]
        if f.loan_id not in loans and len(loans) < 20:
            loans[f.loan_id] = rate_text(Fraction(loan_rate))
        if len(rec[4]) < self.config.alerts.sample_txns:
            rec[4].append(f.txn_id)
        amount, first, last = rec[0], rec[1], rec[2]
        rate = rate_text(Fraction(product.annual_rate))

        def build() -> tuple[list[str], str, dict[str, Any]]:
            evidence = {
                "signal": "rate_above_loans",
                "product_id": product_id,
                "annual_rate": rate,
                "loans": [{"loan_id": k, "annual_rate": v} for k, v in sorted(loans.items())],
                "invested": yuan(amount),
                "first_seen": iso(first, self.zone),
                "last_seen": iso(last, self.zone),
                "sample_txn_ids": list(rec[4]),
            }
            summary = (
                f"Platform {pid} promises {rate} a year on product {product_id} but puts "
                f"{yuan(amount)} yuan of it into {len(loans)} loan(s) paying less."
            )
            return [], summary, evidence

        self.book.offer(
            make_alert_id(self.name, pid, "rate_above_loans", product_id),
            pid,
            "high",
            amount,
            first,
            last,
            build,
            ends=self._day_ends(last),
        )

    # -- subsidies -------------------------------------------------------------

    def _subsidy(self, pid: str, f: Flow) -> None:
        cfg = self.config.excessive_return
        st = self._state(pid)
        window = cfg.subsidy_window_ms
        st.events.append((f.ts, f.amount, f.txn_id, f.dst_id, f.src_id))
        st.window_sum += f.amount - expire_sum(st.events, f.ts, window)
        episodes = self._subsidies
        if episodes.is_open(st.episode, f.ts):
            # Every payment while the episode lasts extends it and adds to it.
            episodes.hold(st.episode, f.ts)
            st.sub[0] += f.amount
            st.sub[1].add(f.src_id)
            st.sub[2].add(f.dst_id)
            if len(st.sub[3]) < self.config.alerts.sample_txns:
                st.sub[3].append(f.txn_id)
        elif st.window_sum >= max(cfg.subsidy_min_amount, 1):
            episodes.hold(st.episode, f.ts, start=st.events[0][0])
            st.sub = [
                st.window_sum,
                {e[4] for e in st.events},
                {e[3] for e in st.events},
                [e[2] for e in st.events][: self.config.alerts.sample_txns],
            ]
        else:
            return
        total, payers, lenders, txns = st.sub
        episode, last = st.episode.start, st.episode.last
        severity = band(
            total, ((cfg.severity_high, "high"), (cfg.severity_critical, "critical")), "medium"
        )

        def build() -> tuple[list[str], str, dict[str, Any]]:
            evidence = {
                "signal": "own_money_subsidy",
                "payer_accounts": sorted(payers),
                "lender_accounts": len(lenders),
                "subsidy": yuan(total),
                "first_seen": iso(episode, self.zone),
                "last_seen": iso(last, self.zone),
                "sample_txn_ids": list(txns),
            }
            summary = (
                f"Platform {pid} paid {yuan(total)} yuan of its own money to {len(lenders)} "
                f"lender account(s) as subsidy or interest from {', '.join(sorted(payers))}."
            )
            return sorted(payers), summary, evidence

        self.book.offer(
            make_alert_id(self.name, pid, "own_money_subsidy", episode),
            pid,
            severity,
            total,
            episode,
            last,
            build,
            # The episode goes on while payments come within a window of the last.
            ends=episodes.ends(st.episode),
        )
