"""private_product_split — 私募拆分 (seed 二(二)2: "未经相关部门批准,不得将私募方式发行的多类金融产品
通过打包、拆分等形式向公众销售").

A privately placed product may only be sold to a few qualified investors,
each for at least its minimum ticket. Per platform (the product's
``platform_id``), for each product whose record says ``private``:

``too_many_investors``
    More than ``max_investors`` distinct investors (200 by default) have
    put money into it (custody ``invest`` transactions naming the
    ``product_id``). An investor is the owner of the paying account (the
    account id itself when the account is unknown), counted exactly.
``below_min_ticket``
    An investment that leaves its investor holding less than the product's
    ``min_ticket`` in it (all of the investor's investments so far): the
    product was cut into pieces smaller than it may be sold in.

Investments into products not yet described by a ``product`` record, or
not private, are not judged (there is nothing to judge them against).

Memory: each private product keeps its investors (id -> fen invested) for
its life: the set is freed once the product's own term has passed since its
last investment (by the platform's clock), when every investor has been
paid back and a later sale is a new offering. At most, the investors of the
private products alive at once: for 200 investors, some tens of kilobytes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .alerting import make_alert_id, yuan
from .base import Detector, SlotState
from .config import DAY_MS
from .reference import Flow
from .settings import Int, section, setting


@section("private_product_split")
@dataclass(frozen=True, slots=True)
class PrivateProductConfig:
    """``[private_product_split]``."""

    max_investors: int = setting(Int(1))


class _Offering(SlotState):
    """One private product's investors and findings."""

    __slots__ = (
        "investors",
        "invested",
        "first_ts",
        "last_ts",
        "txns",
        "small",
        "small_amount",
        "small_first",
        "small_last",
        "small_txns",
        "small_investors",
    )

    def __init__(self) -> None:
        self.investors: dict[str, int] = {}
        self.invested = 0
        self.first_ts = -1
        self.last_ts = -1
        self.txns: list[str] = []
        self.small = 0
        self.small_amount = 0
        self.small_first = -1
        self.small_last = -1
        self.small_txns: list[str] = []
        self.small_investors: list[str] = []


class PrivateProductSplit(Detector):
    """Finds private products sold to the public; see the module docstring.

    >>> from fundflow.schemas.records import Product
    >>> from decimal import Decimal
    >>> det = PrivateProductSplit()
    >>> det.update(Product(product_id="PR", platform_id="P", term_days=360,
    ...                    annual_rate=Decimal("0.08"), private=True)).alerts
    []
    """

    name = "private_product_split"
    version = "1.0"
    # Its subjects are platforms, named by custody transactions only.
    flow_kinds = frozenset({"custody_txn"})

    def _fresh(self) -> dict[str, Any]:
        # platform -> product id -> offering; platform -> its clock
        return {"platforms": {}, "clocks": {}}

    def _on_flow(self, f: Flow) -> None:
        if not f.custody or f.currency != "CNY":
            return
        pid = f.platform_id
        if pid is not None:
            self._settle(pid, f.ts)
        if pid is not None and f.ts > self.clocks.get(pid, -1):
            self.clocks[pid] = f.ts
            self._forget(pid, f.ts)
        if f.purpose != "invest" or f.product_id is None:
            return
        product = self.ref.products.get(f.product_id)
        if product is None or not product.private:
            return
        owner = product.platform_id
        per = self.platforms.get(owner)
        if per is None:
            per = self.platforms[owner] = {}
        off: _Offering | None = per.get(product.product_id)
        if off is None:
            off = per[product.product_id] = _Offering()
        investor = f.src.owner_id if f.src is not None else f.src_id
        holding = off.investors.get(investor, 0) + f.amount
        off.investors[investor] = holding
        off.invested += f.amount
        off.first_ts = f.ts if off.first_ts < 0 else off.first_ts
        off.last_ts = max(off.last_ts, f.ts)
        cap = self.config.alerts.sample_txns
        if len(off.txns) < cap:
            off.txns.append(f.txn_id)
        if len(off.investors) > self.config.private_product_split.max_investors:
            self._too_many(owner, product.product_id, off)
        if product.min_ticket is not None and holding < product.min_ticket:
            off.small += 1
            off.small_amount += f.amount
            off.small_first = f.ts if off.small_first < 0 else off.small_first
            off.small_last = max(off.small_last, f.ts)
            if len(off.small_txns) < cap:
                off.small_txns.append(f.txn_id)
            if investor not in off.small_investors and len(off.small_investors) < 20:
                off.small_investors.append(investor)
            self._below_ticket(owner, product.product_id, product.min_ticket, off)

    def _too_many(self, pid: str, product_id: str, off: _Offering) -> None:
        n = len(off.investors)
        limit = self.config.private_product_split.max_investors
        aid = make_alert_id(self.name, pid, "too_many_investors", product_id, off.first_ts)
        self.book.offer(
            aid,
            pid,
            "high",
            off.invested,
            off.first_ts,
            off.last_ts,
            lambda: (
                [],
                f"Platform {pid} sold private product {product_id} to {n} distinct investors "
                f"(more than {limit}), {yuan(off.invested)} yuan in all.",
                {
                    "signal": "too_many_investors",
                    "product_id": product_id,
                    "distinct_investors": n,
                    "invested": yuan(off.invested),
                    "sample_txn_ids": list(off.txns),
                },
            ),
            # An offering can sell for its whole term: settled by the day.
            ends=self._day_ends(off.last_ts),
        )

    def _below_ticket(self, pid: str, product_id: str, min_ticket: int, off: _Offering) -> None:
        aid = make_alert_id(self.name, pid, "below_min_ticket", product_id, off.first_ts)
        self.book.offer(
            aid,
            pid,
            "medium",
            off.small_amount,
            off.small_first,
            off.small_last,
            lambda: (
                [],
                f"Platform {pid} sold private product {product_id} (minimum ticket "
                f"{yuan(min_ticket)} yuan) in {off.small} investment(s) leaving the investor "
                f"below the minimum, {yuan(off.small_amount)} yuan in all.",
                {
                    "signal": "below_min_ticket",
                    "product_id": product_id,
                    "min_ticket": yuan(min_ticket),
                    "investments": off.small,
                    "amount": yuan(off.small_amount),
                    "investors": list(off.small_investors),
                    "sample_txn_ids": list(off.small_txns),
                },
            ),
            ends=self._day_ends(off.small_last),
        )

    def _forget(self, pid: str, now: int) -> None:
        """Free the offerings of ``pid`` whose term has passed since their
        last investment."""
        per = self.platforms.get(pid)
        if not per:
            return
        products = self.ref.products
        for product_id in [
            p
            for p, off in per.items()
            if products.get(p) is not None and now - off.last_ts > products[p].term_days * DAY_MS
        ]:
            del per[product_id]
