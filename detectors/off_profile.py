"""Off-profile payments (与客户身份、交易习惯不符的交易, seed 三(二): "资金来源和资金
运用"): a payer with a steady habit pays an amount far out of it.

The baseline is the payer's own history: its last ``history_payments``
payments within ``history_days`` (bounded memory per payer, in its transfer
graph) booked before this one, those of one booked time to one payee taken
as one payment (a split sum is one payment in substance). With at least ``min_history`` of them, its habit is steady when
their lower and upper quartiles lie within ``habit_spread_pct`` of their
median; a payment then is off profile when it is at most the median divided
by ``factor``, or at least the median times ``factor``. A payer whose
payments vary widely has no steady habit and is never judged: the rule
speaks only where the data itself says what is usual. Amounts are judged
in their own currency (or CNY at the configured rate); nothing is in yuan.
Subject: the payer; the payee is named with it. One finding per payment.
"""

from __future__ import annotations

from typing import Any

from .alerting import iso, make_alert_id, ratio_text, yuan
from .reference import Flow
from .transfer_graph import TransferGraph
from .typologies import _Typology


class OffProfile(_Typology):
    """A payment far out of its payer's steady habit; see the module docstring."""

    name = "off_profile"
    keeps_incoming = False

    def _window_ms(self) -> int:
        return self.config.off_profile.history_ms

    def _min_payment(self) -> int:
        return 0

    def _min_payment_pct(self) -> int:
        return 0

    def _new_graph(self) -> TransferGraph:
        return TransferGraph(
            self._window + self.config.engine.dedup_window_ms,
            self.config.off_profile.history_payments,
            incoming=False,
            outgoing=True,
        )

    def _baseline(self) -> dict[str, Any]:
        return {"currency": self._currency, "against": "the payer's own recent payments"}

    def _see(self, f: Flow) -> None:
        cfg = self.config.off_profile
        # Earlier payments only, those of one booked time to one payee as one
        # (a split sum is one payment in substance).
        merged: dict[tuple[int, str], int] = {}
        for ts, payee, amount, _txn in self.graph.outgoing.get(f.src_id, ()):
            if ts < f.ts:
                merged[ts, payee] = merged.get((ts, payee), 0) + amount
        n = len(merged)
        if n < cfg.min_history:
            return
        amounts = sorted(merged.values())
        median, low, high = amounts[n // 2], amounts[n // 4], amounts[(3 * n) // 4]
        spread = cfg.habit_spread_pct
        if low * 100 < median * (100 - spread) or high * 100 > median * (100 + spread):
            return
        if cfg.factor * f.amount > median and f.amount < median * cfg.factor:
            return
        aid = make_alert_id(self.name, f.src_id, f.txn_id)
        habit = {
            "payments": n,
            "since": min(merged)[0],
            "median": median,
            "lower_quartile": low,
            "upper_quartile": high,
        }
        args = {"payee": f.dst_id, "txn": (f.ts, f.txn_id, f.amount), "habit": habit}
        self._offer((f.src_id, f.txn_id), aid, f.src_id, f.amount, f.ts, f.ts, args, keep=False)

    def _describe(
        self, subject: str, args: dict[str, Any]
    ) -> tuple[list[str], str, dict[str, Any]]:
        unit, payee, habit = args["unit"], args["payee"], args["habit"]
        ts, txn, amount = args["txn"]
        median = habit["median"]
        below = amount < median
        ratio = ratio_text(median, amount, 2) if below else ratio_text(amount, median, 2)
        evidence = {
            "signal": self.name,
            "payer": subject,
            "payee": payee,
            "txn_id": txn,
            "ts": iso(ts, self.zone),
            "amount": yuan(amount),
            "habit": {
                "payments": habit["payments"],
                "since": iso(habit["since"], self.zone),
                "median": yuan(median),
                "lower_quartile": yuan(habit["lower_quartile"]),
                "upper_quartile": yuan(habit["upper_quartile"]),
            },
            "times_off": ratio,
            "sample_txn_ids": [txn],
            "thresholds": self._thresholds(),
            "baseline": args["baseline"],
        }
        side = "below" if below else "above"
        summary = (
            f"Account {subject} paid account {payee} {yuan(amount)} {unit}, {ratio} times {side} "
            f"its habit: its last {habit['payments']} payments had a median of {yuan(median)} "
            f"{unit}, quartiles {yuan(habit['lower_quartile'])}-{yuan(habit['upper_quartile'])}."
        )
        return [subject, payee], summary, evidence


__all__ = ["OffProfile"]
