"""The wire format (``docs/wire-format.md``) against ``fundflow.schemas``.

Four things are checked here:

* **drift** - the committed JSON Schema files in ``schemas/json/`` are exactly
  what :mod:`fundflow.schema_files` generates from the wire structs;
* **agreement** - a table of sample records run through both the committed
  JSON Schema (draft 2020-12) and :class:`RecordDecoder`: whatever the schema
  rejects, the decoder dead-letters. The decoder is stricter only for the rules
  in :data:`DECODER_ONLY_RULES`, which the generated schema does not carry;
* **conformance** - every rule of the wire format, each with its exact
  expected result (value in fen / epoch ms, or the dead-letter reason);
* **robustness** - ``decode()`` and ``from_row()`` never raise, whatever they
  are given (Hypothesis).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from jsonschema import Draft202012Validator

from fundflow.schema_files import default_dir, write_schema_files
from fundflow.schemas import (
    REASONS,
    Account,
    Balance,
    ClearingTxn,
    CustodyTxn,
    DeadLetter,
    Entity,
    Loan,
    Product,
    RecordDecoder,
    Related,
    ReserveReport,
)
from fundflow.schemas.records import KINDS
from fundflow.schemas.wire import WIRE_TYPES

SCHEMA_DIR = default_dir()
REGENERATE = "regenerate them with `python -m fundflow.schema_files` and commit the result"
RECORD_TYPES = (Entity, Account, Product, Loan, ReserveReport, Balance, CustodyTxn, ClearingTxn)

DEC = RecordDecoder()
DEC_UTC = RecordDecoder(zone="UTC")

# 2026-03-01T10:00:00+08:00
T0 = 1772330400000


# -- sample records ----------------------------------------------------------

ENTITY = {
    "type": "entity",
    "entity_id": "E1",
    "name": "某某网络借贷信息中介有限公司",
    "kind": "p2p_platform",
    "licenses": ["p2p_registered", "fund_sales"],
    "related": [{"entity_id": "E2", "relation": "shareholder", "share": 0.6}],
}
ACCOUNT = {
    "type": "account",
    "account_id": "A1",
    "owner_id": "E1",
    "bank_id": "BK1",
    "platform_id": "E1",
    "role": "platform_custody",
    "opened_at": "2025-01-01T09:00:00+08:00",
}
PRODUCT = {
    "type": "product",
    "product_id": "PR1",
    "platform_id": "E1",
    "term_days": 90,
    "annual_rate": "0.08",
    "min_ticket": "100.00",
    "private": True,
}
LOAN = {
    "type": "loan",
    "loan_id": "L1",
    "platform_id": "E1",
    "borrower_account": "A9",
    "principal": "50000",
    "term_days": 365,
    "annual_rate": 0.12,
    "issued_at": T0,
    "purpose": "consumer",
}
REPORT = {
    "type": "reserve_report",
    "institution_id": "PI1",
    "as_of": "2026-03-01",
    "client_liabilities": "1000000.00",
}
BALANCE = {
    "type": "balance",
    "account_id": "A1",
    "as_of": "2026-03-01T00:00:00+08:00",
    "balance": "0",
}
CUSTODY = {
    "type": "custody_txn",
    "txn_id": "T1",
    "ts": "2026-03-01T10:00:00+08:00",
    "bank_id": "CB1",
    "platform_id": "E1",
    "debit_account": "A-LENDER-1",
    "credit_account": "A-BORROWER-1",
    "amount": "1234.50",
    "purpose": "invest",
    "product_id": "PR1",
    "loan_id": None,
}
CLEARING = {
    "type": "clearing_txn",
    "txn_id": "C1",
    "ts": T0,
    "system": "NUCC",
    "initiator_id": "PI1",
    "payer_bank": "BK1",
    "payer_account": "A1",
    "payee_bank": "BK2",
    "payee_account": "A2",
    "amount": 1234.5,
    "purpose": "goods",
}
SAMPLES = {
    "entity": ENTITY,
    "account": ACCOUNT,
    "product": PRODUCT,
    "loan": LOAN,
    "reserve_report": REPORT,
    "balance": BALANCE,
    "custody_txn": CUSTODY,
    "clearing_txn": CLEARING,
}

# What the samples decode to, pinned.
CUSTODY_RECORD = CustodyTxn(
    txn_id="T1",
    ts=T0,
    bank_id="CB1",
    platform_id="E1",
    debit_account="A-LENDER-1",
    credit_account="A-BORROWER-1",
    amount=123450,
    purpose="invest",
    currency="CNY",
    product_id="PR1",
    loan_id=None,
)
DECODED = {
    "entity": Entity(
        entity_id="E1",
        name="某某网络借贷信息中介有限公司",
        kind="p2p_platform",
        licenses=("p2p_registered", "fund_sales"),
        related=(Related(entity_id="E2", relation="shareholder", share=Decimal("0.6")),),
    ),
    "account": Account(
        account_id="A1",
        owner_id="E1",
        bank_id="BK1",
        role="platform_custody",
        platform_id="E1",
        opened_at=1735693200000,
    ),
    "product": Product(
        product_id="PR1",
        platform_id="E1",
        term_days=90,
        annual_rate=Decimal("0.08"),
        min_ticket=10000,
        private=True,
    ),
    "loan": Loan(
        loan_id="L1",
        platform_id="E1",
        borrower_account="A9",
        principal=5000000,
        term_days=365,
        annual_rate=Decimal("0.12"),
        issued_at=T0,
        purpose="consumer",
    ),
    "reserve_report": ReserveReport(
        institution_id="PI1", as_of="2026-03-01", client_liabilities=100000000
    ),
    "balance": Balance(account_id="A1", as_of=1772294400000, balance=0),
    "custody_txn": CUSTODY_RECORD,
    "clearing_txn": ClearingTxn(
        txn_id="C1",
        ts=T0,
        system="NUCC",
        initiator_id="PI1",
        payer_bank="BK1",
        payer_account="A1",
        payee_bank="BK2",
        payee_account="A2",
        amount=123450,
        currency="CNY",
        purpose="goods",
    ),
}


def with_(base: dict[str, Any], **changes: Any) -> dict[str, Any]:
    """``base`` with fields changed; a value of ``...`` removes the field."""
    out = dict(base)
    for key, value in changes.items():
        if value is ...:
            out.pop(key, None)
        else:
            out[key] = value
    return out


def line(record: dict[str, Any]) -> bytes:
    return json.dumps(record, ensure_ascii=False).encode("utf-8")


@dataclass(frozen=True)
class Raw:
    """A JSON value written exactly as given (``1e3``, ``NaN``, ``12.345``)."""

    text: str


def raw_line(*pairs: tuple[str, Any]) -> bytes:
    """A JSON object from key/value pairs in order (keys may repeat)."""
    parts = [
        f"{json.dumps(k)}:{v.text if isinstance(v, Raw) else json.dumps(v, ensure_ascii=False)}"
        for k, v in pairs
    ]
    return ("{" + ",".join(parts) + "}").encode("utf-8")


def custody_with(**raw_fields: Any) -> bytes:
    """The sample custody_txn line with fields replaced, values given as Python
    values or :class:`Raw` JSON text."""
    pairs = [(k, v) for k, v in CUSTODY.items() if k not in raw_fields]
    pairs += [(k, v) for k, v in raw_fields.items() if v is not ...]
    return raw_line(*pairs)


def outcome(result: Any) -> Any:
    """A dead letter's reason, or the record itself."""
    if isinstance(result, DeadLetter):
        assert result.reason in REASONS, result
        return result.reason
    assert isinstance(result, RECORD_TYPES), result
    return result


