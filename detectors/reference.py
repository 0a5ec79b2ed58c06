"""Reference data and the resolved view of a transaction.

:class:`Reference` holds the slowly changing records (entities, accounts,
products, loans) every detector reads, and answers the questions they share:
which entities are related to which, and which accounts a platform controls.
:class:`Flow` is one transaction with its two parties looked up once, so the
detectors need not each repeat the look-ups; custody and clearing
transactions become the same shape.

An account named in a transaction but never described by an ``account``
record is an outside party: its :class:`Flow` side is ``None`` (role
``unknown``).

Memory: a reference holds every account and entity of the monitored world,
so accounts and entities live in compiled tables (:class:`Table`, of the
Rust core, ``core/src/table.rs``) that keep their fields packed, not as
Python objects: ids as
UTF-8 text, values that recur (banks, platforms, roles, licence lists,
rates) once each; loans too. A look-up builds the record (the last few
hundred built are kept for hot keys). Products, a few per platform and read
on most investments, stay a dict, their platform ids and rates shared.
"""

from __future__ import annotations

from decimal import Decimal
from functools import partial
from typing import Any

import msgspec

from fundflow._core import Table
from fundflow.schemas.records import (
    Account,
    Balance,
    ClearingTxn,
    CustodyTxn,
    Entity,
    Loan,
    Product,
    Record,
    ReserveReport,
)

# Roles whose accounts a platform runs for itself (docs/detectors.md, "Controlled accounts").
PLATFORM_ROLES = frozenset({"platform_own", "platform_custody", "operating"})


def account_table() -> Table:
    """Accounts by id: the owner as text (owners are mostly distinct), the
    bank, role and platform kept once each, the opening time as an int."""
    return Table(Account, tuple(Account.__struct_fields__), "soooi")


def loan_table() -> Table:
    """Loans by id: platform, rate and purpose kept once each, the borrower
    account as text, principal, term and issue time as ints."""
    return Table(Loan, tuple(Loan.__struct_fields__), "osiioio")


def entity_table(names: bool = True) -> Table:
    """Entities by id: name, kind, licences and relations kept once each;
    with ``names=False`` no name at all (the records come back with
    ``name=""``)."""
    if names:
        return Table(Entity, tuple(Entity.__struct_fields__), "oooo")
    return Table(Entity, ("entity_id", "kind", "licenses", "related"), "ooo", {"name": ""})


class Flow(msgspec.Struct, frozen=True, gc=False):
    """A transaction as the detectors see it: ``amount`` fen from ``src_id``
    to ``dst_id`` at ``ts``; ``src``/``dst`` are the account records, or
    ``None`` for an unknown party. ``platform_id`` is set for custody
    transactions, ``system`` and ``initiator_id`` for clearing ones.
    ``src_in``/``dst_in`` say whether the custody transaction's platform
    controls that side (:meth:`Reference.controls`), resolved once for the
    detectors that ask; always false for a clearing transaction."""

    txn_id: str
    ts: int
    amount: int
    currency: str
    purpose: str | None
    src_id: str
    dst_id: str
    src: Account | None
    dst: Account | None
    platform_id: str | None
    product_id: str | None
    loan_id: str | None
    system: str | None
    initiator_id: str | None
    custody: bool
    src_in: bool = False
    dst_in: bool = False


def feed_key(flow: Flow) -> str:
    """The subject whose ordered feed a transaction belongs to, and so its
    partition key on Kafka: the platform of a custody transaction; for a
    clearing transaction, :func:`clearing_feed`. Everything a per-subject
    detector keeps about one subject arrives on one feed, in order.

    >>> feed_key(Flow("T", 0, 1, "CNY", None, "A", "B", None, None, "P1",
    ...               None, None, None, None, True))
    'P1'
    """
    if flow.custody:
        return flow.platform_id  # type: ignore[return-value]
    return clearing_feed(flow.src, flow.dst, flow.initiator_id)  # type: ignore[arg-type]


def clearing_feed(payer: Account | None, payee: Account | None, initiator_id: str) -> str:
    """A clearing payment's feed: the institution owning the
    ``client_reserve`` account on either side (the payer's first), else the
    payment's initiator. The one statement of the rule: the engine's
    ordering and deduplication, the Kafka producer's key and the daemon's
    alert ownership all come from it."""
    if payer is not None and payer.role == "client_reserve":
        return payer.owner_id
    if payee is not None and payee.role == "client_reserve":
        return payee.owner_id
    return initiator_id


