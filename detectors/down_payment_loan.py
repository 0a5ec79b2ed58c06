"""down_payment_loan — 首付贷 (seed 二(一)4: "严禁各类机构开展'首付贷'等性质的业务").

Loan money must not pay for a home's down payment. Per platform (the
loan's platform), two signals:

``loan_to_real_estate``
    Money lent for a loan (a custody ``invest`` or ``disburse`` naming the
    ``loan_id``) is followed onward from the account it was paid into, first
    in first out, through custody and clearing transactions alike, for at
    most ``max_hops`` transfers and ``window_days`` after it was lent. When
    it reaches an account owned by an entity whose kind is in
    ``real_estate_kinds`` and the loan's money that reached such accounts
    comes to at least ``min_amount``, it is an alert (one per loan, growing
    as more arrives). A trail ends when the money goes back to the
    platform's ledger as ``repay``, ``fee`` or ``interest``, when it is lent
    again, or at its limits.
``declared_purpose``
    Money lent for a loan whose record states a purpose of
    ``declared_purposes`` (``real_estate_down_payment``): one alert per loan,
    growing with the money lent.

Money that left the loan's trail (spent elsewhere, repaid) and the
borrower's own money that came in later are not loan money: a borrower who
repays and then pays a developer from their own funds is not flagged.

Memory: the loan money still on a trail, a few small lots per account that
holds some (:mod:`~fundflow.detectors.lots`), each dropped once older than
the window plus the engine's allowed lateness (swept whenever their number
has doubled, and at heartbeats), plus one finding per flagged loan.

A trail can pass through any account (the borrower pays a relative, who
pays the developer): which platform's money a payment moves depends on the
trail, not on anything the record or the reference data says, so no key
brings a trail's payments to the platform's partition. On topics of more
than one partition the detector runs in the whole-stream worker, which reads
every partition into one engine (``whole_stream``; streams/README.md,
"Copies").
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .alerting import band, iso, make_alert_id, yuan
from .base import Detector, SlotState
from .lots import Fifo, Lot, restored
from .reference import Flow
from .settings import Days, Fen, Int, Names, section, setting


@section("down_payment_loan")
@dataclass(frozen=True, slots=True)
class DownPaymentConfig:
    """``[down_payment_loan]``."""

    window_ms: int = setting(Days(1, 366), key="window_days")
    max_hops: int = setting(Int(1, 10))
    min_amount: int = setting(Fen())
    real_estate_kinds: frozenset[str] = setting(
        Names(required="must name at least one entity kind")
    )
    declared_purposes: frozenset[str] = setting(Names())
    severity_high: int = setting(Fen())


LENDING_PURPOSES = frozenset({"invest", "disburse"})
# Custody purposes that take money back to the platform's ledger: the trail ends.
RETURN_PURPOSES = frozenset({"repay", "fee", "interest"})

# A lot of loan money: (platform, loan_id, lent_ts, remaining fen, hops, trail txn ids)


class _Finding(SlotState):
    __slots__ = ("first_ts", "last_ts", "amount", "txns", "accounts", "owners", "lent_ts")

    def __init__(self, lent_ts: int) -> None:
        self.lent_ts = lent_ts
        self.first_ts = -1
        self.last_ts = -1
        self.amount = 0
        self.txns: list[str] = []
        self.accounts: list[str] = []
        self.owners: list[str] = []


class DownPaymentLoan(Detector):
    """Finds loan money paying for homes; see the module docstring.

    >>> from fundflow.schemas.records import Entity
    >>> det = DownPaymentLoan()
    >>> det.update(Entity(entity_id="RE", name="RE", kind="real_estate")).alerts
    []
    """

    name = "down_payment_loan"
    version = "1.0"
    whole_stream = True

    def _fresh(self) -> dict[str, Any]:
        self._fifo = Fifo(
            self.config.down_payment_loan.window_ms,
            self.config.engine.dedup_window_ms,
            ts_at=2,
            fen_at=3,
        )
        return {
            # platform -> (signal, loan_id) -> finding
            "platforms": {},
            # account -> lots of loan money in it, oldest first
            "lots": {},
            "lot_count": 0,
            "sweep_at": 1 << 12,
            # platform -> its own event time (its custody feed), for sweeping its lots
            "clocks": {},
        }

    def _on_flow(self, f: Flow) -> None:
        if f.currency != "CNY":
            return
        pid = f.platform_id
        if f.custody and pid is not None and f.ts > self.clocks.get(pid, -1):
            self.clocks[pid] = f.ts
            self._settle(pid, f.ts)
        held = self.lots.get(f.src_id)
        lending = f.custody and f.purpose in LENDING_PURPOSES and f.loan_id is not None
        if held is not None:
            n = len(held)
            taken = self._fifo.take(self.lots, f.src_id, f.amount, f.ts)
            self.lot_count -= n - len(held)
            if taken and not lending and not (f.custody and f.purpose in RETURN_PURPOSES):
                self._pass_on(taken, f)
        if lending:
            self._lend(f)
        if self.lot_count > self.sweep_at:
            self._sweep(None)

    def _lend(self, f: Flow) -> None:
        loan = self.ref.loans.get(f.loan_id)  # type: ignore[arg-type]
        pid = loan.platform_id if loan is not None else f.platform_id
        if pid is None:
            return
        cfg = self.config.down_payment_loan
        if loan is not None and loan.purpose in cfg.declared_purposes:
            fd = self._finding(pid, "declared_purpose", f.loan_id, f.ts)  # type: ignore[arg-type]
            self._grow(fd, f, f.dst_id, f.dst.owner_id if f.dst is not None else None)
            self._offer(pid, "declared_purpose", f.loan_id, fd)  # type: ignore[arg-type]
        lot = (pid, f.loan_id, f.ts, f.amount, 0, (f.txn_id,))
        if self._reaches_real_estate(f):
            self._reached([lot], f)
            return
        self._store(f.dst_id, lot)

    def _pass_on(self, taken: list[Lot], f: Flow) -> None:
        max_hops = self.config.down_payment_loan.max_hops
        onward = [
            (pid, loan_id, lent_ts, part, hops + 1, (*trail, f.txn_id))
            for pid, loan_id, lent_ts, part, hops, trail in taken
            if hops < max_hops  # this transfer is one more hop
        ]
        if not onward:
            return
        if self._reaches_real_estate(f):
            self._reached(onward, f)
            return
        for lot in onward:
            self._store(f.dst_id, lot)

    def _store(self, account: str, lot: Lot) -> None:
        self._fifo.add(self.lots, account, lot)
        self.lot_count += 1

    def _reaches_real_estate(self, f: Flow) -> bool:
        dst = f.dst
        if dst is None:
            return False
        owner = self.ref.entities.get(dst.owner_id)
        return owner is not None and owner.kind in self.config.down_payment_loan.real_estate_kinds

    def _reached(self, lots: list[Lot], f: Flow) -> None:
        owner = f.dst.owner_id  # type: ignore[union-attr]
        for pid, loan_id, lent_ts, part, _hops, trail in lots:
            fd = self._finding(pid, "loan_to_real_estate", loan_id, lent_ts)
            fd.amount += part
            fd.first_ts = f.ts if fd.first_ts < 0 else min(fd.first_ts, f.ts)
            fd.last_ts = max(fd.last_ts, f.ts)
            cap = self.config.alerts.sample_txns
            for txn in trail:
                if txn not in fd.txns and len(fd.txns) < cap:
                    fd.txns.append(txn)
            if f.dst_id not in fd.accounts:
                fd.accounts.append(f.dst_id)
                fd.owners.append(owner)
            if fd.amount >= self.config.down_payment_loan.min_amount:
                self._offer(pid, "loan_to_real_estate", loan_id, fd)

    def _finding(self, pid: str, signal: str, loan_id: str, lent_ts: int) -> _Finding:
        per = self.platforms.get(pid)
        if per is None:
            per = self.platforms[pid] = {}
        fd = per.get((signal, loan_id))
        if fd is None:
            fd = per[(signal, loan_id)] = _Finding(lent_ts)
        return fd

    def _grow(self, fd: _Finding, f: Flow, account: str, owner: str | None) -> None:
        fd.amount += f.amount
        fd.first_ts = f.ts if fd.first_ts < 0 else min(fd.first_ts, f.ts)
        fd.last_ts = max(fd.last_ts, f.ts)
        if len(fd.txns) < self.config.alerts.sample_txns:
            fd.txns.append(f.txn_id)
        if account not in fd.accounts and len(fd.accounts) < 20:
            fd.accounts.append(account)
            fd.owners.append(owner or "unknown")

    def _offer(self, pid: str, signal: str, loan_id: str, fd: _Finding) -> None:
        cfg = self.config.down_payment_loan
        severity = band(fd.amount, ((cfg.severity_high, "high"),), "medium")
        aid = make_alert_id(self.name, pid, signal, loan_id)
        self.book.offer(
            aid,
            pid,
            severity,
            fd.amount,
            fd.first_ts,
            fd.last_ts,
            lambda: self._evidence(pid, signal, loan_id, fd),
            # A loan's money can go on arriving: settled by the day.
            ends=self._day_ends(fd.last_ts),
        )

    def _evidence(
        self, pid: str, signal: str, loan_id: str, fd: _Finding
    ) -> tuple[list[str], str, dict[str, Any]]:
        loan = self.ref.loans.get(loan_id)
        days = (fd.first_ts - fd.lent_ts) // 86_400_000
        if signal == "declared_purpose":
            summary = (
                f"Platform {pid} lent {yuan(fd.amount)} yuan for loan {loan_id}, whose stated "
                f"purpose is {loan.purpose if loan is not None else 'unknown'}."
            )
        else:
            summary = (
                f"{yuan(fd.amount)} yuan lent on platform {pid} for loan {loan_id} reached "
                f"real-estate account(s) {', '.join(fd.accounts)} ({', '.join(fd.owners)}) "
                f"{days} day(s) after it was lent."
            )
        evidence = {
            "signal": signal,
            "loan_id": loan_id,
            "loan_purpose": None if loan is None else loan.purpose,
            "borrower_account": None if loan is None else loan.borrower_account,
            "principal": None if loan is None else yuan(loan.principal),
            "lent_at": iso(fd.lent_ts, self.zone),
            "amount": yuan(fd.amount),
            "accounts": list(fd.accounts),
            "account_owners": list(fd.owners),
            "days_after_lending": days,
            "trail_txn_ids": list(fd.txns),
        }
        return list(fd.accounts), summary, evidence

    # -- memory ----------------------------------------------------------------

    def restore(self, blob: bytes) -> DownPaymentLoan:
        super().restore(blob)
        # Checkpoints written before hold deques or lists of lists.
        self.lots = restored(self.lots)
        return self

    def _on_tick(self, now: int) -> None:
        self._sweep(now)

    def _sweep(self, now: int | None) -> None:
        """Drop lots that no transaction could still use (the eviction rule
        of :mod:`~fundflow.detectors.lots`), by their platform's own clock
        (or ``now``, a heartbeat for every subject)."""
        if now is not None:
            count = self._fifo.evict(self.lots, now)
        else:
            clocks = self.clocks
            count = self._fifo.evict(self.lots, lambda lot: clocks.get(lot[0], -1))
        self.lot_count = count
        self.sweep_at = max(1 << 12, 2 * count)