# -- drift -------------------------------------------------------------------


def test_committed_schema_files_match_the_wire_structs(tmp_path: Path) -> None:
    written = write_schema_files(tmp_path)
    expected_names = sorted(p.name for p in written)
    assert expected_names == sorted([f"{k}.schema.json" for k in KINDS] + ["alert.schema.json"])
    committed_names = sorted(p.name for p in SCHEMA_DIR.glob("*.schema.json"))
    assert committed_names == expected_names, (
        f"schemas/json/ holds {committed_names}, the wire structs give {expected_names}: "
        f"{REGENERATE} (and delete files for kinds that no longer exist)"
    )
    for fresh in written:
        committed = SCHEMA_DIR / fresh.name
        assert committed.read_bytes() == fresh.read_bytes(), (
            f"schemas/json/{fresh.name} differs from what schemas/wire.py generates: {REGENERATE}"
        )


def test_schema_files_are_deterministic_and_valid_draft_2020_12(tmp_path: Path) -> None:
    first = {p.name: p.read_bytes() for p in write_schema_files(tmp_path / "a")}
    second = {p.name: p.read_bytes() for p in write_schema_files(tmp_path / "b")}
    assert first == second
    for name, data in first.items():
        assert data.endswith(b"}\n") and not data.endswith(b"\n\n"), name
        Draft202012Validator.check_schema(json.loads(data))


# -- agreement: JSON Schema vs decoder ----------------------------------------

#: Rules the decoder enforces that the generated JSON Schema files do not: most
#: cannot be said in JSON Schema (cross-field, calendar, double precision); the
#: rest (zero amounts, rate and principal bounds) are checked after msgspec's
#: shape check, so they are not in the schema generated from it. A sample the
#: schema accepts but the decoder refuses must name one of these.
DECODER_ONLY_RULES = {
    "zero_txn_amount": "a transaction amount must be > 0, while money in general may be 0",
    "same_account": "debit == credit (payer == payee) compares two fields",
    "time_calendar": "an ISO-8601 string must be a real calendar time; the schema checks its length",
    "time_range": "times must fall in 1970-01-01T00:00Z .. 2100-01-01T00:00Z (exclusive), "
    "in UTC after applying the offset",
    "date_calendar": "a YYYY-MM-DD date must exist (2026-02-30 does not)",
    "number_decimals": "a JSON number with more than 2 decimals; multipleOf 0.01 is unreliable on doubles",
    "float_integer": "JSON Schema counts 1.0 as an integer; msgspec wants a JSON integer",
    "rate_range": "annual_rate as a string must be <= 10; the pattern bounds digits only",
    "positive_principal": "a loan's principal must be > 0",
}


@dataclass(frozen=True)
class Sample:
    name: str
    kind: str
    record: dict[str, Any]
    schema_ok: bool
    expect: str  # "ok" or a dead-letter reason
    rule: str | None = None  # a DECODER_ONLY_RULES key when schema_ok and refused


