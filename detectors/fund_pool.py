"""fund_pool — 资金池 (seed 二(一)1: P2P platforms "不得设立资金池").

A platform is an information intermediary: a lender's money should move from
the lender's custody sub-account straight to the borrower's for a named loan.
A pool is lender money gathered in accounts the platform controls and paid
out from there. Two signals, per platform (the custody transaction's
``platform_id``), on the platform's custody ledger:

``gather_scatter``
    In a sliding window (default 7 days) the platform's controlled accounts
    receive lender money (from ``lender_sub`` or ``personal`` accounts, any
    purpose but ``fee``) from at least ``min_sources`` distinct accounts,
    together at least ``min_inflow``, and pay at least
    ``min_pass_through_pct`` of it onward to borrowers or lenders. Money
    moving between controlled accounts (intermediaries owned by related
    entities, then the pool account) is followed: it stays inside, and only
    lender money still inside can be paid out as pass-through. Fees up to
    ``fee_allowance_pct`` of what the platform's lenders invested in the
    window are not pool money; a fee beyond that allowance is.
``idle_investor_money``
    ``invest`` money with no ``loan_id`` credited to a ``platform_custody``
    account that has not left it (first in, first out, as lots of
    :mod:`~fundflow.detectors.lots`) a window after it arrived: money
    waiting for a borrower is a pool too.

A lender paying a borrower's sub-account directly for a named loan never
touches a controlled account and is never counted.

Each signal's finding is an episode (:mod:`~fundflow.detectors.episodes`):
``gather_scatter`` lasts while the rule holds again within a window, and is
named by the time it first held; ``idle_investor_money`` lasts, per
account, until the stranded money has left it, and is named by when it was
first seen.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Any

from .alerting import NO_END, Stated, band, iso, make_alert_id, ratio_text, yuan
from .base import Detector, SlotState
from .episodes import NONE, Episode, Episodes
from .lots import Fifo, Lot, restored
from .reference import Flow
from .settings import Days, Fen, Int, rising, section, setting
from .windows import expire


@section(
    "fund_pool",
    checks=(
        rising(
            "fund_pool severity bands must rise: medium <= high <= critical",
            "severity_medium", "severity_high", "severity_critical",
        ),
    ),
)  # fmt: skip
@dataclass(frozen=True, slots=True)
class FundPoolConfig:
    """``[fund_pool]``."""

    window_ms: int = setting(Days(1, 366), key="window_days")
    min_sources: int = setting(Int(1))
    min_inflow: int = setting(Fen())
    min_pass_through_pct: int = setting(Int(0, 100))
    fee_allowance_pct: int = setting(Int(0, 100))
    idle_min_amount: int = setting(Fen())
    severity_medium: int = setting(Fen())
    severity_high: int = setting(Fen())
    severity_critical: int = setting(Fen())


LENDER_ROLES = frozenset({"lender_sub", "personal"})
SINK_ROLES = frozenset({"borrower_sub", "lender_sub", "personal", "corporate"})
SINK_PURPOSES = frozenset({"disburse", "repay", "payout", "interest"})

# Idle money is kept until it leaves, however long: no window.
_FIFO = Fifo()

# Event kinds in a platform's window.
_IN, _OUT, _INVEST, _FEE = 0, 1, 2, 3


class _Platform(SlotState):
    """One platform's window and what is inside its controlled accounts."""

    __slots__ = (
        "events",
        "inflow",
        "outflow",
        "invested",
        "fees",
        "sources",
        "sinks",
        "pool_accounts",
        "taint",
        "lots",
        "gathering",
        "episode_first",
        "idle_episode",
        "next_tick",
    )

    def __init__(self) -> None:
        # The platform's own clock: its next tick (see base.Detector).
        self.next_tick = -1
        # (ts, kind, amount, party account, txn_id, controlled account)
        self.events: deque[tuple[int, int, int, str, str, str]] = deque()
        self.inflow = 0
        self.outflow = 0
        self.invested = 0
        self.fees = 0
        self.sources: dict[str, int] = {}
        self.sinks: dict[str, int] = {}
        self.pool_accounts: dict[str, int] = {}
        # controlled account -> lender money still in it
        self.taint: dict[str, int] = {}
        # platform_custody account -> lots (ts, remaining, txn_id) of invest money with no loan
        self.lots: dict[str, list[Lot]] = {}
        # The gather_scatter episode, and the first receipt in its window.
        self.gathering = Episode()
        self.episode_first = -1
        # platform_custody account -> its idle_investor_money episode, named
        # by when the stranded money was first seen
        self.idle_episode: dict[str, Episode] = {}

    def __setstate__(self, state: dict[str, Any]) -> None:
        if "last_true" in state:  # checkpoints of 1.0 kept the episodes as numbers
            state = dict(state)
            start, last = state.pop("episode"), state.pop("last_true")
            state["gathering"] = Episode(start, last if start != NONE else NONE)
            state["idle_episode"] = {a: Episode(t, t) for a, t in state["idle_episode"].items()}
        super().__setstate__(state)
        self.lots = restored(self.lots)  # checkpoints of 1.0 kept deques of lists


