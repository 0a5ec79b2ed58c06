"""night_transfers: a rule of your own, worked through (docs/rules.md).

An account owner whose clearing payments made between local midnight and
``night_ends_hour`` come, in one night, to at least ``min_total`` yuan:
money moved while nobody is at the desk. One alert per owner and night,
growing as more is moved that night; its episode ends with the night's
local day, when it states its final figures.

Run it beside the built-in detectors with this folder on the Python path::

    PYTHONPATH=examples/rules fundflow replay world.jsonl --config night.toml

where ``night.toml`` holds::

    [engine]
    detectors = ["default", "night_transfers:NightTransfers"]

    [night_transfers]
    min_total = "200000"
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from fundflow.detectors import Detector
from fundflow.detectors.alerting import iso, make_alert_id, yuan
from fundflow.detectors.reference import Flow, feed_key
from fundflow.detectors.settings import Fen, Int, section, setting

HOUR_MS = 3_600_000
DAY_MS = 24 * HOUR_MS


@section("night_transfers")
@dataclass(frozen=True, slots=True)
class NightTransfersConfig:
    """``[night_transfers]``: its defaults are declared here, since
    ``defaults.toml`` knows only the built-in detectors."""

    min_total: int = setting(Fen(), default="100000")
    night_ends_hour: int = setting(Int(1, 12), default=5)


class NightTransfers(Detector):
    """Night payments per owner and night; see the module docstring."""

    name = "night_transfers"
    version = "1.0"
    # Custody bookings are not read.
    flow_kinds = frozenset({"clearing_txn"})

    def _fresh(self) -> dict[str, Any]:
        # owner -> [night's day end, total fen, first ts, last ts, txn ids]
        return {"nights": {}}

    def subjects_of(self, flow: Flow) -> tuple[str, ...]:
        """On Kafka a payment goes to its feed's partition (its reserve
        holder or initiator); a night payment is sent to its payer's owner's
        partition too, where that owner's nights are added up."""
        owner = flow.src.owner_id if flow.src is not None else flow.src_id
        if owner == feed_key(flow) or not self._at_night(flow.ts):
            return ()
        return (owner,)

    def _at_night(self, ts: int) -> bool:
        cfg: NightTransfersConfig = self.config.rules[self.name]
        return ts - (self._day_ends(ts) + 1 - DAY_MS) < cfg.night_ends_hour * HOUR_MS

    def _on_flow(self, f: Flow) -> None:
        if f.currency != "CNY":
            return
        owner = f.src.owner_id if f.src is not None else f.src_id
        # The owner's clock is at f.ts: its nights that ended state their final figures.
        self._settle(owner, f.ts)
        if not self._at_night(f.ts):
            return
        cfg: NightTransfersConfig = self.config.rules[self.name]
        day_end = self._day_ends(f.ts)
        night = self.nights.get(owner)
        if night is None or night[0] != day_end:
            # Another night: the one before has ended and settled.
            night = self.nights[owner] = [day_end, 0, f.ts, f.ts, []]
        night[1] += f.amount
        night[2], night[3] = min(night[2], f.ts), max(night[3], f.ts)
        if len(night[4]) < self.config.alerts.sample_txns:
            night[4].append(f.txn_id)
        if night[1] >= cfg.min_total:
            self._offer(owner, night)

    def _offer(self, owner: str, night: list[Any]) -> None:
        day_end, total, first, last, txns = night
        # What the evidence reads is captured now: the book may build it later.
        txns = list(txns)
        self.book.offer(
            make_alert_id(self.name, owner, day_end),
            owner,
            "medium",
            total,
            first,
            last,
            lambda: (
                [],
                f"{owner} paid out {yuan(total)} yuan between midnight and "
                f"{self.config.rules[self.name].night_ends_hour}:00 on the night of "
                f"{iso(first, self.zone)[:10]}.",
                {
                    "signal": "night_transfers",
                    "total": yuan(total),
                    "first_payment": iso(first, self.zone),
                    "last_payment": iso(last, self.zone),
                    "sample_txn_ids": txns,
                },
            ),
            ends=day_end,
        )

    def _on_tick(self, now: int) -> None:
        # A heartbeat for every owner: forget the nights that have ended.
        for owner in [o for o, n in self.nights.items() if n[0] < now]:
            del self.nights[owner]
