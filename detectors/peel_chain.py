"""Peel chain (random walk, 剥离链, seed 三(二): "资金来源和资金运用"): money
walked through a chain of accounts, each passing on most of what it
received, less a cut, as one payment to one account, within a time bound.

Honest money stops or spreads: a salary is spent at many shops, a firm
keeps its margin and pays several suppliers days later. An account that
receives one large payment and, within hours, pays most of it on to one
other account, which does the same, and so on, is a mule chain peeling
off a cut at each account. A payment counts as the other typologies' do:
at least the ``min_payment_pct``-th percentile of the dump's payments in
its currency (and, for CNY, the absolute ``min_payment``).

Checked at each counted payment ``u -> v``, once the stream has moved past
its booked time (:class:`~fundflow.detectors.typologies._Ordered`), as the
chain's last transfer: money traced backwards from it
(:meth:`~fundflow.detectors.typologies._Typology._trace`) through accounts
that each *relay* it: within ``window_hours`` before the payment, the
account's one counted receipt, and from it its one counted payment, the
next transfer of the chain, ``min_passed_pct``-``max_passed_pct`` % of
the receipt (the cycle's band: a cut kept, no money added). The chain is
the longest so traced, through distinct accounts; a finding has
``min_hops`` to ``max_hops`` transfers, at most ``max_search_steps``
transfers examined. A shorter chain, from ``min_short_hops`` transfers, is
a finding when every payment of it is at least the dump's
``short_payment_pct``-th percentile in its currency (once ``min_samples``
payments are seen there): a chain arising by chance among honest payments
grows rarer the longer it is and the larger its payments, and three
transfers from the top 1 % of a dump are rarer than four from its top
10 %. A chain traced back further than ``max_hops`` was
seen from an earlier transfer and is not offered again. In a dump that
books many transfers at one time, a transfer that ``v`` relays at that
very time is judged as the chain's end instead. Subject: the chain's first
account, so that the views from its later transfers grow one alert.
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import pairwise
from typing import Any

from .alerting import make_alert_id, ordinal, ratio_text, yuan
from .reference import Flow
from .settings import Fen, Int, at_most, section, setting
from .transfer_graph import Edge
from .typologies import PERCENTILE, SEARCH_STEPS, WINDOW, _Ordered, passes_on


@section(
    "peel_chain",
    checks=(
        at_most("min_passed_pct", "max_passed_pct"),
        at_most("min_short_hops", "min_hops"),
        at_most("min_hops", "max_hops"),
    ),
)
@dataclass(frozen=True, slots=True)
class PeelChainConfig:
    """``[peel_chain]``."""

    window_ms: int = setting(WINDOW, key="window_hours")
    min_payment: int = setting(Fen())
    min_payment_pct: int = setting(PERCENTILE)
    min_hops: int = setting(Int(2, 24))
    max_hops: int = setting(Int(2, 24))
    min_short_hops: int = setting(Int(2, 24))
    short_payment_pct: int = setting(PERCENTILE)
    min_passed_pct: int = setting(Int(1, 100))
    max_passed_pct: int = setting(Int(1, 100))
    max_search_steps: int = setting(SEARCH_STEPS)


#: One transfer of a chain: ``(ts, payer, payee, amount, txn_id)``.
Hop = tuple[int, str, str, int, str]


class PeelChain(_Ordered):
    """Money walked through a chain of relaying accounts; see the module docstring."""

    name = "peel_chain"

    def _relays(self, account: str, received: Edge, paid: Edge, now: int) -> bool:
        """Whether ``account`` passes ``received`` (a payment to it within
        the window) on as ``paid`` (a payment it made since, by ``now``):
        its only counted receipt within the window, its only counted payment
        from then to ``now``, within the band. The transfers read are
        charged to the search budget."""
        cfg = self.config.peel_chain
        if not passes_on(received[2], paid[2], cfg.min_passed_pct, cfg.max_passed_pct):
            return False
        ins, outs = self._passed(account, self._start, now)
        self._budget -= len(ins) + len(outs)
        return len(ins) == 1 and len(outs) == 1

    def _judge(self, f: Flow) -> None:
        cfg = self.config.peel_chain
        now = f.ts
        self._start = self._since(now)
        self._budget = cfg.max_search_steps
        last: Edge = (f.ts, f.src_id, f.amount, f.txn_id)
        seen = {f.src_id, f.dst_id}
        short_floor = self._short_floor()

        def fits(via: str, e: Edge, paid: Edge) -> bool:
            return self._relays(via, e, paid, now)

        def ends(payer: str, path: list[Edge]) -> bool:
            # ``seen`` holds the chain's accounts after the payer: none repeats
            if payer in seen:
                return False
            if len(path) >= cfg.min_hops:
                return True
            return (
                short_floor is not None
                and len(path) >= cfg.min_short_hops
                and min(e[2] for e in path) >= short_floor
            )

        # One deeper than the chains offered, to tell a longer chain.
        path = self._trace(f.src_id, now, [last], seen, fits, ends, cfg.max_hops + 1, longest=True)
        if path is None or self._budget < 0 or len(path) > cfg.max_hops:
            return
        # path: newest first, (ts, payer, amount, txn_id) with the payee one step later
        hops: list[Hop] = []
        payee = f.dst_id
        for ts, payer, amount, txn in path:
            hops.append((ts, payer, payee, amount, txn))
            payee = payer
        hops.reverse()
        if len(hops) < cfg.max_hops and self._relayed_at_once(f, {h[1] for h in hops}, now):
            return
        subject = hops[0][1]
        ep = self._episode((subject,), now)
        aid = make_alert_id(self.name, subject, ep)
        args: dict[str, Any] = {"hops": hops}
        if len(hops) < cfg.min_hops:
            args["short_floor"] = short_floor
        self._offer((subject,), aid, subject, hops[0][3], hops[0][0], now, args)

    def _short_floor(self) -> int | None:
        """The smallest payment of a chain shorter than ``min_hops``: the
        dump's ``short_payment_pct``-th percentile in the payment's currency
        (``None``: no short chain, when it is off, ``min_short_hops`` is
        ``min_hops`` or fewer than ``min_samples`` payments are seen)."""
        cfg = self.config.peel_chain
        if not cfg.short_payment_pct or cfg.min_short_hops >= cfg.min_hops:
            return None
        if self.scale.count(self._currency) < self.config.typologies.min_samples:
            return None
        return self.scale.percentile(self._currency, cfg.short_payment_pct, upper=True)

    def _relayed_at_once(self, f: Flow, chain: set[str], now: int) -> bool:
        """Whether ``f``'s payee relays it, at ``f``'s own booked time, to an
        account not in the chain: that transfer, judged with the same graph,
        is the chain's end."""
        g = self.graph
        received: Edge = (f.ts, f.src_id, f.amount, f.txn_id)
        return any(
            e[1] not in chain and self._relays(f.dst_id, received, e, now)
            for e in g.within(g.outgoing, f.dst_id, now, now)
        )

    def _describe(
        self, subject: str, args: dict[str, Any]
    ) -> tuple[list[str], str, dict[str, Any]]:
        unit = args["unit"]
        hops: list[Hop] = args["hops"]
        cfg = self.config.peel_chain
        relays = [
            {
                "account": before[2],
                "received": yuan(before[3]),
                "passed_on": yuan(after[3]),
                "share": ratio_text(after[3], before[3]),
                "kept": yuan(before[3] - after[3]),
                "held_hours": ratio_text(after[0] - before[0], 3_600_000, 2),
                "payee": after[2],
            }
            for before, after in pairwise(hops)
        ]
        # exact shares, to the millionth; of equal ones, the first in the chain
        shares = [after[3] * 10**6 // before[3] for before, after in pairwise(hops)]
        lowest = relays[shares.index(min(shares))]
        highest = relays[shares.index(max(shares))]
        sent, arrived = hops[0][3], hops[-1][3]
        span = ratio_text(hops[-1][0] - hops[0][0], 3_600_000, 2)
        evidence = {
            "signal": self.name,
            "origin": subject,
            "end": hops[-1][2],
            "hops": self._hop_evidence(hops),
            "relays": relays,
            "hop_count": len(hops),
            "sent": yuan(sent),
            "arrived": yuan(arrived),
            "peeled": yuan(sent - arrived),
            "lowest_share": lowest["share"],
            "lowest_share_account": lowest["account"],
            "highest_share": highest["share"],
            "highest_share_account": highest["account"],
            "span_hours": span,
            "sample_txn_ids": [h[4] for h in hops],
            "baseline": args["baseline"],
        }
        counted_from = args["baseline"]["counted_from"]
        short = "short_floor" in args
        if short:
            # what made a chain this short a finding: payments this large for the dump
            counted_from = yuan(args["short_floor"])
            evidence["short_chain"] = {
                "shorter_than": cfg.min_hops,
                "percentile": cfg.short_payment_pct,
                "counted_from": counted_from,
            }
        summary = (
            f"{yuan(sent)} {unit} left account {subject} and {yuan(arrived)} {unit} reached "
            f"account {hops[-1][2]} through {len(relays)} account(s) in {len(hops)} transfers "
            f"within {span} hours, each passing on {cfg.min_passed_pct}-{cfg.max_passed_pct} % "
            f"of its one receipt as one payment (lowest {lowest['share']}, account "
            f"{lowest['account']}), in transfers of at least {counted_from} {unit}"
            + (
                f" (the dump's {ordinal(cfg.short_payment_pct)} percentile: fewer than "
                f"{cfg.min_hops} transfers)."
                if short
                else "."
            )
        )
        accounts = [*(h[1] for h in hops), hops[-1][2]][:20]
        return accounts, summary, evidence


__all__ = ["PeelChain"]