#: An idle_investor_money episode lasts until the money leaves.
_IDLE = Episodes(gap_ms=None)


def _bump(counts: dict[str, int], key: str) -> None:
    counts[key] = counts.get(key, 0) + 1


def _drop(counts: dict[str, int], key: str) -> None:
    n = counts[key] - 1
    if n:
        counts[key] = n
    else:
        del counts[key]


class FundPool(Detector):
    """Finds fund pools; see the module docstring for the rule.

    >>> from fundflow.schemas.records import Account, CustodyTxn
    >>> det = FundPool()
    >>> _ = det.update(Account(account_id="POOL", owner_id="P", bank_id="B",
    ...                        role="platform_custody", platform_id="P"))
    >>> det.alerts
    []
    """

    name = "fund_pool"
    version = "1.0"
    # Its subjects are platforms, named by custody transactions only.
    flow_kinds = frozenset({"custody_txn"})

    def _fresh(self) -> dict[str, Any]:
        cfg = self.config.fund_pool
        self._window = cfg.window_ms
        self._gathering = Episodes(self._window)
        return {"platforms": {}}

    # -- flows ---------------------------------------------------------------

    def _on_flow(self, f: Flow) -> None:
        pid = f.platform_id
        if pid is None:
            return
        self._settle(pid, f.ts)
        if f.currency != "CNY":
            return
        src = f.src
        src_in = f.src_in
        dst_in = f.dst_in
        from_lender = src is not None and src.role in LENDER_ROLES and not src_in
        if not (src_in or dst_in or (from_lender and f.purpose == "invest")):
            return
        st: _Platform | None = self.platforms.get(pid)
        if st is None:
            st = self.platforms[pid] = _Platform()
        if f.ts >= st.next_tick:
            if st.lots:
                self._check_idle(pid, st, f.ts)  # settle the past before this record
            st.next_tick = self._next_tick_after(f.ts)
        self._expire(st, f.ts)
        if from_lender and f.purpose == "invest":
            # Only the amount of an invest event is ever read back: no ids kept.
            st.events.append((f.ts, _INVEST, f.amount, "", "", ""))
            st.invested += f.amount
        if src_in and dst_in:
            self._move_inside(st, f)
        elif dst_in and from_lender:
            self._gather(st, f)
            self._check(pid, st, f.ts)
        elif src_in:
            self._consume_lots(pid, st, f)
            if self._scatter(st, f):
                self._check(pid, st, f.ts)

    def _gather(self, st: _Platform, f: Flow) -> None:
        if f.purpose == "fee":
            allowance = st.invested * self.config.fund_pool.fee_allowance_pct // 100
            if st.fees + f.amount <= allowance:
                st.events.append((f.ts, _FEE, f.amount, "", "", ""))
                st.fees += f.amount
                return
        st.events.append((f.ts, _IN, f.amount, f.src_id, f.txn_id, f.dst_id))
        st.inflow += f.amount
        _bump(st.sources, f.src_id)
        _bump(st.pool_accounts, f.dst_id)
        st.taint[f.dst_id] = st.taint.get(f.dst_id, 0) + f.amount
        if (
            f.purpose == "invest"
            and f.loan_id is None
            and f.dst is not None
            and f.dst.role == "platform_custody"
        ):
            _FIFO.add(st.lots, f.dst_id, (f.ts, f.amount, f.txn_id))

    def _move_inside(self, st: _Platform, f: Flow) -> None:
        """Money between two controlled accounts: lender money follows it."""
        self._consume_lots(f.platform_id, st, f)  # type: ignore[arg-type]
        have = st.taint.get(f.src_id, 0)
        if have:
            moved = min(have, f.amount)
            if have == moved:
                del st.taint[f.src_id]
            else:
                st.taint[f.src_id] = have - moved
            st.taint[f.dst_id] = st.taint.get(f.dst_id, 0) + moved

    def _scatter(self, st: _Platform, f: Flow) -> bool:
        dst = f.dst
        if dst is not None:
            if dst.role not in SINK_ROLES:
                return False
        elif f.purpose not in SINK_PURPOSES:
            return False
        have = st.taint.get(f.src_id, 0)
        if not have:
            return False  # the platform's own money, not pass-through
        moved = min(have, f.amount)
        if have == moved:
            del st.taint[f.src_id]
        else:
            st.taint[f.src_id] = have - moved
        st.events.append((f.ts, _OUT, moved, f.dst_id, f.txn_id, f.src_id))
        st.outflow += moved
        _bump(st.sinks, f.dst_id)
        # The account paying lender money out is a pool account too, even when
        # the money was gathered by an intermediary and forwarded to it.
        _bump(st.pool_accounts, f.src_id)
        return True

    def _consume_lots(self, pid: str, st: _Platform, f: Flow) -> None:
        """Money leaving ``f.src_id`` takes its idle lots, oldest first."""
        account = f.src_id
        if account not in st.lots:
            return
        _FIFO.take(st.lots, account, f.amount, f.ts)
        if account not in st.lots:
            episode = _IDLE.end_key(st.idle_episode, account)
            if episode != NONE:
                # The stranded money has left: its episode is over.
                aid = make_alert_id(self.name, pid, "idle_investor_money", account, episode)
                self.book.close(pid, aid)

    def _expire(self, st: _Platform, now: int) -> None:
        for _ts, kind, amount, party, _txn, account in expire(st.events, now, self._window):
            if kind == _IN:
                st.inflow -= amount
                _drop(st.sources, party)
                _drop(st.pool_accounts, account)
            elif kind == _OUT:
                st.outflow -= amount
                _drop(st.sinks, party)
                _drop(st.pool_accounts, account)
            elif kind == _INVEST:
                st.invested -= amount
            else:
                st.fees -= amount

    # -- findings ------------------------------------------------------------

    def _severity(self, amount: int) -> str:
        """Severity of a pool by the money gathered (or stranded)."""
        cfg = self.config.fund_pool
        return band(
            amount,
            (
                (cfg.severity_medium, "medium"),
                (cfg.severity_high, "high"),
                (cfg.severity_critical, "critical"),
            ),
            "low",
        )

    def _check(self, pid: str, st: _Platform, now: int) -> None:
        cfg = self.config.fund_pool
        inflow = st.inflow
        if (
            len(st.sources) < cfg.min_sources
            or inflow < cfg.min_inflow
            or st.outflow * 100 < inflow * cfg.min_pass_through_pct
        ):
            return
        if self._gathering.hold(st.gathering, now):
            st.episode_first = next(ts for ts, kind, *_ in st.events if kind == _IN)
        severity = self._severity(inflow)
        aid = make_alert_id(self.name, pid, "gather_scatter", st.gathering.start)
        # The window moves on with every record: the evidence is taken now.
        self.book.offer(
            aid,
            pid,
            severity,
            inflow,
            st.episode_first,
            now,
            Stated(self._evidence(pid, st, now)),
            # The episode lasts while the rule holds again within a window.
            ends=self._gathering.ends(st.gathering),
        )

    def _evidence(self, pid: str, st: _Platform, now: int) -> tuple[list[str], str, dict[str, Any]]:
        n = self.config.alerts.sample_txns
        # The first n receipts and n // 2 payments in the window, oldest first:
        # the scan stops once it has them.
        ins: list[str] = []
        outs: list[str] = []
        for e in st.events:
            kind = e[1]
            if kind == _IN:
                if len(ins) < n:
                    ins.append(e[4])
            elif kind == _OUT and len(outs) < n // 2:
                outs.append(e[4])
            if len(ins) >= n and len(outs) >= n // 2:
                break
        k_out = min(len(outs), n // 2)
        samples = ins[: n - k_out] + outs[:k_out]
        pools = sorted(st.pool_accounts, key=lambda a: (-st.pool_accounts[a], a))
        ratio = ratio_text(st.outflow, st.inflow)
        evidence = {
            "signal": "gather_scatter",
            "pool_accounts": pools[:20],
            "distinct_sources": len(st.sources),
            "distinct_sinks": len(st.sinks),
            "inflow": yuan(st.inflow),
            "outflow": yuan(st.outflow),
            "pass_through_ratio": ratio,
            "window_start": iso(now - self._window, self.zone),
            "window_end": iso(now, self.zone),
            "sample_txn_ids": samples,
        }
        summary = (
            f"Platform {pid} gathered {yuan(st.inflow)} yuan from {len(st.sources)} lender accounts "
            f"through {len(pools)} account(s) it controls within {self._window // 86_400_000} days "
            f"and paid {ratio} of it on to {len(st.sinks)} borrower/lender accounts."
        )
        return pools[:20], summary, evidence

    def _on_tick(self, now: int) -> None:
        for pid in sorted(self.platforms):
            st = self.platforms[pid]
            if st.lots:
                self._check_idle(pid, st, now)

    def _check_idle(self, pid: str, st: _Platform, now: int) -> None:
        cfg = self.config.fund_pool
        horizon = now - self._window
        for account in sorted(st.lots):
            stranded = 0
            first_ts = -1
            txns: list[str] = []
            for ts, remaining, txn_id in st.lots[account]:
                if ts > horizon:
                    break
                if first_ts < 0:
                    first_ts = ts
                stranded += remaining
                txns.append(txn_id)
            if stranded < max(cfg.idle_min_amount, 1):
                continue
            episode = _IDLE.hold_key(st.idle_episode, account, now, start=first_ts)[0].start
            severity = self._severity(stranded)
            aid = make_alert_id(self.name, pid, "idle_investor_money", account, episode)
            self.book.offer(
                aid,
                pid,
                severity,
                stranded,
                first_ts,
                now,
                lambda pid=pid, account=account, stranded=stranded, first_ts=first_ts, txns=txns: (
                    [account],
                    f"Platform {pid} holds {yuan(stranded)} yuan of investors' money with no loan "
                    f"in custody account {account} for longer than {self._window // 86_400_000} days.",
                    {
                        "signal": "idle_investor_money",
                        "pool_accounts": [account],
                        "stranded": yuan(stranded),
                        "oldest_since": iso(first_ts, self.zone),
                        "as_of": iso(now, self.zone),
                        "sample_txn_ids": txns[: self.config.alerts.sample_txns],
                    },
                ),
                # The episode ends when the money leaves (_consume_lots).
                ends=NO_END,
            )

    def _on_finish(self) -> None:
        # The end of a stream: idle money as of its last event time.
        if self.now >= 0:
            self._on_tick(self.now)