AGREEMENT = [
    # valid, one or more per kind
    *(Sample(f"{k}-sample", k, r, True, "ok") for k, r in SAMPLES.items()),
    Sample(
        "entity-minimal",
        "entity",
        {"type": "entity", "entity_id": "E", "name": "张三", "kind": "person"},
        True,
        "ok",
    ),
    Sample(
        "account-no-platform",
        "account",
        with_(ACCOUNT, platform_id=None, opened_at=...),
        True,
        "ok",
    ),
    Sample(
        "custody-usd-number",
        "custody_txn",
        with_(CUSTODY, amount=7, currency="USD", product_id=...),
        True,
        "ok",
    ),
    Sample("balance-epoch", "balance", with_(BALANCE, as_of=0, balance=0.0), True, "ok"),
    Sample(
        "extra-fields",
        "clearing_txn",
        with_(CLEARING, note={"x": [1, None]}, flag=True),
        True,
        "ok",
    ),
    # refused by both
    Sample("entity-kind", "entity", with_(ENTITY, kind="bank2"), False, "bad_enum"),
    Sample(
        "entity-relation",
        "entity",
        with_(ENTITY, related=[{"entity_id": "E2", "relation": "friend"}]),
        False,
        "bad_enum",
    ),
    Sample(
        "entity-share",
        "entity",
        with_(ENTITY, related=[{"entity_id": "E2", "relation": "affiliate", "share": 1.5}]),
        False,
        "bad_field",
    ),
    Sample(
        "entity-licenses", "entity", with_(ENTITY, licenses="p2p_registered"), False, "bad_field"
    ),
    Sample("entity-name-empty", "entity", with_(ENTITY, name=""), False, "bad_field"),
    Sample("entity-no-kind", "entity", with_(ENTITY, kind=...), False, "missing_field"),
    Sample("account-role", "account", with_(ACCOUNT, role="savings"), False, "bad_enum"),
    Sample("account-owner-empty", "account", with_(ACCOUNT, owner_id=""), False, "bad_id"),
    Sample("account-bank-65", "account", with_(ACCOUNT, bank_id="B" * 65), False, "bad_id"),
    Sample("account-opened-bool", "account", with_(ACCOUNT, opened_at=True), False, "bad_time"),
    Sample("product-term-0", "product", with_(PRODUCT, term_days=0), False, "bad_field"),
    Sample("product-rate-text", "product", with_(PRODUCT, annual_rate="8%"), False, "bad_field"),
    Sample("product-rate-11", "product", with_(PRODUCT, annual_rate=11), False, "bad_field"),
    Sample("product-private-yes", "product", with_(PRODUCT, private="yes"), False, "bad_field"),
    Sample(
        "product-ticket-negative", "product", with_(PRODUCT, min_ticket="-5"), False, "bad_amount"
    ),
    Sample("loan-principal-3dp", "loan", with_(LOAN, principal="12.345"), False, "bad_amount"),
    Sample("loan-no-issued", "loan", with_(LOAN, issued_at=...), False, "missing_field"),
    Sample("loan-issued-fraction", "loan", with_(LOAN, issued_at=T0 + 0.5), False, "bad_time"),
    Sample(
        "report-date-shape", "reserve_report", with_(REPORT, as_of="2026-3-1"), False, "bad_time"
    ),
    Sample(
        "report-nan", "reserve_report", with_(REPORT, client_liabilities="NaN"), False, "bad_amount"
    ),
    Sample("balance-negative", "balance", with_(BALANCE, balance=-1), False, "bad_amount"),
    Sample("balance-as-of-short", "balance", with_(BALANCE, as_of="2026"), False, "bad_time"),
    Sample("custody-purpose", "custody_txn", with_(CUSTODY, purpose="gift"), False, "bad_enum"),
    Sample("custody-1e3-string", "custody_txn", with_(CUSTODY, amount="1e3"), False, "bad_amount"),
    Sample(
        "custody-over-1e15",
        "custody_txn",
        with_(CUSTODY, amount="1000000000000000.01"),
        False,
        "bad_amount",
    ),
    Sample(
        "custody-16-digits",
        "custody_txn",
        with_(CUSTODY, amount="9999999999999999"),
        False,
        "bad_amount",
    ),
    Sample("custody-txn-id-65", "custody_txn", with_(CUSTODY, txn_id="T" * 65), False, "bad_id"),
    Sample("custody-type", "custody_txn", with_(CUSTODY, type="custody"), False, "unknown_type"),
    Sample("clearing-system", "clearing_txn", with_(CLEARING, system="SWIFT"), False, "bad_enum"),
    Sample(
        "clearing-payer-bank-int", "clearing_txn", with_(CLEARING, payer_bank=7), False, "bad_id"
    ),
    Sample(
        "clearing-currency-empty", "clearing_txn", with_(CLEARING, currency=""), False, "bad_field"
    ),
    Sample(
        "clearing-purpose-65", "clearing_txn", with_(CLEARING, purpose="p" * 65), False, "bad_field"
    ),
    Sample(
        "clearing-no-amount", "clearing_txn", with_(CLEARING, amount=...), False, "missing_field"
    ),
    # accepted by the schema, refused by the decoder: documented rules only
    Sample(
        "custody-zero",
        "custody_txn",
        with_(CUSTODY, amount="0.00"),
        True,
        "bad_amount",
        "zero_txn_amount",
    ),
    Sample(
        "clearing-zero",
        "clearing_txn",
        with_(CLEARING, amount=0),
        True,
        "bad_amount",
        "zero_txn_amount",
    ),
    Sample(
        "custody-same-account",
        "custody_txn",
        with_(CUSTODY, credit_account="A-LENDER-1"),
        True,
        "bad_field",
        "same_account",
    ),
    Sample(
        "clearing-same-account",
        "clearing_txn",
        with_(CLEARING, payee_account="A1"),
        True,
        "bad_field",
        "same_account",
    ),
    Sample(
        "custody-month-13",
        "custody_txn",
        with_(CUSTODY, ts="2026-13-45T99:00:00+08:00"),
        True,
        "bad_time",
        "time_calendar",
    ),
    Sample(
        "custody-before-1970", "custody_txn", with_(CUSTODY, ts=-1), True, "bad_time", "time_range"
    ),
    Sample(
        "account-2100",
        "account",
        with_(ACCOUNT, opened_at="2100-01-01T00:00:00Z"),
        True,
        "bad_time",
        "time_range",
    ),
    Sample(
        "report-feb-30",
        "reserve_report",
        with_(REPORT, as_of="2026-02-30"),
        True,
        "bad_time",
        "date_calendar",
    ),
    Sample(
        "custody-3dp-number",
        "custody_txn",
        with_(CUSTODY, amount=12.345),
        True,
        "bad_amount",
        "number_decimals",
    ),
    Sample(
        "clearing-float-ts",
        "clearing_txn",
        with_(CLEARING, ts=float(T0)),
        True,
        "bad_time",
        "float_integer",
    ),
    Sample(
        "product-term-float",
        "product",
        with_(PRODUCT, term_days=90.0),
        True,
        "bad_field",
        "float_integer",
    ),
    Sample("loan-rate-12", "loan", with_(LOAN, annual_rate="12"), True, "bad_field", "rate_range"),
    Sample(
        "loan-principal-0",
        "loan",
        with_(LOAN, principal="0"),
        True,
        "bad_amount",
        "positive_principal",
    ),
]


