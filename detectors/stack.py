"""Stack (layering, 多层转移, seed 三(二): "资金来源和资金运用"): money passed
on through two or more layers of accounts within a time bound, each layer
of several accounts passing on what it received to the next.

AMLSim calls the shape "stack": source accounts pay a first layer, which
pays a second, ..., which pays the sink(s), many-to-many between
consecutive layers. Honest money stops somewhere: a budget that comes down
a group's divisions is spent by its departments, or takes days at each
level. A payment counts as the other typologies' do: at least the
``min_payment_pct``-th percentile of the dump's payments in its currency
(and, for CNY, the absolute ``min_payment``).

Checked at each counted payment ``u -> v``, once the stream has moved past
its booked time (every transfer booked with it is in the graph), with
``v`` as the sink: the accounts that paid the sink within ``window_hours``
and *pass on* what they received are its last layer; the accounts that
paid those and pass on are the layer before, and so on while a layer
holds at least ``min_width`` accounts. An account passes on when its
counted payments from its first counted receipt within the window are
``min_passed_pct``-``max_passed_pct`` % of those receipts (the cycle's
band, on sums: each keeps at most a cut, none adds money). The payers of
the first layer (in no layer) are the sources. A finding: at least
``min_layers`` layers, ``u`` in the last, at least one source, the money
into the first layer at least ``min_total`` (CNY); at most
``max_search_steps`` transfers examined. Subject: the sources' first
account (by id), so that the views from several sinks, or from a later
layer, grow one alert.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .alerting import iso, make_alert_id, ratio_text, yuan
from .reference import Flow
from .settings import Fen, Int, at_most, section, setting
from .transfer_graph import Edge
from .typologies import PERCENTILE, SEARCH_STEPS, WINDOW, _Ordered, passes_on


@section("stack", checks=(at_most("min_passed_pct", "max_passed_pct"),))
@dataclass(frozen=True, slots=True)
class StackConfig:
    """``[stack]``."""

    window_ms: int = setting(WINDOW, key="window_hours")
    min_payment: int = setting(Fen())
    min_payment_pct: int = setting(PERCENTILE)
    min_layers: int = setting(Int(1, 100))
    min_width: int = setting(Int(1, 1000))
    min_passed_pct: int = setting(Int(1, 100))
    max_passed_pct: int = setting(Int(1, 100))
    min_total: int = setting(Fen())
    max_search_steps: int = setting(SEARCH_STEPS)


#: One layer: account -> (what it received, what it paid on), within the window.
Layer = dict[str, tuple[list[Edge], list[Edge]]]


def _sum(edges: list[Edge]) -> int:
    return sum(e[2] for e in edges)


class Stack(_Ordered):
    """Money passed on through layers of accounts; see the module docstring."""

    name = "stack"

    def _judge(self, f: Flow) -> None:
        cfg = self.config.stack
        g = self.graph
        start = self._since(f.ts)
        sink = f.dst_id
        budget = cfg.max_search_steps
        layers: list[Layer] = []
        placed = {sink}
        front: list[str] = [sink]
        while True:
            payers: set[str] = set()
            for account in front:
                ins = g.within(g.incoming, account, start, f.ts)
                budget -= len(ins)
                payers.update(e[1] for e in ins)
            layer: Layer = {}
            for p in sorted(payers - placed):
                ins, outs = self._passed(p, start, f.ts)
                budget -= len(ins) + len(outs)
                if ins and passes_on(_sum(ins), _sum(outs), cfg.min_passed_pct, cfg.max_passed_pct):
                    layer[p] = (ins, outs)
            if budget < 0:
                return
            if len(layer) < cfg.min_width:
                break
            layers.append(layer)
            placed |= layer.keys()
            front = list(layer)
        if len(layers) < cfg.min_layers or f.src_id not in layers[0]:
            return
        layers.reverse()
        first = layers[0]
        entering = sorted(e for ins, _outs in first.values() for e in ins if e[1] not in placed)
        sources = sorted({e[1] for e in entering})
        entered = _sum(entering)
        if not sources or not self._at_least(self._currency, entered, cfg.min_total):
            return
        reached = [e for e in g.within(g.incoming, sink, start, f.ts) if e[1] in layers[-1]]
        subject = sources[0]
        ep = self._episode((subject,), f.ts)
        aid = make_alert_id(self.name, subject, ep)
        args = {
            "sink": sink,
            "sources": sources,
            "entering": entering,
            "layers": layers,
            "reached": sorted(reached),
            "now": f.ts,
        }
        self._offer((subject,), aid, subject, entered, entering[0][0], f.ts, args)

    def _describe(
        self, subject: str, args: dict[str, Any]
    ) -> tuple[list[str], str, dict[str, Any]]:
        unit = args["unit"]
        layers: list[Layer] = args["layers"]
        entering: list[Edge] = args["entering"]
        reached: list[Edge] = args["reached"]
        sink: str = args["sink"]
        entered, arrived = _sum(entering), _sum(reached)
        shares = [
            (_sum(outs) * 10**6 // _sum(ins), a)
            for layer in layers
            for a, (ins, outs) in layer.items()
        ]
        low = min(shares)[1]
        low_in, low_out = next(layer[low] for layer in layers if low in layer)
        evidence = {
            "signal": self.name,
            "sources": [
                {"account": s, "paid": yuan(sum(e[2] for e in entering if e[1] == s))}
                for s in args["sources"]
            ],
            "layers": [
                [
                    {
                        "account": a,
                        "received": yuan(_sum(ins)),
                        "passed_on": yuan(_sum(outs)),
                        "share": ratio_text(_sum(outs), _sum(ins)),
                        "payees": sorted({e[1] for e in outs}),
                    }
                    for a, (ins, outs) in layer.items()
                ]
                for layer in layers
            ],
            "sink": sink,
            "layer_count": len(layers),
            "layer_widths": [len(layer) for layer in layers],
            "entered": yuan(entered),
            "reached_sink": yuan(arrived),
            "lowest_share": ratio_text(_sum(low_out), _sum(low_in)),
            "lowest_share_account": low,
            "window_start": iso(entering[0][0], self.zone),
            "window_end": iso(args["now"], self.zone),
            "sample_txn_ids": self._samples([*entering, *reached]),
            "baseline": args["baseline"],
        }
        cfg = self.config.stack
        widths = ", ".join(str(len(layer)) for layer in layers)
        summary = (
            f"{yuan(entered)} {unit} from {len(args['sources'])} source account(s) passed through "
            f"{len(layers)} layers of accounts ({widths}) to account {sink} ({yuan(arrived)} "
            f"{unit}) within {self._window // 3_600_000} hours, each account passing on "
            f"{cfg.min_passed_pct}-{cfg.max_passed_pct} % of what it received (lowest "
            f"{evidence['lowest_share']}, account {low}), in transfers of at least "
            f"{args['baseline']['counted_from']} {unit}."
        )
        accounts = [*args["sources"], *(a for layer in layers for a in layer), sink][:20]
        return accounts, summary, evidence


__all__ = ["Stack"]
