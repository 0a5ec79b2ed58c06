"""Split payments (拆分交易, seed 三(二): "资金来源和资金运用"): one payer
pays one payee several payments at one booked time, each unusually small
for the dump at hand.

A payer that splits one sum into several small payments to the same payee
is structuring; what "small" means depends on the data, so a payment
counts when it is below the ``below_pct``-th percentile of the dump's
payments in its currency (:class:`~fundflow.detectors.data_scale.AmountScale`,
trusted after ``[typologies] min_samples`` payments), or, for CNY, below an
absolute ``max_payment`` (a legal reporting threshold) when one is set.
"At one booked time" is the data's own time scale: payments within
``window_minutes`` of each other (0: the same booked time; a dump that books
one time a tick, such as a simulation stepping a day at a time, books the
whole tick at once). At least ``min_payments`` counted payments from the
payer to the payee make a finding. Subject: the payer; the payee is named
with it. An episode is one booked time (one window), re-emitted under the
same id as more split payments arrive in it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .alerting import iso, make_alert_id, ordinal, yuan
from .reference import Flow
from .settings import Fen, Int, Minutes, section, setting
from .transfer_graph import Edge
from .typologies import _Typology


@section("split_payments")
@dataclass(frozen=True, slots=True)
class SplitPaymentsConfig:
    """``[split_payments]``."""

    window_ms: int = setting(Minutes(0, 24 * 60), key="window_minutes")
    min_payments: int = setting(Int(2, 1000))
    below_pct: int = setting(Int(0, 50))
    max_payment: int = setting(Fen())


class SplitPayments(_Typology):
    """Several small payments from one payer to one payee at one booked
    time; see the module docstring."""

    name = "split_payments"
    keeps_incoming = False

    def _window_ms(self) -> int:
        return self.config.split_payments.window_ms

    def _min_payment(self) -> int:
        return 0

    def _min_payment_pct(self) -> int:
        return 0

    def _questions(self) -> list[tuple[int, bool]]:
        pct = self.config.split_payments.below_pct
        return [(pct, False)] if pct else []

    def _counts(self, f: Flow, currency: str, amount: int) -> int | None:
        """The ceiling a counted payment stayed below, or ``None``."""
        cfg = self.config.split_payments
        min_samples = self.config.typologies.min_samples
        seen, before = self.scale.take(f, currency, amount, min_samples)
        ceiling = 0
        if cfg.below_pct and seen >= min_samples:
            ceiling = before.get((cfg.below_pct, False)) or 0
            self._seen = seen
        if currency == "CNY" and cfg.max_payment:
            ceiling = max(ceiling, cfg.max_payment)
        return ceiling if amount < ceiling else None

    def _baseline(self) -> dict[str, Any]:
        cfg = self.config.split_payments
        cur = self._currency
        out: dict[str, Any] = {"currency": cur, "each_below": yuan(self._counted_from)}
        if cfg.below_pct and self._counted_from != cfg.max_payment:
            out["percentile"] = cfg.below_pct
            out["payments_seen"] = self._seen
        if cur == "CNY" and cfg.max_payment:
            out["max_payment"] = yuan(cfg.max_payment)
        return out

    def _see(self, f: Flow) -> None:
        g = self.graph
        edges = [
            e
            for e in g.within(g.outgoing, f.src_id, f.ts - self._window, f.ts + self._window)
            if e[1] == f.dst_id
        ]
        if len(edges) < self.config.split_payments.min_payments:
            return
        key = (f.src_id, f.dst_id)
        start = self._episode(key, f.ts)
        aid = make_alert_id(self.name, f.src_id, f.dst_id, start)
        total = sum(e[2] for e in edges)
        args = {"payee": f.dst_id, "edges": edges}
        self._offer(key, aid, f.src_id, total, edges[0][0], edges[-1][0], args)

    def _describe(
        self, subject: str, args: dict[str, Any]
    ) -> tuple[list[str], str, dict[str, Any]]:
        unit, payee = args["unit"], args["payee"]
        edges: list[Edge] = args["edges"]
        total = sum(e[2] for e in edges)
        base = args["baseline"]
        minutes = self._window // 60_000
        evidence = {
            "signal": self.name,
            "payer": subject,
            "payee": payee,
            "payments": len(edges),
            "total": yuan(total),
            "window_start": iso(edges[0][0], self.zone),
            "window_end": iso(edges[-1][0], self.zone),
            "transfers": [
                {"txn_id": txn, "ts": iso(ts, self.zone), "amount": yuan(amount)}
                for ts, _party, amount, txn in edges[:50]
            ],
            "sample_txn_ids": self._samples(edges),
            "baseline": base,
        }
        when = "at one booked time" if not minutes else f"within {minutes} minutes"
        why = f"each below {base['each_below']} {unit}"
        if "percentile" in base:
            why += (
                f" (the {ordinal(base['percentile'])} percentile of the {base['payments_seen']} {unit} "
                "payments seen)"
            )
        summary = (
            f"Account {subject} paid account {payee} {yuan(total)} {unit} in {len(edges)} "
            f"payments {when}, {why}."
        )
        return [subject, payee], summary, evidence


__all__ = ["SplitPayments"]