@pytest.fixture(scope="module")
def validators() -> dict[str, Draft202012Validator]:
    return {
        kind: Draft202012Validator(
            json.loads((SCHEMA_DIR / f"{kind}.schema.json").read_text("utf-8"))
        )
        for kind in KINDS
    }


@pytest.mark.parametrize("sample", AGREEMENT, ids=lambda s: s.name)
def test_schema_and_decoder_agree(
    sample: Sample, validators: dict[str, Draft202012Validator]
) -> None:
    schema_ok = validators[sample.kind].is_valid(sample.record)
    result = outcome(DEC.decode(line(sample.record)))
    got = result if isinstance(result, str) else "ok"
    assert (schema_ok, got) == (sample.schema_ok, sample.expect)
    if not schema_ok:
        assert got != "ok", "the JSON Schema rejects a record the decoder accepts"
    elif got != "ok":
        assert sample.rule in DECODER_ONLY_RULES, (
            "decoder refuses a schema-valid record for an undocumented rule"
        )
    if got == "ok" and sample.name.endswith("-sample"):
        assert result == DECODED[sample.kind]


def test_agreement_table_covers_every_kind_and_every_documented_rule() -> None:
    assert {s.kind for s in AGREEMENT} == set(KINDS)
    assert {s.rule for s in AGREEMENT if s.rule} == set(DECODER_ONLY_RULES)
    assert len(AGREEMENT) >= 40


# -- conformance: every rule, exact results ----------------------------------


@dataclass(frozen=True)
class Case:
    name: str
    run: Callable[[], Any]
    expect: Any  # a dead-letter reason, a record, or {field: value} of the record


def dec(raw: bytes | str, kind: str | None = None) -> Callable[[], Any]:
    return lambda: DEC.decode(raw, kind=kind)


def amount(value: Any) -> Callable[[], Any]:
    return dec(custody_with(amount=value))


def ts(value: Any, decoder: RecordDecoder = DEC) -> Callable[[], Any]:
    return lambda: decoder.decode(custody_with(ts=value))


MONEY = [
    Case("money-string", amount("1234.50"), {"amount": 123450}),
    Case("money-number", amount(1234.5), {"amount": 123450}),
    Case("money-number-text-1234.50", amount(Raw("1234.50")), {"amount": 123450}),
    Case("money-int", amount(7), {"amount": 700}),
    Case("money-int-string", amount("7"), {"amount": 700}),
    Case("money-one-fen", amount("0.01"), {"amount": 1}),
    Case("money-one-decimal", amount("12.3"), {"amount": 1230}),
    Case("money-number-0.1", amount(0.1), {"amount": 10}),
    Case("money-number-1e3", amount(Raw("1e3")), {"amount": 100000}),
    Case("money-leading-zeros", amount("0012.30"), {"amount": 1230}),
    Case("money-max-string", amount("1000000000000000.00"), {"amount": 10**17}),
    Case("money-max-int", amount(10**15), {"amount": 10**17}),
    Case("money-negative-string", amount("-1"), "bad_amount"),
    Case("money-negative-number", amount(-0.01), "bad_amount"),
    Case("money-3dp-string", amount("12.345"), "bad_amount"),
    Case("money-3dp-number", amount(12.345), "bad_amount"),
    Case("money-tiny-number", amount(Raw("1e-7")), "bad_amount"),
    Case("money-nan-string", amount("NaN"), "bad_amount"),
    Case("money-infinity-string", amount("Infinity"), "bad_amount"),
    Case("money-nan-literal", amount(Raw("NaN")), "not_json"),
    Case("money-1e3-string", amount("1e3"), "bad_amount"),
    Case("money-over-string", amount("1000000000000000.01"), "bad_amount"),
    Case("money-over-int", amount(10**15 + 1), "bad_amount"),
    Case("money-over-number", amount(Raw("1e16")), "bad_amount"),
    Case("money-huge-number", amount(Raw("1e400")), "bad_amount"),
    Case("money-zero-txn-string", amount("0"), "bad_amount"),
    Case("money-zero-txn-number", amount(0.0), "bad_amount"),
    Case("money-zero-clearing", dec(line(with_(CLEARING, amount="0.00"))), "bad_amount"),
    Case("money-empty-string", amount(""), "bad_amount"),
    Case("money-spaces", amount(" 1"), "bad_amount"),
    Case("money-thousands-sep", amount("1,000.00"), "bad_amount"),
    # Python's `$` matches before a final newline: once read as 12.03 yuan.
    Case("money-trailing-newline", amount("12.3\n"), "bad_amount"),
    # Wire-format limit: a JSON number is a double before the decoder sees it, so
    # digits past ~16 significant ones are gone and this reads as 0.1 yuan. Exact
    # amounts that long must come as strings.
    Case("money-number-beyond-double", amount(Raw("0.10000000000000001")), {"amount": 10}),
    Case("money-bool", amount(True), "bad_amount"),
    Case("money-null", amount(None), "bad_amount"),
    Case("balance-zero", dec(line(with_(BALANCE, balance="0.00"))), {"balance": 0}),
    Case("balance-zero-int", dec(line(with_(BALANCE, balance=0))), {"balance": 0}),
    Case("report-zero", dec(line(with_(REPORT, client_liabilities=0))), {"client_liabilities": 0}),
    Case("product-ticket-zero", dec(line(with_(PRODUCT, min_ticket="0"))), {"min_ticket": 0}),
    Case(
        "loan-principal-number", dec(line(with_(LOAN, principal=50000.05))), {"principal": 5000005}
    ),
]