class Reference:
    """The reference records seen so far; the latest record for an id wins.

    ``names=False`` keeps entities without their registered names (each
    stored ``Entity`` has ``name=""``): no detector reads a name from the
    reference (``unlicensed_business`` reads it from the entity record as it
    arrives), and at about 80 bytes a name it is a large share of what an
    entity costs. An engine's own reference is made so; a reference that
    feeds a picture of the records (``fundflow graph``) keeps them.
    """

    def __init__(self, names: bool = True) -> None:
        self.names = names
        self.entities = entity_table(names)
        self.accounts = account_table()
        self.products: dict[str, Product] = {}
        self.loans = loan_table()
        # entity id -> ids related to it in either direction (it lists them,
        # or they list it), kept in step with entity records.
        self._related: dict[str, set[str]] = {}
        self._lists: dict[str, tuple[str, ...]] = {}
        self._listed_by: dict[str, set[str]] = {}
        # One copy of each recurring value (bank, platform and purpose ids,
        # licence lists, rates): the first seen of equal values is shared.
        self._shared: dict[Any, Any] = {}
        # Counts product records added: what is derived from the products
        # (excessive_return's peer rates) is rebuilt when it moves.
        self.product_version = 0

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__()  # type: ignore[misc]  # attributes added since the checkpoint
        # A checkpoint from before the compiled tables holds plain dicts.
        for name, make in (
            ("entities", partial(entity_table, state.get("names", True))),
            ("accounts", account_table),
            ("loans", loan_table),
        ):
            held = state.get(name)
            if isinstance(held, dict):
                table = make()
                for key, record in held.items():
                    table[key] = record
                state[name] = table
        # The borrowers' index of an older version: nothing reads it now.
        state.pop("_borrows", None)
        state.pop("_borrows_waiting", None)
        self.__dict__.update(state)

    # -- updates ------------------------------------------------------------

    def feed_of(self, record: ClearingTxn | ReserveReport | Balance) -> str:
        """The feed of a clearing payment, reserve report or balance:
        :func:`feed_key`'s rule, read off the record without building its
        flow (a custody transaction's feed is its ``platform_id``)."""
        t = type(record)
        accounts = self.accounts
        if t is ClearingTxn:
            return clearing_feed(
                accounts.get(record.payer_account),  # type: ignore[union-attr]
                accounts.get(record.payee_account),  # type: ignore[union-attr]
                record.initiator_id,  # type: ignore[union-attr]
            )
        if t is ReserveReport:
            return record.institution_id  # type: ignore[union-attr]
        acc = accounts.get(record.account_id)  # type: ignore[union-attr]
        return acc.owner_id if acc is not None else record.account_id  # type: ignore[union-attr]

    def key_of(self, record: Record) -> str:
        """The Kafka key of a decoded record: a reference record's own id; a
        transaction's or report's feed (:meth:`feed_of`), from the reference
        records added so far. What the producer keys by and what the
        engine orders by are one rule.

        >>> ref = Reference()
        >>> ref.add(Account(account_id="R1", owner_id="I1", role="client_reserve",
        ...                 bank_id="B1"))
        >>> ref.key_of(ClearingTxn(txn_id="C1", ts=0, system="CNAPS", initiator_id="BANK",
        ...     payer_bank="B1", payer_account="X", payee_bank="B1", payee_account="R1",
        ...     amount=1, purpose="transfer"))
        'I1'
        """
        t = type(record)
        if t is CustodyTxn:
            return record.platform_id  # type: ignore[union-attr]
        if t is Entity:
            return record.entity_id  # type: ignore[union-attr]
        if t is Account:
            return record.account_id  # type: ignore[union-attr]
        if t is Product:
            return record.product_id  # type: ignore[union-attr]
        if t is Loan:
            return record.loan_id  # type: ignore[union-attr]
        return self.feed_of(record)  # type: ignore[arg-type]

    def add(self, record: Entity | Account | Product | Loan) -> None:
        t = type(record)
        if t is Account:
            self.accounts[record.account_id] = record  # type: ignore[union-attr]
        elif t is Entity:
            self._add_entity(record)  # type: ignore[arg-type]
        elif t is Product:
            product = msgspec.structs.replace(
                record,  # type: ignore[arg-type]
                platform_id=self._share(record.platform_id),  # type: ignore[union-attr]
                annual_rate=self._share_rate(record.annual_rate),  # type: ignore[union-attr]
            )
            self.products[product.product_id] = product
            self.product_version += 1
        elif t is Loan:
            self.loans[record.loan_id] = record  # type: ignore[union-attr]

    def _share(self, value: Any) -> Any:
        return self._shared.setdefault(value, value)

    def _share_rate(self, rate: Decimal) -> Decimal:
        # Keyed by the exact text: Decimal("0.1") == Decimal("0.10"), yet they print apart.
        return self._shared.setdefault(("rate", str(rate)), rate)

    def _add_entity(self, entity: Entity) -> None:
        eid = entity.entity_id
        old = self._lists.get(eid, ())
        new = tuple(dict.fromkeys(r.entity_id for r in entity.related if r.entity_id != eid))
        for other in old:
            self._listed_by.get(other, set()).discard(eid)
        for other in new:
            self._listed_by.setdefault(other, set()).add(eid)
        if new:
            self._lists[eid] = new
        else:  # most entities list nobody: no entry at all
            self._lists.pop(eid, None)
        for x in {eid, *old, *new}:
            peers = set(self._lists.get(x, ())) | self._listed_by.get(x, set())
            if peers:
                self._related[x] = peers
            else:
                self._related.pop(x, None)
        self.entities[eid] = entity

    # -- questions ----------------------------------------------------------

    def related(self, entity_id: str) -> set[str]:
        """Entities directly related to ``entity_id`` (either side listed it)."""
        return self._related.get(entity_id, _EMPTY)

    def is_related_or_self(self, entity_id: str, other: str) -> bool:
        return entity_id == other or other in self._related.get(entity_id, _EMPTY)

    def controls(self, platform_id: str, account: Account | None) -> bool:
        """Whether ``platform_id`` controls ``account``: a platform role tied
        to the platform, or any account owned by it or a related entity."""
        if account is None:
            return False
        owner = account.owner_id
        if owner == platform_id:
            return True
        if account.role in PLATFORM_ROLES and account.platform_id == platform_id:
            return True
        return owner in self._related.get(platform_id, _EMPTY)

    def has_license(self, entity_id: str, license_name: str) -> bool | None:
        """``None`` when the entity is unknown."""
        e = self.entities.get(entity_id)
        if e is None:
            return None
        return license_name in e.licenses

    def flow(self, txn: CustodyTxn | ClearingTxn) -> Flow:
        accounts = self.accounts
        if type(txn) is CustodyTxn:
            src = accounts.get(txn.debit_account)
            dst = accounts.get(txn.credit_account)
            # Reference.controls for both sides, inline: every platform
            # detector asks it of most custody transactions.
            pid = txn.platform_id
            related = self._related.get(pid, _EMPTY)
            src_in = src is not None and (
                src.owner_id == pid
                or (src.role in PLATFORM_ROLES and src.platform_id == pid)
                or src.owner_id in related
            )
            dst_in = dst is not None and (
                dst.owner_id == pid
                or (dst.role in PLATFORM_ROLES and dst.platform_id == pid)
                or dst.owner_id in related
            )
            return Flow(
                txn.txn_id,
                txn.ts,
                txn.amount,
                txn.currency,
                txn.purpose,
                txn.debit_account,
                txn.credit_account,
                src,
                dst,
                txn.platform_id,
                txn.product_id,
                txn.loan_id,
                None,
                None,
                True,
                src_in,
                dst_in,
            )
        src = accounts.get(txn.payer_account)
        dst = accounts.get(txn.payee_account)
        return Flow(
            txn.txn_id,
            txn.ts,
            txn.amount,
            txn.currency,
            txn.purpose,
            txn.payer_account,
            txn.payee_account,
            src,
            dst,
            None,
            None,
            None,
            txn.system,  # type: ignore[union-attr]
            txn.initiator_id,  # type: ignore[union-attr]
            False,
        )


_EMPTY: set[str] = set()
