"""The wire shapes: what a record looks like on the way in, before conversion.

These msgspec structs are the shapes ``docs/wire-format.md`` describes, and do
the structural validation in C (required fields, identifier lengths, enums,
the money pattern). The JSON Schema files in ``schemas/json/`` are generated
from them (:func:`json_schemas`), and a test fails if the committed files
drift from these classes. Conversion into engine records (money to fen, time
to epoch ms) is in :mod:`fundflow.schemas.decode`.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Annotated, Any

import msgspec

from .records import ClearingSystem, CustodyPurpose, EntityKind, Relation, Role

# Identifiers: non-empty, at most 64 characters.
Id = Annotated[str, msgspec.Meta(min_length=1, max_length=64, description="identifier")]
# Money: yuan with at most 2 decimals, at most 10^15, never negative. A string
# is exact (the pattern bounds it: up to 15 integer digits, or 10^15 itself); a
# JSON number is accepted and checked again after decoding.
MONEY_PATTERN = r"^([0-9]{1,15}(\.[0-9]{1,2})?|1000000000000000(\.0{1,2})?)$"
Money = (
    Annotated[str, msgspec.Meta(pattern=MONEY_PATTERN, description="yuan, at most 2 decimals")]
    | Annotated[int, msgspec.Meta(ge=0, le=10**15)]
    | Annotated[float, msgspec.Meta(ge=0, le=10**15)]
)
# Time: ISO-8601 (an offset is optional; the configured zone applies without
# one) or integer epoch milliseconds.
Time = Annotated[str, msgspec.Meta(min_length=10, max_length=40, description="ISO-8601")] | int
Date = Annotated[
    str, msgspec.Meta(pattern=r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$", description="YYYY-MM-DD")
]
Rate = (
    Annotated[str, msgspec.Meta(pattern=r"^[0-9]{1,2}(\.[0-9]{1,12})?$")]
    | Annotated[int, msgspec.Meta(ge=0, le=10)]
    | Annotated[float, msgspec.Meta(ge=0, le=10)]
)
Currency = Annotated[str, msgspec.Meta(min_length=1, max_length=8)]

_W = {"frozen": True, "gc": False, "tag_field": "type", "forbid_unknown_fields": False}


class WireRelated(msgspec.Struct, frozen=True, gc=False):
    entity_id: Id
    relation: Relation
    share: Annotated[float, msgspec.Meta(ge=0, le=1)] | None = None


class WireEntity(msgspec.Struct, tag="entity", **_W):
    entity_id: Id
    name: Annotated[str, msgspec.Meta(min_length=1, max_length=256)]
    kind: EntityKind
    licenses: list[Annotated[str, msgspec.Meta(min_length=1, max_length=64)]] = []
    related: list[WireRelated] = []


class WireAccount(msgspec.Struct, tag="account", **_W):
    account_id: Id
    owner_id: Id
    bank_id: Id
    role: Role
    platform_id: Id | None = None
    opened_at: Time | None = None


class WireProduct(msgspec.Struct, tag="product", **_W):
    product_id: Id
    platform_id: Id
    term_days: Annotated[int, msgspec.Meta(gt=0, le=36500)]
    annual_rate: Rate
    min_ticket: Money | None = None
    private: bool = False


class WireLoan(msgspec.Struct, tag="loan", **_W):
    loan_id: Id
    platform_id: Id
    borrower_account: Id
    principal: Money
    term_days: Annotated[int, msgspec.Meta(gt=0, le=36500)]
    annual_rate: Rate
    issued_at: Time
    purpose: Annotated[str, msgspec.Meta(max_length=64)] | None = None


class WireReserveReport(msgspec.Struct, tag="reserve_report", **_W):
    institution_id: Id
    as_of: Date
    client_liabilities: Money


class WireBalance(msgspec.Struct, tag="balance", **_W):
    account_id: Id
    as_of: Time
    balance: Money


class WireCustodyTxn(msgspec.Struct, tag="custody_txn", **_W):
    txn_id: Id
    ts: Time
    bank_id: Id
    platform_id: Id
    debit_account: Id
    credit_account: Id
    amount: Money
    purpose: CustodyPurpose
    currency: Currency = "CNY"
    product_id: Id | None = None
    loan_id: Id | None = None


class WireClearingTxn(msgspec.Struct, tag="clearing_txn", **_W):
    txn_id: Id
    ts: Time
    system: ClearingSystem
    initiator_id: Id
    payer_bank: Id
    payer_account: Id
    payee_bank: Id
    payee_account: Id
    amount: Money
    currency: Currency = "CNY"
    purpose: Annotated[str, msgspec.Meta(max_length=64)] | None = None


WIRE_TYPES: dict[str, type[msgspec.Struct]] = {
    "entity": WireEntity,
    "account": WireAccount,
    "product": WireProduct,
    "loan": WireLoan,
    "reserve_report": WireReserveReport,
    "balance": WireBalance,
    "custody_txn": WireCustodyTxn,
    "clearing_txn": WireClearingTxn,
}
WireRecord = (
    WireEntity
    | WireAccount
    | WireProduct
    | WireLoan
    | WireReserveReport
    | WireBalance
    | WireCustodyTxn
    | WireClearingTxn
)

# The fields holding money or time: a failure there is `bad_amount` or
# `bad_time` rather than a generic `bad_field`.
MONEY_FIELDS = frozenset({"amount", "principal", "balance", "client_liabilities", "min_ticket"})
TIME_FIELDS = frozenset({"ts", "as_of", "issued_at", "opened_at"})
ID_FIELDS = frozenset(
    name
    for cls in WIRE_TYPES.values()
    for name in cls.__struct_fields__
    if name.endswith(("_id", "_account", "_bank"))  # payer_bank, payee_bank
)


def json_schemas() -> dict[str, dict[str, Any]]:
    """One JSON Schema (draft 2020-12) per record kind, generated from the
    wire structs. ``type`` is optional in each (a Kafka topic implies it)."""
    out: dict[str, dict[str, Any]] = {}
    for kind, cls in WIRE_TYPES.items():
        (schema,), components = msgspec.json.schema_components([cls], ref_template="#/$defs/{name}")
        body = dict(components.pop(cls.__name__))
        # A class docstring is prose for readers of the code; msgspec copies it
        # into the schema in a layout that changes between its versions.
        body.pop("description", None)
        body["required"] = [f for f in body.get("required", []) if f != "type"]
        doc: dict[str, Any] = {
            "$schema": "https://json-schema.org/draft/2020-12/schema",
            "$id": f"https://fundflow.example/schemas/{kind}.schema.json",
            "title": kind,
            **{k: v for k, v in body.items() if k != "title"},
        }
        if components:
            doc["$defs"] = components
        out[kind] = doc
    return out


#: The alert schema's description: part of the published contract, so it is
#: written here rather than taken from the ``Alert`` docstring (msgspec copies
#: docstrings into schemas in a layout that differs between its versions).
ALERT_SCHEMA_DESCRIPTION = (
    'A finding, as it leaves the engine (docs/wire-format.md, "Alerts"). '
    "alert_id is deterministic: detector, subject and the identity of the evidence. "
    "An alert that grows is emitted again under the same id with a higher revision; "
    'a store keeps the highest revision. amount is yuan as a string ("1234.50"); '
    "first_ts and last_ts are ISO-8601 in the configured zone."
)


def alert_json_schema() -> dict[str, Any]:
    """The JSON Schema (draft 2020-12) of an alert record, generated from
    :class:`~fundflow.schemas.records.Alert` with the description above."""
    from .records import Alert

    (schema,), components = msgspec.json.schema_components([Alert], ref_template="#/$defs/{name}")
    body = dict(components.pop("Alert"))
    body.pop("title", None)
    body["description"] = ALERT_SCHEMA_DESCRIPTION
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": "https://fundflow.example/schemas/alert.schema.json",
        "title": "alert",
        **body,
    }


__all__ = [
    "ALERT_SCHEMA_DESCRIPTION",
    "WIRE_TYPES",
    "WireRecord",
    "json_schemas",
    "alert_json_schema",
    "Decimal",
]