TIME = [
    Case("time-offset", ts("2026-03-01T10:00:00+08:00"), {"ts": T0}),
    Case("time-z", ts("2026-03-01T02:00:00Z"), {"ts": T0}),
    Case("time-negative-offset", ts("2026-02-28T21:00:00-05:00"), {"ts": T0}),
    Case("time-millis", ts("2026-03-01T10:00:00.250+08:00"), {"ts": T0 + 250}),
    Case("time-no-offset-shanghai", ts("2026-03-01T10:00:00"), {"ts": T0}),
    Case("time-no-offset-utc", ts("2026-03-01T10:00:00", DEC_UTC), {"ts": T0 + 8 * 3600_000}),
    Case("time-offset-ignores-zone", ts("2026-03-01T10:00:00+08:00", DEC_UTC), {"ts": T0}),
    Case("time-epoch-ms", ts(T0), {"ts": T0}),
    Case("time-epoch-zero", ts(0), {"ts": 0}),
    Case("time-1970-local", ts("1970-01-01T08:00:00+08:00"), {"ts": 0}),
    Case("time-last-ms", ts(4102444799999), {"ts": 4102444799999}),
    Case("time-2099", ts("2099-12-31T23:59:59Z"), {"ts": 4102444799000}),
    # The range is in UTC: 2100-01-01 00:00 in Shanghai is still 2099 in UTC.
    Case("time-2100-shanghai", ts("2100-01-01T00:00:00+08:00"), {"ts": 4102416000000}),
    Case("time-2100-z", ts("2100-01-01T00:00:00Z"), "bad_time"),
    Case("time-2100-ms", ts(4102444800000), "bad_time"),
    Case("time-before-1970", ts("1969-12-31T23:59:59Z"), "bad_time"),
    Case("time-before-1970-local", ts("1970-01-01T07:59:59+08:00"), "bad_time"),
    Case("time-negative-ms", ts(-1), "bad_time"),
    Case("time-year-1", ts("0001-01-01T00:00:00+08:00"), "bad_time"),
    Case("time-garbage-calendar", ts("2026-13-45T99:00:00+08:00"), "bad_time"),
    Case("time-minute-60", ts("2026-03-01T10:60:00+08:00"), "bad_time"),
    Case("time-hour-24", ts("2026-03-01T24:00:00+08:00"), "bad_time"),
    Case("time-arabic-digits", ts("2026-03-01T10:٠٥:00+08:00"), "bad_time"),
    Case("time-trailing-newline", ts("2026-03-01T10:00:00+08:00\n"), "bad_time"),
    Case("time-words", ts("yesterday noon"), "bad_time"),
    Case("time-ms-as-string", ts(str(T0)), "bad_time"),
    Case("time-float", ts(T0 + 0.5), "bad_time"),
    Case("time-float-integral", ts(float(T0)), "bad_time"),
    Case("time-null", ts(None), "bad_time"),
    Case("time-bool", ts(True), "bad_time"),
    Case("date", dec(line(REPORT)), {"as_of": "2026-03-01"}),
    Case("date-feb-28", dec(line(with_(REPORT, as_of="2026-02-28"))), {"as_of": "2026-02-28"}),
    Case("date-feb-30", dec(line(with_(REPORT, as_of="2026-02-30"))), "bad_time"),
    Case("date-1969", dec(line(with_(REPORT, as_of="1969-12-31"))), "bad_time"),
    Case("date-2100", dec(line(with_(REPORT, as_of="2100-01-01"))), "bad_time"),
    Case("date-basic-format", dec(line(with_(REPORT, as_of="20260301"))), "bad_time"),
    Case("date-with-time", dec(line(with_(REPORT, as_of="2026-03-01T00:00:00"))), "bad_time"),
    Case(
        "balance-as-of-date-only",
        dec(line(with_(BALANCE, as_of="2026-03-01"))),
        {"as_of": 1772294400000},
    ),
]

IDS_AND_ENUMS = [
    Case("id-64", dec(custody_with(txn_id="T" * 64)), {"txn_id": "T" * 64}),
    Case("id-64-chinese", dec(custody_with(txn_id="账" * 64)), {"txn_id": "账" * 64}),
    Case("id-empty", dec(custody_with(txn_id="")), "bad_id"),
    Case("id-65", dec(custody_with(txn_id="T" * 65)), "bad_id"),
    Case("id-number", dec(custody_with(txn_id=12345)), "bad_id"),
    Case("id-null", dec(custody_with(debit_account=None)), "bad_id"),
    Case("id-payer-bank-number", dec(line(with_(CLEARING, payer_bank=7))), "bad_id"),
    Case("id-payee-bank-empty", dec(line(with_(CLEARING, payee_bank=""))), "bad_id"),
    Case("id-account-platform-65", dec(line(with_(ACCOUNT, platform_id="P" * 65))), "bad_id"),
    Case(
        "id-related-empty",
        dec(line(with_(ENTITY, related=[{"entity_id": "", "relation": "controller"}]))),
        "bad_id",
    ),
    Case(
        "id-optional-null",
        dec(custody_with(product_id=None, loan_id=None)),
        {"product_id": None, "loan_id": None},
    ),
    Case("enum-role", dec(line(with_(ACCOUNT, role="savings"))), "bad_enum"),
    Case("enum-purpose", dec(custody_with(purpose="gift")), "bad_enum"),
    Case("enum-purpose-case", dec(custody_with(purpose="Invest")), "bad_enum"),
    Case("enum-system", dec(line(with_(CLEARING, system="SWIFT"))), "bad_enum"),
    Case("enum-system-case", dec(line(with_(CLEARING, system="cnaps"))), "bad_enum"),
    Case(
        "enum-relation",
        dec(line(with_(ENTITY, related=[{"entity_id": "E2", "relation": "friend"}]))),
        "bad_enum",
    ),
    Case("enum-kind", dec(line(with_(ENTITY, kind="bank2"))), "bad_enum"),
    Case(
        "clearing-purpose-free-text",
        dec(line(with_(CLEARING, purpose="工资"))),
        {"purpose": "工资"},
    ),
    Case(
        "field-share-over-1",
        dec(
            line(with_(ENTITY, related=[{"entity_id": "E2", "relation": "affiliate", "share": 2}]))
        ),
        "bad_field",
    ),
    Case("field-term-negative", dec(line(with_(LOAN, term_days=-30))), "bad_field"),
    Case("field-license-empty", dec(line(with_(ENTITY, licenses=[""]))), "bad_field"),
    Case("field-same-account", dec(custody_with(credit_account="A-LENDER-1")), "bad_field"),
]

