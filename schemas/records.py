"""Typed, frozen records: what the engine sees after decoding.

Every record kind of ``docs/wire-format.md`` has one class here. Money is an
integer number of fen (1 yuan = 100 fen), time is integer epoch milliseconds,
dates are ``YYYY-MM-DD`` strings. Records are built only by
:mod:`fundflow.schemas.decode`, which validates the raw input first; the
engine and detectors never see a malformed record.

>>> t = CustodyTxn(txn_id="T1", ts=0, bank_id="B", platform_id="P",
...                debit_account="A", credit_account="C", amount=150,
...                purpose="invest")
>>> t.amount, t.currency, t.TYPE
(150, 'CNY', 'custody_txn')
"""

from __future__ import annotations

from decimal import Decimal
from typing import ClassVar, Literal

import msgspec

EntityKind = Literal[
    "p2p_platform",
    "crowdfunding_platform",
    "payment_institution",
    "asset_manager",
    "bank",
    "custody_bank",
    "company",
    "person",
    "real_estate",
]
Relation = Literal["shareholder", "controller", "executive", "affiliate", "subsidiary"]
Role = Literal[
    "lender_sub",
    "borrower_sub",
    "platform_custody",
    "platform_own",
    "risk_reserve",
    "client_reserve",
    "settlement",
    "operating",
    "personal",
    "corporate",
]
CustodyPurpose = Literal[
    "recharge",
    "invest",
    "disburse",
    "repay",
    "payout",
    "withdraw",
    "fee",
    "interest",
    "subsidy",
    "transfer",
]
ClearingSystem = Literal["CNAPS", "NUCC", "CUP", "direct", "internal"]
Severity = Literal["low", "medium", "high", "critical"]

SEVERITIES: tuple[str, ...] = ("low", "medium", "high", "critical")
SEVERITY_RANK = {s: i for i, s in enumerate(SEVERITIES)}

# Records hold no references to other records, so the cyclic GC need not
# track them (msgspec's gc=False): a measurable saving at millions of records.
_REC = {"frozen": True, "gc": False, "kw_only": True}


class Related(msgspec.Struct, **_REC):
    """One entry of ``entity.related``: ``entity_id`` stands in ``relation``
    to the entity that lists it (a ``shareholder`` of it, its ``subsidiary``)."""

    entity_id: str
    relation: Relation
    share: Decimal | None = None


class Entity(msgspec.Struct, **_REC):
    TYPE: ClassVar[str] = "entity"
    entity_id: str
    name: str
    kind: EntityKind
    licenses: tuple[str, ...] = ()
    related: tuple[Related, ...] = ()


class Account(msgspec.Struct, **_REC):
    TYPE: ClassVar[str] = "account"
    account_id: str
    owner_id: str
    bank_id: str
    role: Role
    platform_id: str | None = None
    opened_at: int | None = None


class Product(msgspec.Struct, **_REC):
    TYPE: ClassVar[str] = "product"
    product_id: str
    platform_id: str
    term_days: int
    annual_rate: Decimal
    min_ticket: int | None = None
    private: bool = False


class Loan(msgspec.Struct, **_REC):
    TYPE: ClassVar[str] = "loan"
    loan_id: str
    platform_id: str
    borrower_account: str
    principal: int
    term_days: int
    annual_rate: Decimal
    issued_at: int
    purpose: str | None = None


class ReserveReport(msgspec.Struct, **_REC):
    TYPE: ClassVar[str] = "reserve_report"
    institution_id: str
    as_of: str
    client_liabilities: int


class Balance(msgspec.Struct, **_REC):
    TYPE: ClassVar[str] = "balance"
    account_id: str
    as_of: int
    balance: int


class CustodyTxn(msgspec.Struct, **_REC):
    """An entry in a custody bank's ledger: ``amount`` fen move from
    ``debit_account`` to ``credit_account``."""

    TYPE: ClassVar[str] = "custody_txn"
    txn_id: str
    ts: int
    bank_id: str
    platform_id: str
    debit_account: str
    credit_account: str
    amount: int
    purpose: CustodyPurpose
    currency: str = "CNY"
    product_id: str | None = None
    loan_id: str | None = None


class ClearingTxn(msgspec.Struct, **_REC):
    """A payment seen by a clearing system or a bank: ``amount`` fen move from
    ``payer_account`` to ``payee_account``."""

    TYPE: ClassVar[str] = "clearing_txn"
    txn_id: str
    ts: int
    system: ClearingSystem
    initiator_id: str
    payer_bank: str
    payer_account: str
    payee_bank: str
    payee_account: str
    amount: int
    currency: str = "CNY"
    purpose: str | None = None


Record = Entity | Account | Product | Loan | ReserveReport | Balance | CustodyTxn | ClearingTxn
Txn = CustodyTxn | ClearingTxn

REFERENCE_KINDS = ("entity", "account", "product", "loan")
REPORT_KINDS = ("reserve_report", "balance")
TXN_KINDS = ("custody_txn", "clearing_txn")
KINDS = REFERENCE_KINDS + REPORT_KINDS + TXN_KINDS
#: Each kind's record class.
RECORD_TYPES: dict[str, type] = {
    c.TYPE: c
    for c in (Entity, Account, Product, Loan, ReserveReport, Balance, CustodyTxn, ClearingTxn)
}


class Alert(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=False):
    """A finding, as it leaves the engine (``docs/wire-format.md``, "Alerts").

    ``alert_id`` is deterministic: detector, subject and the identity of the
    evidence. An alert that grows is emitted again under the same id with a
    higher ``revision``; a store keeps the highest revision. ``amount`` is
    yuan as a string (``"1234.50"``); ``first_ts``/``last_ts`` are ISO-8601
    in the configured zone.
    """

    alert_id: str
    detector: str
    severity: Severity
    subject_id: str
    accounts: tuple[str, ...]
    first_ts: str
    last_ts: str
    amount: str
    summary: str
    evidence: dict
    detector_version: str
    revision: int = 1
