"""cross_bank_clearing — 变相开展跨行清算 (seed 二(三)2: "非银行支付机构不得连接多家银行系统,
变相开展跨行清算业务。非银行支付机构开展跨行支付业务,应通过人民银行跨行清算系统或者具有合法资质的
清算机构进行").

A payment institution that settles its clients' payments by moving money
between its own accounts at different banks, outside the clearing systems
(CNAPS, NUCC, CUP), is clearing between banks itself. Per institution (the
owner of both accounts):

``cross_bank_transfer``
    A ``clearing_txn`` with ``system`` ``direct`` or ``internal`` (the
    configured ``systems``) whose payer and payee accounts are both owned by
    the same ``payment_institution`` entity and held at different banks (the
    accounts' ``bank_id``). When, in a sliding window of ``window_days``, the
    institution makes at least ``min_transfers`` such transfers together
    worth at least ``min_amount``, it is an alert. A one-off treasury move
    (fewer transfers, or less money) is not: the seed forbids running the
    clearing, a business of repeated transfers, not moving one's own
    liquidity once.

An episode (:mod:`~fundflow.detectors.episodes`, the window as its gap)
lasts while the rule keeps holding at transfers no more than a window
apart, named by the oldest transfer of the window where it first held; its alert grows with every transfer in it (amount, count),
and a new episode gets a new alert id. Transfers through CNAPS, NUCC or CUP,
between accounts at one bank, or with an account that is not the
institution's own (or not known) are never counted.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Any

from .alerting import band, iso, make_alert_id, yuan
from .base import Detector, SlotState
from .episodes import Episode, Episodes
from .reference import Flow
from .settings import Custom, Days, Fen, Int, Names, section, setting, severity_rising
from .windows import expire_sum

#: The clearing systems a payment can name.
KNOWN_SYSTEMS = frozenset({"CNAPS", "NUCC", "CUP", "direct", "internal"})


def _systems(section: str, key: str, value: Any) -> frozenset[str]:
    systems = Names().parse(section, key, value)
    if not systems or not systems <= KNOWN_SYSTEMS:
        raise ValueError(
            f"{section}.{key} must name clearing systems of {sorted(KNOWN_SYSTEMS)}, got {value!r}"
        )
    return systems  # type: ignore[return-value]


@section("cross_bank_clearing", checks=(severity_rising,))
@dataclass(frozen=True, slots=True)
class CrossBankConfig:
    """``[cross_bank_clearing]``."""

    systems: frozenset[str] = setting(Custom(_systems))
    window_ms: int = setting(Days(1, 366), key="window_days")
    min_transfers: int = setting(Int(1))
    min_amount: int = setting(Fen())
    severity_high: int = setting(Fen())
    severity_critical: int = setting(Fen())


class _Institution(SlotState):
    """One institution's window of cross-bank transfers and its open episode."""

    __slots__ = (
        "window",
        "window_amount",
        "episode",
        "ep_count",
        "ep_amount",
        "ep_txns",
        "ep_accounts",
        "ep_banks",
        "ep_last",
    )

    def __init__(self) -> None:
        # (ts, amount, txn_id, payer account, payee account, payer bank, payee bank)
        self.window: deque[tuple[int, int, str, str, str, str, str]] = deque()
        self.window_amount = 0
        self.episode = Episode()
        self.ep_count = 0
        self.ep_amount = 0
        self.ep_txns: list[str] = []
        self.ep_accounts: set[str] = set()
        self.ep_banks: set[str] = set()
        self.ep_last = -1

    def __setstate__(self, state: dict[str, Any]) -> None:
        if "last_true" in state:  # checkpoints of 1.0 kept the episode as numbers
            state = dict(state)
            state["episode"] = Episode(state["episode"], state.pop("last_true"))
        super().__setstate__(state)