STRUCTURE = [
    Case("missing-amount", dec(custody_with(amount=...)), "missing_field"),
    Case("missing-txn-id", dec(custody_with(txn_id=...)), "missing_field"),
    Case("missing-entity-name", dec(line(with_(ENTITY, name=...))), "missing_field"),
    Case("type-unknown", dec(custody_with(type="custody")), "unknown_type"),
    Case("type-missing", dec(custody_with(type=...)), "unknown_type"),
    Case("type-not-string", dec(custody_with(type=5)), "unknown_type"),
    Case("type-null", dec(custody_with(type=None)), "unknown_type"),
    Case("kind-given-type-omitted", dec(custody_with(type=...), "custody_txn"), CUSTODY_RECORD),
    Case("kind-given-type-equal", dec(custody_with(), "custody_txn"), CUSTODY_RECORD),
    Case(
        "kind-given-type-contradicts",
        dec(custody_with(type="clearing_txn"), "custody_txn"),
        "unknown_type",
    ),
    Case("kind-unknown", dec(custody_with(), "custody"), "unknown_type"),
    Case("not-json-truncated", dec(custody_with()[:-1]), "not_json"),
    Case("not-json-text", dec(b"hello world"), "not_json"),
    Case("not-json-empty", dec(b""), "not_json"),
    Case("not-json-single-quotes", dec(b"{'type': 'entity'}"), "not_json"),
    Case("not-json-trailing-garbage", dec(custody_with() + b"}"), "not_json"),
    Case("not-json-bad-utf8-value", dec(custody_with().replace(b'"T1"', b'"T\xff"')), "not_json"),
    Case("not-json-bad-utf8-bytes", dec(custody_with()[:-1] + b',"note":"\xff\xfe"}'), "not_json"),
    Case("not-json-bad-utf8-key", dec(custody_with()[:-1] + b',"\xc3":1}'), "not_json"),
    Case(
        "not-json-encoded-surrogate",
        dec(custody_with()[:-1] + b',"note":"\xed\xa0\x80"}'),
        "not_json",
    ),
    Case(
        "not-json-lone-surrogate-str",
        dec(custody_with().decode()[:-1] + ',"note":"\udcff"}'),
        "not_json",
    ),
    Case("not-object-array", dec(b"[" + custody_with() + b"]"), "not_object"),
    Case("not-object-number", dec(b"42"), "not_object"),
    Case("not-object-string", dec(b'"custody_txn"'), "not_object"),
    Case("not-object-null", dec(b"null"), "not_object"),
    Case("not-object-with-kind", dec(b"[]", "balance"), "not_object"),
]

_LINE = custody_with()
_MAX = len(_LINE)

ENCODING = [
    Case("line-at-limit", lambda: RecordDecoder(max_line_bytes=_MAX).decode(_LINE), CUSTODY_RECORD),
    Case(
        "line-over-limit", lambda: RecordDecoder(max_line_bytes=_MAX - 1).decode(_LINE), "too_large"
    ),
    Case("line-over-default-limit", dec(b" " * (1 << 20) + _LINE), "too_large"),
    Case("str-input", dec(_LINE.decode()), CUSTODY_RECORD),
    Case("memoryview-input", dec(memoryview(_LINE)), CUSTODY_RECORD),  # type: ignore[arg-type]
    Case("bom", dec(b"\xef\xbb\xbf" + _LINE), CUSTODY_RECORD),
    Case("bom-str", dec("\ufeff" + _LINE.decode()), CUSTODY_RECORD),
    Case("bom-only", dec(b"\xef\xbb\xbf"), "not_json"),
    Case("lf", dec(_LINE + b"\n"), CUSTODY_RECORD),
    Case("crlf", dec(_LINE + b"\r\n"), CUSTODY_RECORD),
    Case("cr-left-after-stripping-lf", dec(_LINE + b"\r"), CUSTODY_RECORD),
    Case("bom-and-crlf", dec(b"\xef\xbb\xbf" + _LINE + b"\r\n"), CUSTODY_RECORD),
    Case("whitespace-around", dec(b"  \t" + _LINE + b"  "), CUSTODY_RECORD),
    Case("utf8-chinese", dec(line(ENTITY)), DECODED["entity"]),
    Case("escaped-unicode", dec(json.dumps(ENTITY, ensure_ascii=True).encode()), DECODED["entity"]),
    Case(
        "duplicate-key-last-wins", dec(custody_with()[:-1] + b',"amount":"2.00"}'), {"amount": 200}
    ),
    Case("duplicate-id-last-wins", dec(custody_with()[:-1] + b',"txn_id":"T2"}'), {"txn_id": "T2"}),
    # The kind is read from the first `type`; a second, different one contradicts it.
    Case(
        "duplicate-type-contradicts",
        dec(custody_with()[:-1] + b',"type":"entity"}'),
        "unknown_type",
    ),
    Case(
        "duplicate-type-same", dec(custody_with()[:-1] + b',"type":"custody_txn"}'), CUSTODY_RECORD
    ),
    Case(
        "extra-fields-ignored",
        dec(custody_with(note="补录", meta={"a": [1, 2.5, None]}, v=2)),
        CUSTODY_RECORD,
    ),
    Case("currency-default", dec(custody_with()), {"currency": "CNY"}),
    Case(
        "currency-usd-kept",
        dec(custody_with(currency="USD")),
        {"currency": "USD", "amount": 123450},
    ),
    Case("currency-empty", dec(custody_with(currency="")), "bad_field"),
    Case("currency-too-long", dec(custody_with(currency="DOLLARS!!")), "bad_field"),
    Case("clearing-currency-hkd", dec(line(with_(CLEARING, currency="HKD"))), {"currency": "HKD"}),
]


