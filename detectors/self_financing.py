"""self_financing — 自融 (seed 二(一)1: a P2P platform must not raise money for
itself or its related parties).

Per platform (the custody transaction's ``platform_id``), two signals:

``related_account``
    Lender money reaches an account owned by a related party of the
    platform within ``max_hops`` transfers and ``window_days`` of leaving the
    lender. Lender money is what a ``lender_sub`` or ``personal`` account
    pays (not a ``fee``) to any account but another lender's, from the
    lender's sub-account on (a shell borrower's withdrawal paid on to a
    company the platform's executive controls is three transfers), and what
    leaves the platform's ``platform_custody`` account (a custody master
    holds lenders' money). It is followed first-in-first-out, amount by
    amount, through every account it passes (a transfer takes the lender
    money held in its account first, so a platform cannot hide it behind
    money of its own); money paid back to a lender, or paid as a ``fee`` by
    any account but the custody master, is no longer followed.
``related_borrower``
    A loan whose borrower account is owned by a related party is funded
    (``invest``/``disburse`` naming the loan, into the borrower account).

Related parties are those of :meth:`~fundflow.detectors.ownership.Ownership.related_parties`:
shareholders, controllers, executives, affiliates and subsidiaries, who
controls them, and what they control, looked through chains of companies
(the graph is kept from ``entity`` records as they change). An alert names
one related account or loan; it grows with the money that reaches it and
is emitted once the total reaches ``min_amount``. The evidence holds the
chain of accounts and transactions the money took, and the ownership chain
that makes the owner related.

The money is followed as lots (:mod:`~fundflow.detectors.lots`). Memory
stays bounded: money is followed for ``window_days`` only, and lots older
than that plus the engine's dedup horizon (the lateness a record may still
have) are dropped as the platform's clock passes its ticks.
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction
from typing import Any

from fundflow.schemas.records import Entity

from .alerting import band, iso, make_alert_id, yuan
from .base import Detector, SlotState
from .lots import Fifo, Lot, restored
from .ownership import Ownership
from .reference import Flow
from .settings import Days, Fen, Int, Percent, section, setting, severity_rising


@section("self_financing", checks=(severity_rising,))
@dataclass(frozen=True, slots=True)
class SelfFinancingConfig:
    """``[self_financing]``."""

    control_share: Fraction = setting(Percent(below_100=True), key="control_share_pct")
    look_through_depth: int = setting(Int(1, 10))
    max_hops: int = setting(Int(1, 10))
    window_ms: int = setting(Days(1, 366), key="window_days")
    min_amount: int = setting(Fen())
    severity_high: int = setting(Fen())
    severity_critical: int = setting(Fen())


LENDER_ROLES = frozenset({"lender_sub", "personal"})
FUNDING_PURPOSES = frozenset({"invest", "disburse"})

# A lot of lender money in one account: (origin ts, fen, accounts passed, txn ids).


class _Finding(SlotState):
    __slots__ = ("amount", "first_ts", "last_ts", "accounts", "txns", "samples", "owner", "chain")

    def __init__(self, ts: int, owner: str, chain: tuple[str, ...]) -> None:
        self.amount = 0
        self.first_ts = ts
        self.last_ts = ts
        self.accounts: tuple[str, ...] = ()  # the money's path, first seen
        self.txns: tuple[str, ...] = ()
        self.samples: list[str] = []
        self.owner = owner
        self.chain = chain


class _Platform(SlotState):
    __slots__ = ("lots", "findings", "next_tick")

    def __init__(self) -> None:
        self.lots: dict[str, list[Lot]] = {}
        # (signal, account or loan id) -> finding
        self.findings: dict[tuple[str, str], _Finding] = {}
        self.next_tick = -1

    def __setstate__(self, state: dict[str, Any]) -> None:
        super().__setstate__(state)
        self.lots = restored(self.lots)  # checkpoints of 1.0 kept deques of lists


class SelfFinancing(Detector):
    """Finds lender money reaching a platform's related parties; see the module docstring."""

    name = "self_financing"
    version = "1.0"
    # Its subjects are platforms, named by custody transactions only.
    flow_kinds = frozenset({"custody_txn"})

    def _fresh(self) -> dict[str, Any]:
        cfg = self.config.self_financing
        self._fifo = Fifo(cfg.window_ms, self.config.engine.dedup_window_ms)
        graph = Ownership(cfg.control_share, cfg.look_through_depth)
        for entity in self.ref.entities.values():
            graph.update(entity)
        return {"platforms": {}, "graph": graph}

    def _on_reference(self, record: Any) -> None:
        if type(record) is Entity:
            self.graph.update(record)

    # -- flows ---------------------------------------------------------------

    def _on_flow(self, f: Flow) -> None:
        pid = f.platform_id
        if pid is None:
            return
        self._settle(pid, f.ts)
        if f.currency != "CNY":
            return
        src, dst = f.src, f.dst
        st: _Platform | None = self.platforms.get(pid)
        if st is not None and f.ts >= st.next_tick:
            self._fifo.trim(st.lots, f.ts)
            st.next_tick = self._next_tick_after(f.ts)
        held = st is not None and f.src_id in st.lots
        custody_out = src is not None and src.role == "platform_custody" and src.platform_id == pid
        lender_in = (
            src is not None
            and src.role in LENDER_ROLES
            and f.purpose != "fee"
            and (dst is None or dst.role not in LENDER_ROLES)
        )
        borrower = self._related_borrower(pid, f)
        if not (held or custody_out or lender_in or borrower):
            return
        if st is None:
            st = self.platforms[pid] = _Platform()
            st.next_tick = self._next_tick_after(f.ts)
        moved = self._fifo.take(st.lots, f.src_id, f.amount, f.ts) if held else []
        if f.purpose == "fee" and not custody_out:
            # A fee paid out of lender money (a borrower's charge to the
            # platform) is the payee's income: the lenders' money ends there.
            moved = []
        if custody_out or lender_in:
            # Money a custody master pays out beyond what is followed in it is
            # lenders' money too: the lender money starts its way here.
            rest = f.amount - sum(lot[1] for lot in moved)
            if rest > 0:
                moved.append((f.ts, rest, (f.src_id,), ()))
        if borrower is not None:
            loan_id, owner, chain = borrower
            lot = moved[0] if moved else (f.ts, f.amount, (f.src_id,), ())
            path = (lot[2] + (f.dst_id,), lot[3] + (f.txn_id,))
            self._found(pid, st, "related_borrower", loan_id, f, f.amount, owner, chain, path)
            return
        self._arrive(pid, st, f, moved)

    def _related(self, pid: str, owner: str) -> tuple[str, ...] | None:
        return self.graph.related_parties(pid).get(owner)

    def _related_borrower(self, pid: str, f: Flow) -> tuple[str, str, tuple[str, ...]] | None:
        """(loan id, owner, ownership chain) when ``f`` funds a loan of a related borrower."""
        if f.loan_id is None or f.purpose not in FUNDING_PURPOSES or f.dst is None:
            return None
        loan = self.ref.loans.get(f.loan_id)
        if loan is None or loan.platform_id != pid or loan.borrower_account != f.dst_id:
            return None
        chain = self._related(pid, f.dst.owner_id)
        return None if chain is None else (f.loan_id, f.dst.owner_id, chain)

    def _arrive(self, pid: str, st: _Platform, f: Flow, moved: list[Lot]) -> None:
        dst = f.dst
        chain = None if dst is None else self._related(pid, dst.owner_id)
        max_hops = self.config.self_financing.max_hops
        onward = dst is None or dst.role not in LENDER_ROLES  # back with a lender: not followed
        for origin, amount, accounts, txns in moved:
            hops = len(txns) + 1
            if hops > max_hops:
                continue
            path = (accounts + (f.dst_id,), txns + (f.txn_id,))
            if chain is not None:
                owner = dst.owner_id  # type: ignore[union-attr]
                self._found(pid, st, "related_account", f.dst_id, f, amount, owner, chain, path)
            elif hops < max_hops and onward:
                self._fifo.add(st.lots, f.dst_id, (origin, amount, *path))

    # -- findings ------------------------------------------------------------

    def _found(
        self,
        pid: str,
        st: _Platform,
        signal: str,
        key: str,
        f: Flow,
        amount: int,
        owner: str,
        chain: tuple[str, ...],
        path: tuple[tuple[str, ...], tuple[str, ...]],
    ) -> None:
        finding = st.findings.get((signal, key))
        if finding is None:
            finding = st.findings[(signal, key)] = _Finding(f.ts, owner, chain)
            finding.accounts, finding.txns = path
        finding.amount += amount
        finding.last_ts = f.ts
        if (
            f.txn_id not in finding.samples
            and len(finding.samples) < self.config.alerts.sample_txns
        ):
            finding.samples.append(f.txn_id)
        cfg = self.config.self_financing
        if finding.amount < max(cfg.min_amount, 1):
            return
        severity = band(
            finding.amount,
            ((cfg.severity_high, "high"), (cfg.severity_critical, "critical")),
            "medium",
        )
        self.book.offer(
            make_alert_id(self.name, pid, signal, key),
            pid,
            severity,
            finding.amount,
            finding.first_ts,
            finding.last_ts,
            lambda: self._evidence(pid, signal, key, finding),
            # Lenders' money can go on reaching the account: settled by the day.
            ends=self._day_ends(finding.last_ts),
        )

    def _evidence(
        self, pid: str, signal: str, key: str, fd: _Finding
    ) -> tuple[list[str], str, dict[str, Any]]:
        evidence: dict[str, Any] = {
            "signal": signal,
            "related_party": fd.owner,
            "ownership_chain": list(fd.chain),
            "amount": yuan(fd.amount),
            "money_path": list(fd.accounts),
            "money_path_txn_ids": list(fd.txns),
            "hops": len(fd.txns),
            "sample_txn_ids": list(fd.samples),
            "first_seen": iso(fd.first_ts, self.zone),
            "last_seen": iso(fd.last_ts, self.zone),
        }
        if signal == "related_borrower":
            evidence["loan_id"] = key
            account = fd.accounts[-1]
            summary = (
                f"Platform {pid} lent {yuan(fd.amount)} yuan of lenders' money on loan {key} to "
                f"{fd.owner}, its related party ({fd.chain[0]})."
            )
        else:
            account = key
            summary = (
                f"{yuan(fd.amount)} yuan of lenders' money on platform {pid} reached account "
                f"{key} of its related party {fd.owner} ({fd.chain[0]}) in "
                f"{len(fd.txns)} transfer(s)."
            )
        evidence["related_account"] = account
        accounts = list(dict.fromkeys([account, *fd.accounts[1:-1]]))
        return accounts, summary, evidence
