"""Bipartite (many-to-many, seed 三(二): "资金来源和资金运用"): a group of
payers that each pay several accounts of one group of payees, densely,
within a time bound.

Honest money is many-to-one (a shop's takings) or one-to-many (a payroll);
a group of accounts that all pay the same group of accounts at once, large
for this dump, is money being moved between two sets of controlled
accounts. A payment counts as the other typologies' do: at least the
``min_payment_pct``-th percentile of the dump's payments in its currency
(and, for CNY, the absolute ``min_payment``).

Checked at each counted payment ``p -> q``: the payees ``p`` paid within
``window_hours`` and their payers, and the payees of those, give the
neighbourhood (at most ``max_search_steps`` transfers examined); it is
pruned until every payer left pays at least ``min_payees`` of the payees
left and every payee left is paid by at least two of the payers left. The
two groups are a finding when they still hold ``p`` and ``q``, at least
``min_payers`` payers and ``min_payees`` payees, at least
``min_density_pct`` of their payer-payee pairs paid, together at least
``min_total`` (CNY). Subject: the payer group's first account (by id): a
group that grows re-emits its finding, or, when a payer joins that comes
first by id, starts another under that payer.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .alerting import iso, make_alert_id, ratio_text, yuan
from .reference import Flow
from .settings import Fen, Int, section, setting
from .transfer_graph import Edge
from .typologies import PERCENTILE, SEARCH_STEPS, WINDOW, _Typology


@section("bipartite")
@dataclass(frozen=True, slots=True)
class BipartiteConfig:
    """``[bipartite]``."""

    window_ms: int = setting(WINDOW, key="window_hours")
    min_payment: int = setting(Fen())
    min_payment_pct: int = setting(PERCENTILE)
    min_payers: int = setting(Int(2, 1000))
    min_payees: int = setting(Int(2, 1000))
    min_density_pct: int = setting(Int(1, 100))
    min_total: int = setting(Fen())
    max_search_steps: int = setting(SEARCH_STEPS)


def _prune(pays: dict[str, dict[str, list[Edge]]], min_payees: int) -> dict[str, set[str]]:
    """Payer -> payees, shrunk until every payer pays ``min_payees`` payees
    paid by at least two of the payers left."""
    group = {p: set(qs) for p, qs in pays.items()}
    while True:
        paid_by: dict[str, int] = {}
        for qs in group.values():
            for q in qs:
                paid_by[q] = paid_by.get(q, 0) + 1
        shared = {q for q, n in paid_by.items() if n >= 2}
        kept = {p: qs & shared for p, qs in group.items() if len(qs & shared) >= min_payees}
        if kept == group:
            return group
        group = kept


class Bipartite(_Typology):
    """Many payers densely paying many payees; see the module docstring."""

    name = "bipartite"

    def _see(self, f: Flow) -> None:
        cfg = self.config.bipartite
        g = self.graph
        start = self._since(f.ts)
        own = g.within(g.outgoing, f.src_id, start, f.ts)
        if len({e[1] for e in own}) < cfg.min_payees:
            return
        if len({e[1] for e in g.within(g.incoming, f.dst_id, start, f.ts)}) < 2:
            return
        budget = cfg.max_search_steps
        payers: set[str] = set()
        for q in sorted({e[1] for e in own}):
            ins = g.within(g.incoming, q, start, f.ts)
            budget -= len(ins)
            payers.update(e[1] for e in ins)
        pays: dict[str, dict[str, list[Edge]]] = {}
        for p in sorted(payers):
            outs = g.within(g.outgoing, p, start, f.ts)
            budget -= len(outs)
            if budget < 0:
                return
            for e in outs:
                pays.setdefault(p, {}).setdefault(e[1], []).append(e)
        group = _prune(pays, cfg.min_payees)
        if f.src_id not in group or f.dst_id not in group[f.src_id]:
            return
        payees = set().union(*group.values())
        pairs = sum(len(qs) for qs in group.values())
        edges = sorted(e for p, qs in group.items() for q in qs for e in pays[p][q])
        total = sum(e[2] for e in edges)
        if (
            len(group) < cfg.min_payers
            or len(payees) < cfg.min_payees
            or pairs * 100 < len(group) * len(payees) * cfg.min_density_pct
            or not self._at_least(self._currency, total, cfg.min_total)
        ):
            return
        subject = min(group)
        start_ep = self._episode((subject,), f.ts)
        aid = make_alert_id(self.name, subject, start_ep)
        rows = {p: {q: pays[p][q] for q in sorted(qs)} for p, qs in sorted(group.items())}
        args = {"rows": rows, "payees": sorted(payees), "now": f.ts}
        self._offer((subject,), aid, subject, total, edges[0][0], f.ts, args)

    def _describe(
        self, subject: str, args: dict[str, Any]
    ) -> tuple[list[str], str, dict[str, Any]]:
        unit = args["unit"]
        rows: dict[str, dict[str, list[Edge]]] = args["rows"]
        payees: list[str] = args["payees"]
        edges = sorted(e for by in rows.values() for es in by.values() for e in es)
        total = sum(e[2] for e in edges)
        pairs = sum(len(by) for by in rows.values())
        possible = len(rows) * len(payees)
        density = ratio_text(pairs, possible)
        evidence = {
            "signal": self.name,
            "payers": [
                {
                    "account": p,
                    "payees": list(by),
                    "amount": yuan(sum(e[2] for es in by.values() for e in es)),
                }
                for p, by in rows.items()
            ],
            "payees": payees,
            "payer_count": len(rows),
            "payee_count": len(payees),
            "pairs_paid": pairs,
            "pairs_possible": possible,
            "density": density,
            "transfers": len(edges),
            "total": yuan(total),
            "window_start": iso(edges[0][0], self.zone),
            "window_end": iso(args["now"], self.zone),
            "sample_txn_ids": self._samples(edges),
            "baseline": args["baseline"],
        }
        summary = (
            f"{len(rows)} payers paid {len(payees)} payees {yuan(total)} {unit} in {len(edges)} "
            f"transfers of at least {args['baseline']['counted_from']} {unit} within "
            f"{self._window // 3_600_000} hours: {pairs} of the {possible} payer-payee pairs "
            f"(density {density})."
        )
        accounts = [*rows, *payees][:20]
        return accounts, summary, evidence


__all__ = ["Bipartite"]