def _csv(record: dict[str, Any]) -> dict[str, str]:
    """A record as a CSV row: every cell a string, None as an empty cell."""
    out = {}
    for key, value in record.items():
        if value is None:
            out[key] = ""
        elif isinstance(value, str):
            out[key] = value
        elif isinstance(value, bool):
            out[key] = "true" if value else "false"
        elif isinstance(value, list):
            out[key] = json.dumps(value, ensure_ascii=False)
        else:
            out[key] = repr(value)
    return out


def row(record: dict[str, Any], kind: str | None = None, **cells: Any) -> Callable[[], Any]:
    mapping = _csv(record) | cells
    return lambda: DEC.from_row(mapping, kind=kind)


CSV = [
    *(Case(f"csv-{k}", row(r), DECODED[k]) for k, r in SAMPLES.items()),
    Case(
        "csv-licenses-semicolons",
        row(ENTITY, licenses="p2p_registered; fund_sales"),
        DECODED["entity"],
    ),
    Case(
        "csv-licenses-empty-cell",
        row(ENTITY, licenses="", related=""),
        {"licenses": (), "related": ()},
    ),
    Case("csv-licenses-json-empty", row(ENTITY, licenses="[]"), {"licenses": ()}),
    Case("csv-related-bad-json", row(ENTITY, related='[{"entity_id": "E2"'), "bad_field"),
    Case("csv-related-not-objects", row(ENTITY, related="E2;E3"), "bad_field"),
    Case(
        "csv-empty-cells-absent",
        row(CUSTODY, product_id="", loan_id="", currency=""),
        {"product_id": None, "loan_id": None, "currency": "CNY"},
    ),
    Case("csv-epoch-ms", row(CUSTODY, ts=str(T0)), CUSTODY_RECORD),
    Case("csv-epoch-ms-fullwidth", row(CUSTODY, ts="１７７２３３０４００"), "bad_time"),
    Case("csv-epoch-ms-superscript", row(CUSTODY, ts="²"), "bad_time"),
    Case("csv-amount-number-text", row(CUSTODY, amount="1234.5"), CUSTODY_RECORD),
    Case("csv-amount-3dp", row(CUSTODY, amount="12.345"), "bad_amount"),
    Case("csv-amount-negative", row(CUSTODY, amount="-1"), "bad_amount"),
    Case("csv-amount-zero", row(CUSTODY, amount="0"), "bad_amount"),
    Case("csv-amount-1e3", row(CUSTODY, amount="1e3"), "bad_amount"),
    Case("csv-missing-amount", row(CUSTODY, amount=""), "missing_field"),
    Case("csv-term-not-int", row(PRODUCT, term_days="90.5"), "bad_field"),
    Case("csv-private-yes", row(PRODUCT, private="yes"), "bad_field"),
    Case("csv-enum", row(CLEARING, system="SWIFT"), "bad_enum"),
    Case("csv-id-65", row(CUSTODY, txn_id="T" * 65), "bad_id"),
    Case("csv-date-feb-30", row(REPORT, as_of="2026-02-30"), "bad_time"),
    Case("csv-kind-given", row(with_(CUSTODY, type=...), "custody_txn"), CUSTODY_RECORD),
    Case("csv-kind-and-type-contradict", row(CUSTODY, "clearing_txn"), "unknown_type"),
    Case("csv-no-type", row(with_(CUSTODY, type=...)), "unknown_type"),
    Case("csv-unknown-type", row(CUSTODY, type="custody"), "unknown_type"),
    Case("csv-extra-columns", row(CUSTODY, note="备注"), CUSTODY_RECORD),
    # csv.DictReader puts surplus cells of a long row under the key None.
    Case(
        "csv-surplus-cells",
        lambda: DEC.from_row({**_csv(CUSTODY), None: ["x", "y"]}),
        CUSTODY_RECORD,
    ),  # type: ignore[dict-item]
]

ALL_CASES = MONEY + TIME + IDS_AND_ENUMS + STRUCTURE + ENCODING + CSV


def _check(case: Case) -> None:
    got = outcome(case.run())
    if isinstance(case.expect, str):
        assert got == case.expect, f"{case.name}: expected {case.expect}, got {got!r}"
    elif isinstance(case.expect, dict):
        assert not isinstance(got, str), f"{case.name}: expected a record, got {got}"
        assert {k: getattr(got, k) for k in case.expect} == case.expect
    else:
        assert got == case.expect


@pytest.mark.parametrize("case", ALL_CASES, ids=lambda c: c.name)
def test_wire_format_rule(case: Case) -> None:
    _check(case)


def test_case_names_are_unique() -> None:
    names = [c.name for c in ALL_CASES] + [s.name for s in AGREEMENT]
    assert len(names) == len(set(names))


def test_every_reason_but_too_late_is_produced() -> None:
    seen = {r for c in ALL_CASES if isinstance(r := outcome(c.run()), str)}
    seen |= {s.expect for s in AGREEMENT if s.expect != "ok"}
    # `too_late` is the engine's verdict on a decoded transaction, not the decoder's.
    assert seen == set(REASONS) - {"too_late"}


