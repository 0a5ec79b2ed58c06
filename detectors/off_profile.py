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
Subject: the payer; the payee is named with it. One finding per payee and
booked time: several odd payments to one payee at once (a split) grow it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .alerting import iso, make_alert_id, ratio_text, yuan
from .reference import Flow
from .settings import Days, Int, at_most, section, setting
from .transfer_graph import TransferGraph
from .typologies import _Typology


@section("off_profile", checks=(at_most("min_history", "history_payments"),))
@dataclass(frozen=True, slots=True)
class OffProfileConfig:
    """``[off_profile]``."""

    history_ms: int = setting(Days(1, 3660), key="history_days")
    history_payments: int = setting(Int(2, 10_000))
    min_history: int = setting(Int(1, 10_000))
    habit_spread_pct: int = setting(Int(0, 99))
    factor: int = setting(Int(2, 10**6))


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
        offs = [
            (txn, amount)
            for ts, payee, amount, txn in self.graph.outgoing[f.src_id]
            if ts == f.ts
            and payee == f.dst_id
            and (cfg.factor * amount <= median or amount >= median * cfg.factor)
        ]
        if f.txn_id not in {t for t, _a in offs}:
            return
        # One finding per payee and booked time: a split of one odd sum grows it.
        aid = make_alert_id(self.name, f.src_id, f.dst_id, f.ts)
        habit = {
            "payments": n,
            "since": min(merged)[0],
            "median": median,
            "lower_quartile": low,
            "upper_quartile": high,
        }
        total = sum(a for _t, a in offs)
        args = {"payee": f.dst_id, "ts": f.ts, "offs": offs, "habit": habit}
        key = (f.src_id, f.dst_id, str(f.ts))
        self._offer(key, aid, f.src_id, total, f.ts, f.ts, args)  # its figures never move

    def _describe(
        self, subject: str, args: dict[str, Any]
    ) -> tuple[list[str], str, dict[str, Any]]:
        unit, payee, habit, offs = args["unit"], args["payee"], args["habit"], args["offs"]
        median = habit["median"]

        def times_off(amount: int) -> str:
            return (
                ratio_text(median, amount, 2) if amount < median else ratio_text(amount, median, 2)
            )

        total = sum(a for _t, a in offs)
        evidence = {
            "signal": self.name,
            "payer": subject,
            "payee": payee,
            "ts": iso(args["ts"], self.zone),
            "total": yuan(total),
            "payments": [
                {"txn_id": t, "amount": yuan(a), "times_off": times_off(a)} for t, a in offs[:50]
            ],
            "habit": {
                "payments": habit["payments"],
                "since": iso(habit["since"], self.zone),
                "median": yuan(median),
                "lower_quartile": yuan(habit["lower_quartile"]),
                "upper_quartile": yuan(habit["upper_quartile"]),
            },
            "sample_txn_ids": [t for t, _a in offs[: self.config.alerts.sample_txns]],
            "baseline": args["baseline"],
        }
        first = offs[0][1]
        side = "below" if first < median else "above"
        what = (
            f"{yuan(first)} {unit}, {times_off(first)} times {side} its habit"
            if len(offs) == 1
            else f"{yuan(total)} {unit} in {len(offs)} payments at one booked time, the first "
            f"{times_off(first)} times {side} its habit"
        )
        summary = (
            f"Account {subject} paid account {payee} {what}: its last {habit['payments']} "
            f"payments had a median of {yuan(median)} {unit}, quartiles "
            f"{yuan(habit['lower_quartile'])}-{yuan(habit['upper_quartile'])}."
        )
        return [subject, payee], summary, evidence


__all__ = ["OffProfile"]