class CrossBankClearing(Detector):
    """Finds payment institutions clearing between banks on their own; see
    the module docstring for the rule.

    >>> from fundflow.schemas.records import Account, Entity
    >>> det = CrossBankClearing()
    >>> _ = det.update(Entity(entity_id="PI", name="PI", kind="payment_institution"))
    >>> det.alerts
    []
    """

    name = "cross_bank_clearing"
    version = "1.0"
    # Custody bookings never leave the custody bank: clearing payments only.
    flow_kinds = frozenset({"clearing_txn"})

    def _fresh(self) -> dict[str, Any]:
        self._episodes = Episodes(self.config.cross_bank_clearing.window_ms)
        return {"institutions": {}}

    def _on_flow(self, f: Flow) -> None:
        if f.custody:
            return
        src, dst = f.src, f.dst
        if src is not None:
            # Any payment of the institution's moves its clock.
            self._settle(src.owner_id, f.ts)
        if f.system not in self.config.cross_bank_clearing.systems:
            return
        if src is None or dst is None or f.currency != "CNY":
            return
        owner = src.owner_id
        if dst.owner_id != owner or src.bank_id == dst.bank_id or f.src_id == f.dst_id:
            return
        entity = self.ref.entities.get(owner)
        if entity is None or entity.kind != "payment_institution":
            return
        st: _Institution | None = self.institutions.get(owner)
        if st is None:
            st = self.institutions[owner] = _Institution()
        self._record(owner, st, f, src.bank_id, dst.bank_id)

    def subjects_of(self, flow: Flow) -> tuple[str, ...]:
        """The owner of both accounts of a payment between its own accounts
        (whoever initiated it): the transfers this detector counts. Its
        other payments move its clock only on its own feed."""
        src, dst = flow.src, flow.dst
        if src is None or dst is None or flow.custody or src.owner_id != dst.owner_id:
            return ()
        return (src.owner_id,)

    def _record(
        self, owner: str, st: _Institution, f: Flow, payer_bank: str, payee_bank: str
    ) -> None:
        cfg = self.config.cross_bank_clearing
        window = st.window
        st.window_amount -= expire_sum(window, f.ts, cfg.window_ms)
        window.append((f.ts, f.amount, f.txn_id, f.src_id, f.dst_id, payer_bank, payee_bank))
        st.window_amount += f.amount
        holds = len(window) >= cfg.min_transfers and st.window_amount >= cfg.min_amount
        if self._episodes.is_open(st.episode, f.ts):
            # The episode is open: every transfer while it lasts belongs to it.
            self._add(st, window[-1])
            if holds:
                self._episodes.hold(st.episode, f.ts)
        elif holds:
            # A new episode, named by the oldest transfer of its window.
            self._episodes.hold(st.episode, f.ts, start=window[0][0])
            st.ep_count = st.ep_amount = 0
            st.ep_txns, st.ep_accounts, st.ep_banks = [], set(), set()
            for entry in window:
                self._add(st, entry)
        else:
            return
        self._offer(owner, st)

    def _add(self, st: _Institution, entry: tuple[int, int, str, str, str, str, str]) -> None:
        ts, amount, txn_id, payer, payee, payer_bank, payee_bank = entry
        st.ep_count += 1
        st.ep_amount += amount
        st.ep_last = ts
        if len(st.ep_txns) < self.config.alerts.sample_txns:
            st.ep_txns.append(txn_id)
        st.ep_accounts.update((payer, payee))
        st.ep_banks.update((payer_bank, payee_bank))

    def _offer(self, owner: str, st: _Institution) -> None:
        cfg = self.config.cross_bank_clearing
        severity = band(
            st.ep_amount,
            ((cfg.severity_high, "high"), (cfg.severity_critical, "critical")),
            "medium",
        )
        aid = make_alert_id(self.name, owner, "cross_bank_transfer", st.episode.start)
        window_count, window_amount = len(st.window), st.window_amount
        last = st.ep_last

        def build() -> tuple[list[str], str, dict[str, Any]]:
            accounts = sorted(st.ep_accounts)
            banks = sorted(st.ep_banks)
            summary = (
                f"{owner} moved {yuan(st.ep_amount)} yuan in {st.ep_count} transfers between its "
                f"own accounts at {len(banks)} banks ({', '.join(banks)}) outside the clearing "
                f"systems, {window_count} of them within {cfg.window_ms // 86_400_000} days."
            )
            evidence = {
                "signal": "cross_bank_transfer",
                "institution_id": owner,
                "accounts": accounts,
                "banks": banks,
                "transfers": st.ep_count,
                "amount": yuan(st.ep_amount),
                "window_transfers": window_count,
                "window_amount": yuan(window_amount),
                "window_start": iso(last - cfg.window_ms, self.zone),
                "window_end": iso(last, self.zone),
                "sample_txn_ids": list(st.ep_txns),
            }
            return accounts, summary, evidence

        # The episode goes on while the rule holds again within a window; its
        # figures change only with the transfers it takes in (settled first).
        ends = self._episodes.ends(st.episode)
        start = st.episode.start
        self.book.offer(aid, owner, severity, st.ep_amount, start, last, build, ends=ends)