def test_csv_and_json_forms_decode_to_the_same_record() -> None:
    for kind, record in SAMPLES.items():
        assert DEC.from_row(_csv(record)) == DEC.decode(line(record)) == DECODED[kind]


def test_dead_letter_keeps_raw_input_and_source() -> None:
    raw = custody_with(amount="-1")
    dead = DEC.decode(raw, source="dump.jsonl:7")
    assert dead == DeadLetter(
        reason="bad_amount",
        detail=dead.detail,
        raw=raw.decode(),
        source="dump.jsonl:7",
    )
    assert "amount" in dead.detail
    bad = DEC.decode(b'{"type":"entity","name":"\xff"}')
    assert (bad.reason, bad.raw) == ("not_json", '{"type":"entity","name":"\\xff"}')
    lone = DEC.decode('{"x":"\udcff"}')
    assert (lone.reason, lone.raw) == ("not_json", '{"x":"\\udcff"}')


# -- robustness: decode never raises -----------------------------------------

JSON_LEAVES = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=80)
    | st.sampled_from(
        [
            "",
            "0",
            "0.01",
            "1234.50",
            "12.345",
            "NaN",
            "2026-03-01T10:00:00+08:00",
            "2026-02-30",
            "custody_txn",
            "invest",
            "T" * 65,
        ]
    )
)
JSON_VALUES = st.recursive(
    JSON_LEAVES,
    lambda inner: (
        st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=20), inner, max_size=5)
    ),
    max_leaves=30,
)
CUSTODY_FIELDS = ["type", *WIRE_TYPES["custody_txn"].__struct_fields__]
CUSTODY_LIKE = st.fixed_dictionaries(
    {},
    optional={
        name: st.one_of(st.just(CUSTODY.get(name, "custody_txn")), JSON_VALUES)
        for name in CUSTODY_FIELDS
    },
)
KIND_ARG = st.sampled_from([None, *KINDS, "nope"])
# Lone surrogates (text read with errors="surrogateescape") and JSON punctuation
# are rare in plain st.text(); weight them up. (A `|` of character strategies is
# merged into one that drops the surrogates again, hence one_of over single chars.)
ANY_TEXT = st.lists(
    st.one_of(st.characters(), st.characters(categories=["Cs"]), st.sampled_from('{}[]":,\ufeff')),
    max_size=200,
).map("".join)
# Digits of every script: int() reads them, `[0-9]` does not.
DIGITS = st.text(st.characters(categories=["Nd", "No"]), min_size=1, max_size=14)

_ROBUST = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _assert_outcome(result: Any) -> None:
    if isinstance(result, DeadLetter):
        assert result.reason in REASONS and result.reason != "too_late"
        assert isinstance(result.raw, str)
        msgspec.json.encode(result)  # a sink can always write it
    else:
        assert isinstance(result, RECORD_TYPES)


@_ROBUST
@given(raw=st.binary(max_size=400), kind=KIND_ARG)
def test_decode_never_raises_on_bytes(raw: bytes, kind: str | None) -> None:
    _assert_outcome(DEC.decode(raw, kind=kind))


@_ROBUST
@given(raw=ANY_TEXT, kind=KIND_ARG)
def test_decode_never_raises_on_text(raw: str, kind: str | None) -> None:
    _assert_outcome(DEC.decode(raw, kind=kind))


@_ROBUST
@given(value=JSON_VALUES, kind=KIND_ARG)
def test_decode_never_raises_on_json_values(value: Any, kind: str | None) -> None:
    _assert_outcome(DEC.decode(json.dumps(value).encode(), kind=kind))


@_ROBUST
@given(fields=CUSTODY_LIKE, kind=st.sampled_from([None, "custody_txn"]))
def test_decode_never_raises_on_custody_like_objects(
    fields: dict[str, Any], kind: str | None
) -> None:
    raw = json.dumps(fields, ensure_ascii=False).encode()
    result = DEC.decode(raw, kind=kind)
    _assert_outcome(result)
    if not isinstance(result, DeadLetter):
        assert (
            isinstance(result, CustodyTxn) and result.amount > 0 and 0 <= result.ts < 4102444800000
        )


@_ROBUST
@given(
    cells=st.fixed_dictionaries(
        {},
        optional={
            name: st.one_of(
                st.just(_csv(CUSTODY).get(name, "custody_txn")), st.text(max_size=30), DIGITS
            )
            for name in [*CUSTODY_FIELDS, "licenses", "related"]
        },
    ),
    kind=st.sampled_from([None, "custody_txn", "entity"]),
)
def test_from_row_never_raises(cells: dict[str, str], kind: str | None) -> None:
    _assert_outcome(DEC.from_row(cells, kind=kind))


def test_no_schema_takes_its_prose_from_a_docstring() -> None:
    """Descriptions are part of the published contract: each is one line
    written in the code (a field's ``Meta`` or the alert's constant), never a
    class docstring, whose layout msgspec changes between versions."""
    from fundflow.schema_files import schema_documents
    from fundflow.schemas.wire import ALERT_SCHEMA_DESCRIPTION

    docs = schema_documents()
    assert docs["alert.schema.json"]["description"] == ALERT_SCHEMA_DESCRIPTION

    def descriptions(node: object) -> list[str]:
        if isinstance(node, dict):
            own = [node["description"]] if isinstance(node.get("description"), str) else []
            return own + [d for v in node.values() for d in descriptions(v)]
        if isinstance(node, list):
            return [d for v in node for d in descriptions(v)]
        return []

    for name, doc in docs.items():
        for text in descriptions(doc):
            assert "\n" not in text and "``" not in text, f"{name}: {text!r}"
        if name != "alert.schema.json":
            assert "description" not in doc, f"{name} has a top-level description"
