"""guaranteed_return — 保本保息 (seed 二(一)1: a P2P platform must not promise
lenders their principal and interest, "不得提供增信服务 / 承诺保本保息").

An information intermediary passes on what borrowers repay; it does not pay
lenders out of its own pocket. Per platform (the custody transaction's
``platform_id``), one signal, ``platform_paid_lenders``: the platform's
``platform_own`` or ``risk_reserve`` account pays lenders (``lender_sub`` or
``personal`` accounts; purpose ``repay``, ``payout`` or ``interest``) for a
loan more than that loan's borrower has paid into the platform's accounts
at that moment. For each loan the detector keeps what the borrower (its
``borrower_account``, or any account of the same owner) paid into accounts
the platform controls as ``repay`` naming the loan, and what those accounts paid on to
lenders naming it; a payment from the own or risk-reserve account beyond
the borrower's money is uncovered. A ``repay`` or ``payout`` to lenders from
those accounts naming no loan is uncovered in full (nothing a borrower paid
can back it; ``interest`` naming no loan is a subsidy, see excessive_return).
Paying first and collecting later (垫付) is a guarantee too: what was
uncovered when paid stays counted.

Uncovered payments within ``episode_gap_days`` of each other make one
episode (:mod:`~fundflow.detectors.episodes`, that gap), one alert, emitted once it reaches ``min_amount`` and again as it
grows. A loan's record is dropped ``loan_grace_days`` after its maturity.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from fundflow.schemas.records import Account

from .alerting import Stated, band, iso, make_alert_id, yuan
from .base import Detector, SlotState
from .config import DAY_MS
from .episodes import Episode, Episodes
from .reference import Flow
from .settings import Days, Fen, section, setting, severity_rising


@section("guaranteed_return", checks=(severity_rising,))
@dataclass(frozen=True, slots=True)
class GuaranteedReturnConfig:
    """``[guaranteed_return]``."""

    min_amount: int = setting(Fen())
    loan_grace_ms: int = setting(Days(0, 3660), key="loan_grace_days")
    episode_gap_ms: int = setting(Days(1, 366), key="episode_gap_days")
    severity_high: int = setting(Fen())
    severity_critical: int = setting(Fen())


LENDER_ROLES = frozenset({"lender_sub", "personal"})
PAYER_ROLES = frozenset({"platform_own", "risk_reserve"})
PAYOUT_PURPOSES = frozenset({"repay", "payout", "interest"})
NO_LOAN = ""


class _Platform(SlotState):
    __slots__ = (
        "loans",
        "episode",
        "amount",
        "by_loan",
        "payers",
        "samples",
        "next_tick",
    )

    def __init__(self) -> None:
        # loan id -> [borrower money in, paid on to lenders, uncovered, last ts]
        self.loans: dict[str, list[int]] = {}
        # The platform_paid_lenders episode: started and last extended at an
        # uncovered payment.
        self.episode = Episode()
        self.amount = 0
        self.by_loan: dict[str, int] = {}  # uncovered per loan in the episode
        self.payers: dict[str, int] = {}
        self.samples: list[str] = []
        self.next_tick = -1

    def __setstate__(self, state: dict[str, Any]) -> None:
        if "last_uncovered" in state:  # checkpoints of 1.0 kept the episode as numbers
            state = dict(state)
            state["episode"] = Episode(state["episode"], state.pop("last_uncovered"))
        super().__setstate__(state)


class GuaranteedReturn(Detector):
    """Finds platforms paying lenders what borrowers did not; see the module docstring."""

    name = "guaranteed_return"
    version = "1.0"
    # Its subjects are platforms, named by custody transactions only.
    flow_kinds = frozenset({"custody_txn"})

    def _fresh(self) -> dict[str, Any]:
        self._episodes = Episodes(self.config.guaranteed_return.episode_gap_ms)
        return {"platforms": {}}

    @staticmethod
    def _platform_side(pid: str, account: Account, controlled: bool) -> bool:
        """The platform's own side: an account it controls (``controlled``,
        resolved on the flow) or its risk reserve."""
        return controlled or (account.role == "risk_reserve" and account.platform_id == pid)

    def _on_flow(self, f: Flow) -> None:
        pid = f.platform_id
        if pid is None:
            return
        self._settle(pid, f.ts)
        if f.currency != "CNY":
            return
        src, dst = f.src, f.dst
        if src is None or dst is None:
            return
        loan_id = f.loan_id
        if dst.role in LENDER_ROLES and f.purpose in PAYOUT_PURPOSES:
            if self._platform_side(pid, src, f.src_in):
                if loan_id is None and f.purpose == "interest":
                    return
                self._paid_on(pid, f, src, loan_id or NO_LOAN)
            return
        if (
            loan_id is not None
            and f.purpose == "repay"
            and self._platform_side(pid, dst, f.dst_in)
            and self._borrower(loan_id, src)
        ):
            st = self._state(pid, f.ts)
            rec = st.loans.setdefault(loan_id, [0, 0, 0, f.ts])
            rec[0] += f.amount
            rec[3] = f.ts

    def _borrower(self, loan_id: str, account: Account) -> bool:
        loan = self.ref.loans.get(loan_id)
        if loan is None:
            return False
        if account.account_id == loan.borrower_account:
            return True
        sub = self.ref.accounts.get(loan.borrower_account)
        return sub is not None and sub.owner_id == account.owner_id

    def _state(self, pid: str, now: int) -> _Platform:
        st: _Platform | None = self.platforms.get(pid)
        if st is None:
            st = self.platforms[pid] = _Platform()
        if now >= st.next_tick:
            self._evict(st, now)
            st.next_tick = self._next_tick_after(now)
        return st

    def _evict(self, st: _Platform, now: int) -> None:
        grace = self.config.guaranteed_return.loan_grace_ms
        loans = self.ref.loans
        for loan_id in [k for k in st.loans if k != NO_LOAN]:
            loan = loans.get(loan_id)
            last = st.loans[loan_id][3]
            end = last if loan is None else max(last, loan.issued_at + loan.term_days * DAY_MS)
            if now > end + grace:
                del st.loans[loan_id]

    def _paid_on(self, pid: str, f: Flow, src: Account, loan_id: str) -> None:
        st = self._state(pid, f.ts)
        rec = st.loans.setdefault(loan_id, [0, 0, 0, f.ts])
        rec[1] += f.amount
        rec[3] = f.ts
        if src.role not in PAYER_ROLES:
            return
        # What the platform's accounts paid on beyond the borrower's money and
        # beyond what was already counted uncovered.
        deficit = rec[1] - rec[0] - rec[2] if loan_id != NO_LOAN else f.amount
        uncovered = min(f.amount, max(0, deficit))
        if uncovered == 0:
            return
        rec[2] += uncovered
        if self._episodes.hold(st.episode, f.ts):
            st.amount = 0
            st.by_loan = {}
            st.payers = {}
            st.samples = []
        st.amount += uncovered
        st.by_loan[loan_id] = st.by_loan.get(loan_id, 0) + uncovered
        st.payers[f.src_id] = st.payers.get(f.src_id, 0) + uncovered
        if len(st.samples) < self.config.alerts.sample_txns:
            st.samples.append(f.txn_id)
        self._offer(pid, st)

    def _offer(self, pid: str, st: _Platform) -> None:
        cfg = self.config.guaranteed_return
        if st.amount < max(cfg.min_amount, 1):
            return
        severity = band(
            st.amount, ((cfg.severity_high, "high"), (cfg.severity_critical, "critical")), "medium"
        )
        self.book.offer(
            make_alert_id(self.name, pid, "platform_paid_lenders", st.episode.start),
            pid,
            severity,
            st.amount,
            st.episode.start,
            st.episode.last,
            # Borrowers' repayments move the loans' figures without a new
            # offer: the evidence is taken now.
            Stated(self._evidence(pid, st)),
            ends=self._episodes.ends(st.episode),
        )

    def _evidence(self, pid: str, st: _Platform) -> tuple[list[str], str, dict[str, Any]]:
        loans = []
        for loan_id in sorted(st.by_loan, key=lambda k: (-st.by_loan[k], k))[:20]:
            rec = st.loans.get(loan_id, [0, 0, 0, 0])
            loan = self.ref.loans.get(loan_id)
            loans.append(
                {
                    "loan_id": loan_id or None,
                    "borrower_account": None if loan is None else loan.borrower_account,
                    "borrower_paid_in": yuan(rec[0]),
                    "paid_to_lenders": yuan(rec[1]),
                    "uncovered": yuan(st.by_loan[loan_id]),
                }
            )
        payers = sorted(st.payers)
        evidence = {
            "signal": "platform_paid_lenders",
            "payer_accounts": payers,
            "uncovered": yuan(st.amount),
            "loans": loans,
            "loan_count": len(st.by_loan),
            "first_seen": iso(st.episode.start, self.zone),
            "last_seen": iso(st.episode.last, self.zone),
            "sample_txn_ids": list(st.samples),
        }
        summary = (
            f"Platform {pid} paid lenders {yuan(st.amount)} yuan from its own or risk-reserve "
            f"account(s) {', '.join(payers)} beyond what the borrowers of {len(st.by_loan)} "
            "loan(s) had repaid."
        )
        return payers, summary, evidence
