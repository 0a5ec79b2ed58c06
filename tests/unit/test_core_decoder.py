"""The compiled decoder (``fundflow._core.Decoder``), the only one: over
simulated worlds, the hostile lines of ``test_fuzz_decoders.py``, the cases
below, random mutations of real lines and generated records of every kind,
in several zones and with a kind given as a Kafka topic gives it.

Until 2026-12-08 a Python decoder of its own stood beside it, and these
tests required both to give, line for line, the same record (its fields as
``msgspec.to_builtins`` gives them) or the same dead letter (reason, detail
and raw text). When it was retired, what both gave for every input of every
test here was pinned as a SHA-256 digest and a row count
(``tests/data/decoder_digests.json``, one entry per :func:`assert_same` call
in call order, keyed by test id): every test below still requires the
Python decoder's answers, and each also requires the three ways in
(a chunk of lines, Kafka values, one record through ``RecordDecoder``) to
agree. A change to the rules of ``docs/wire-format.md`` changes a digest on
purpose: the failure names the test, and the new digest goes in the file
with the change.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import unicodedata
from pathlib import Path
from typing import Any

import msgspec
import pytest
from test_fuzz_decoders import HOSTILE

from fundflow._core import KINDS, MAX_DEPTH, REASONS, UNICODE_VERSION, UNPRINTABLE, Decoder
from fundflow.schemas import REASONS as PY_REASONS
from fundflow.schemas import DeadLetter, RecordDecoder
from fundflow.schemas.records import KINDS as PY_KINDS
from fundflow.schemas.records import RECORD_TYPES
from fundflow.schemas.wire import WIRE_TYPES
from fundflow.simulate import write_world

Row = tuple[str, dict[str, Any]]
DIGESTS: dict[str, list[str]] = json.loads(
    (Path(__file__).parents[1] / "data" / "decoder_digests.json").read_text()
)
_CALLS: dict[str, int] = {}


def one_by_one(dec: RecordDecoder, line: bytes, kind: str | None) -> Row:
    return row(dec.decode(line, kind))


def as_a_chunk(lines: list[bytes], zone: str, kind: str | None, limit: int) -> list[Row]:
    records, _ = Decoder(zone, limit, kind).records(b"\n".join(lines))
    return [row(got) for got in records]


def row(got: Any) -> Row:
    """A record or dead letter as the comparison sees it: the dead letter's
    reason, detail and raw text, or the record's kind and fields (its class
    checked to be the one of its kind)."""
    if type(got) is DeadLetter:
        assert got.source == ""
        return ("dead_letter", {"reason": got.reason, "detail": got.detail, "raw": got.raw})
    assert type(got) is RECORD_TYPES[got.TYPE]
    # to_builtins keeps tuples; through JSON both sides are lists.
    return (got.TYPE, msgspec.json.decode(msgspec.json.encode(msgspec.to_builtins(got))))


def assert_pinned(rows: list[Row]) -> None:
    """``rows`` are what the retired Python decoder gave for this call of
    this test (see the module docstring)."""
    test = os.environ["PYTEST_CURRENT_TEST"].rsplit(" ", 1)[0].split("::", 1)[1]
    n = _CALLS[test] = _CALLS.get(test, 0) + 1
    pinned = DIGESTS.get(test, [])
    got = f"{hashlib.sha256(msgspec.json.encode(rows)).hexdigest()} {len(rows)}"
    assert n <= len(pinned), f"{test}: no digest pinned for call {n}"
    assert got == pinned[n - 1], f"{test}, call {n}: {got}"


def assert_same(
    lines: list[bytes], zone: str = "Asia/Shanghai", kind: str | None = None, limit: int = 1 << 20
) -> list[Row]:
    """Decodes ``lines`` as a chunk and one by one through
    ``RecordDecoder``, requires the same rows (failing on the first line
    they disagree on) and the rows pinned for this call. Returns the rows."""
    dec = RecordDecoder(zone, max_line_bytes=limit)
    want = [one_by_one(dec, ln, kind) for ln in lines]
    got = as_a_chunk(lines, zone, kind, limit)
    assert len(got) == len(want)
    for line, g, w in zip(lines, got, want, strict=True):
        assert g == w, f"line {line[:300]!r}"
    assert_pinned(want)
    return want


def test_the_module_names_the_same_kinds_and_reasons():
    assert KINDS == PY_KINDS
    assert REASONS == PY_REASONS


# -- simulated worlds ---------------------------------------------------------


@pytest.fixture(scope="module")
def worlds(tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[bytes]]:
    out = {}
    for name, kwargs in {
        "seed 1": {"seed": 1},
        "seed 7, noisy": {"seed": 7, "noise": 0.05, "days": 10},
    }.items():
        folder = tmp_path_factory.mktemp("world")
        write_world(folder, **kwargs)
        data = (folder / "world.jsonl").read_bytes()
        out[name] = [ln for ln in data.split(b"\n") if ln.strip()]
    return out


@pytest.mark.parametrize("name", ["seed 1", "seed 7, noisy"])
def test_simulated_worlds_decode_the_same(worlds: dict[str, list[bytes]], name: str):
    rows = assert_same(worlds[name])
    kinds = {k for k, _ in rows}
    assert kinds == {*PY_KINDS, "dead_letter"}
    reasons = {v["reason"] for k, v in rows if k == "dead_letter"}
    assert reasons == {"bad_amount", "bad_time", "missing_field", "not_json", "unknown_type"}


def test_counts_are_the_tallies_of_the_records(worlds: dict[str, list[bytes]]):
    lines = worlds["seed 7, noisy"]
    dec = RecordDecoder()
    kinds: dict[str, int] = {}
    reasons: dict[str, int] = {}
    for ln in lines:
        got = dec.decode(ln)
        if type(got) is DeadLetter:
            reasons[got.reason] = reasons.get(got.reason, 0) + 1
        else:
            kinds[got.TYPE] = kinds.get(got.TYPE, 0) + 1
    # Blank lines are not records: the chunk may hold them.
    chunk = b"\n\n".join(lines) + b"\n  \r\n"
    assert Decoder().count_lines(chunk) == (kinds, reasons)


def test_random_mutations_of_world_lines_decode_the_same(worlds: dict[str, list[bytes]]):
    rng = random.Random(20261207)
    lines = worlds["seed 1"]
    picked = [lines[i] for i in sorted(rng.sample(range(len(lines)), 400))]
    alphabet = b'{}[]":,.-+eE0123456789 \\u\x00\x7f\xc3\xa9\xe4\xb8\xad\xffnultrZT'
    mutated = []
    for line in picked:
        for _ in range(25):
            b = bytearray(line)
            for _ in range(rng.randint(1, 3)):
                i = rng.randrange(len(b) + 1)
                op = rng.randrange(3)
                if op == 0 and i < len(b):
                    del b[i]
                elif op == 1:
                    b.insert(i, rng.choice(alphabet))
                elif i < len(b):
                    b[i] = rng.choice(alphabet)
            if b"\n" not in b and bytes(b).strip():
                mutated.append(bytes(b))
    rows = assert_same(mutated)
    # The mutations reach most refusals, and some still decode.
    reasons = {v["reason"] for k, v in rows if k == "dead_letter"}
    assert reasons >= {"not_json", "bad_amount", "bad_time", "bad_id", "bad_enum", "unknown_type"}
    assert sum(k != "dead_letter" for k, _ in rows) > 1000


def test_a_recurring_text_is_one_object_and_a_txn_id_never_is():
    """A decoder hands out a text it has made before (a currency, a system,
    a bank, an account) as the same object, across calls too: records held
    in windows share them. A transaction id is made anew each time."""
    line = (
        b'{"type":"clearing_txn","txn_id":"T1","ts":"2026-03-01T10:00:00+08:00",'
        b'"system":"CNAPS","initiator_id":"I1","payer_bank":"B1","payer_account":"A1",'
        b'"payee_bank":"B2","payee_account":"A2","amount":"12.00","currency":"CNY"}'
    )
    dec = Decoder()
    [a, b], _ = dec.records(line + b"\n" + line.replace(b'"A2"', b'"A3"'))
    [c], _ = dec.values([line])
    for field in ("system", "initiator_id", "payer_bank", "payer_account", "currency"):
        assert getattr(a, field) is getattr(b, field) is getattr(c, field), field
    assert (a.payee_account, b.payee_account) == ("A2", "A3")
    assert a.payee_account is c.payee_account
    assert a.txn_id == b.txn_id == c.txn_id == "T1"
    assert a.txn_id is not b.txn_id and b.txn_id is not c.txn_id
    # another decoder has its own
    [d], _ = Decoder().records(line)
    assert d == a and d.currency == a.currency


def test_one_decoder_used_from_several_threads_at_once(worlds: dict[str, list[bytes]]):
    """Each call decodes with the GIL released and builds with it held; a
    call never waits for another's string cache (it would wait holding the
    GIL the other may need), so threads sharing a decoder all finish, with
    the records a decoder of their own gives."""
    import threading

    chunk = b"\n".join(worlds["seed 7, noisy"][:20_000])
    want, want_kinds = Decoder().records(chunk)
    shared = Decoder()
    got: list[tuple[list, dict]] = []

    def work() -> None:
        for _ in range(3):
            got.append(shared.records(chunk))

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not any(t.is_alive() for t in threads)
    assert len(got) == 12
    for items, kinds in got:
        assert kinds == want_kinds and items == want


def test_kafka_values_decode_the_same(worlds: dict[str, list[bytes]]):
    """``values``: each message value whole, as the worker hands them over.
    A value may hold what a line cannot: newlines (JSON whitespace inside
    one record, or two records in one value), nothing but whitespace, no
    bytes at all, or no value (``None``)."""
    rng = random.Random(20261208)
    lines = worlds["seed 7, noisy"]
    values: list[bytes | None] = []
    for line in rng.sample(lines, 3000):
        cut = rng.randrange(len(line) + 1)
        values += [
            line,
            line + b"\n",
            line + b"\r\n",
            b"\n" + line,
            line.replace(b",", b",\n", 1),
            line[:cut] + b"\n" + line[cut:],
            line + b"\n" + line,
        ]
    values += [b"", b" ", b"\n", b"\r\n \t", None, b"\xef\xbb\xbf" + lines[0], b"null"]
    got, kinds = Decoder().values(values)
    dec = RecordDecoder()
    want = []
    for v in values:
        if v is None:
            want.append(
                (
                    "dead_letter",
                    {"reason": "not_json", "detail": "empty message (null value)", "raw": ""},
                )
            )
        else:
            want.append(row(dec.decode(v)))
    assert len(got) == len(values)
    assert_pinned(want)
    for v, g, w in zip(values, got, want, strict=True):
        assert row(g) == w, f"value {v!r:.300}"
    decoded = [k for k, _ in want if k != "dead_letter"]
    assert kinds == {k: decoded.count(k) for k in set(decoded)}
    # Newlines inside a record are whitespace; two records in one value are not JSON.
    assert sum(k != "dead_letter" for k, _ in want) > 10_000
    assert row(got[6])[1]["detail"].startswith("JSON is malformed: trailing characters")


# Values a generated field may hold: every JSON kind, the edges of the
# constraints, good values of each field.
VALUES = [
    b"null", b"true", b"false", b"0", b"1", b"-1", b"7", b"36500", b"36501", b"10", b"11",
    b"0.5", b"1.5", b"-0.0", b"1e2", b"1e-7", b"12.345", b"1000000000000000", b"1e15", b"1e16",
    b"123456789012345678901234567890", b"-123456789012345678901", b"4102444799999",
    b"1772330400000", b'""', b'"x"', b'"A1"', b'"12.30"', b'"7"', b'"0.0825"', b'"10.5"',
    b'"2026-03-01"', b'"2026-02-30"', b'"2026-03-01T10:00:00+08:00"', b'"2026-03-01T10:00:07"',
    b'"2026-03-01 10:00"', b'"2026-13-01T10:00:07Z"', b'"invest"', b'"CNAPS"', b'"bank"',
    b'"shareholder"', b'"lender_sub"', b'"' + b"x" * 65 + b'"', b'"' + b"x" * 64 + b'"',
    b'"\\u00e9"', b'"\xe4\xb8\xad"', b'"a\\nb"', b"[]", b'["a"]', b'[""]', b"[1]", b"{}",
    b'[{"entity_id":"E","relation":"controller","share":0.5}]', b'[{"entity_id":"E"}]',
    b'{"a":[1,{"b":null}]}', b'"custody_txn"', b'"entity"',
]  # fmt: skip
FIELD_GOOD = {
    "txn_id": b'"T1"', "ts": b'"2026-03-01T10:00:00+08:00"', "bank_id": b'"B"',
    "platform_id": b'"P"', "debit_account": b'"A"', "credit_account": b'"C"',
    "amount": b'"10.00"', "purpose": b'"invest"', "system": b'"CNAPS"', "initiator_id": b'"I"',
    "payer_bank": b'"B1"', "payer_account": b'"A1"', "payee_bank": b'"B2"',
    "payee_account": b'"A2"', "entity_id": b'"E"', "name": b'"n"', "kind": b'"bank"',
    "licenses": b'["payment"]', "related": b"[]", "account_id": b'"A"', "owner_id": b'"O"',
    "role": b'"personal"', "opened_at": b"1", "product_id": b'"PR"', "term_days": b"30",
    "annual_rate": b'"0.08"', "min_ticket": b'"100"', "private": b"false", "loan_id": b'"L"',
    "borrower_account": b'"BA"', "principal": b'"5.00"', "issued_at": b'"2026-03-01"',
    "institution_id": b'"I"', "as_of": b'"2026-03-01"', "client_liabilities": b'"1"',
    "balance": b'"0"', "currency": b'"CNY"',
}  # fmt: skip


def generated_line(rng: random.Random) -> bytes:
    """A record of a random kind: most of its fields, a third of them with
    a value from VALUES, sometimes no `type`, stray keys, keys in any order."""
    kind = rng.choice(list(WIRE_TYPES))
    items: list[tuple[str, bytes | None]] = []
    if rng.random() < 0.95:
        items.append(("type", b'"' + kind.encode() + b'"'))
    items += [(f, None) for f in WIRE_TYPES[kind].__struct_fields__ if rng.random() < 0.85]
    keys = sorted({f for t in WIRE_TYPES.values() for f in t.__struct_fields__} | {"type", "x"})
    items += [(rng.choice(keys), rng.choice(VALUES)) for _ in range(rng.randint(0, 2))]
    rng.shuffle(items)
    members = []
    for key, value in items:
        if value is None:
            value = rng.choice(VALUES) if rng.random() < 0.35 else FIELD_GOOD[key]
        ws = rng.choice([b"", b"", b" ", b"\t"])
        members.append(b'"' + key.encode() + b'"' + ws + b":" + ws + value)
    return b"{" + b",".join(members) + b"}"


@pytest.mark.parametrize("kind", [None, "custody_txn", "entity"])
def test_generated_records_decode_the_same(kind: str | None):
    rng = random.Random(7)
    rows = assert_same([generated_line(rng) for _ in range(15_000)], kind=kind)
    reasons = {v["reason"] for k, v in rows if k == "dead_letter"}
    decoded = sum(k != "dead_letter" for k, _ in rows)
    if kind is None:
        assert reasons >= {"bad_id", "bad_field", "bad_time", "bad_amount", "bad_enum"}
        assert decoded > 1000
    else:
        # Lines of the other kinds: a type that is not the topic's.
        assert "unknown_type" in reasons
        assert decoded > 10


# -- hostile lines ------------------------------------------------------------


@pytest.mark.parametrize(("name", "raw", "expected"), HOSTILE, ids=[c[0] for c in HOSTILE])
def test_hostile_lines_of_the_fuzz_suite(name: str, raw: bytes, expected: Any):
    # "crlf" ends in \r\n: a chunk splits at \n and keeps the \r.
    line = raw.removesuffix(b"\n")
    assert_same([line])
    assert_same([line], kind="custody_txn")


TXN = (
    b'{"type":"custody_txn","txn_id":"T1","ts":"2026-03-01T10:00:00+08:00","bank_id":"B",'
    b'"platform_id":"P","debit_account":"A","credit_account":"C","amount":"10.00",'
    b'"purpose":"invest"}'
)
CLEARING = (
    b'{"type":"clearing_txn","txn_id":"C1","ts":1772330400000,"system":"CNAPS",'
    b'"initiator_id":"I1","payer_bank":"B1","payer_account":"A1","payee_bank":"B2",'
    b'"payee_account":"A2","amount":12.5,"purpose":"rent"}'
)
ENTITY = (
    b'{"type":"entity","entity_id":"E1","name":"\xe7\x9b\x9b\xe6\xb3\xb0\xe6\x94\xaf\xe4\xbb\x98",'
    b'"kind":"company","licenses":["payment"],"related":[{"entity_id":"E2",'
    b'"relation":"shareholder","share":0.35},{"entity_id":"E3","relation":"controller"}]}'
)
ACCOUNT = (
    b'{"type":"account","account_id":"A1","owner_id":"E1","bank_id":"B1","role":"client_reserve",'
    b'"platform_id":null,"opened_at":"2020-01-01"}'
)
PRODUCT = (
    b'{"type":"product","product_id":"PR1","platform_id":"P1","term_days":90,'
    b'"annual_rate":"0.0825","min_ticket":"1000000","private":true}'
)
LOAN = (
    b'{"type":"loan","loan_id":"L1","platform_id":"P1","borrower_account":"A9",'
    b'"principal":"50000.00","term_days":180,"annual_rate":0.12,"issued_at":"2026-03-01T09:30:00",'
    b'"purpose":"real_estate_down_payment"}'
)
REPORT = (
    b'{"type":"reserve_report","institution_id":"I1","as_of":"2026-03-01","client_liabilities":"0"}'
)
BALANCE = (
    b'{"type":"balance","account_id":"A1","as_of":"2026-03-01T00:00:00+08:00","balance":"12.30"}'
)
GOOD = [TXN, CLEARING, ENTITY, ACCOUNT, PRODUCT, LOAN, REPORT, BALANCE]


def field(line: bytes, name: str, value: bytes) -> bytes:
    """``line`` with field ``name`` set to the raw JSON ``value`` (added at
    the end when the line lacks it)."""
    key = b'"' + name.encode() + b'":'
    i = line.find(key)
    if i < 0:
        return line[:-1] + b"," + key + value + b"}"
    j = i + len(key)
    depth, k = 0, j
    while k < len(line):
        c = line[k : k + 1]
        if c in b"[{":
            depth += 1
        elif c in b"]}":
            if depth == 0:
                break
            depth -= 1
        elif c == b"," and depth == 0:
            break
        elif c == b'"':
            k = line.index(b'"', k + 1)
        k += 1
    return line[:j] + value + line[k:]


TIMES = [
    b'"2026-03-01T10:00:07+08:00"',
    b'"2026-03-01T02:00:07Z"',
    b'"2026-03-01T10:00:07"',
    b'"2026-03-01 10:00"',
    b'"2026-03-01T10"',
    b'"2026-03-01"',
    b'"20260301T100007"',
    b'"20260301T1000"',
    b'"2026-03-01T10:00:00.2"',
    b'"2026-03-01T10:00:00.123456789"',
    b'"2026-03-01T10:00:00,5+08:00"',
    b'"2026-03-01T10:00:00+0800"',
    b'"2026-03-01T10:00:00+08"',
    b'"2026-03-01T10:00:00+08:00:30"',
    b'"2026-03-01T10:00:00+08:00:30.5"',
    b'"2026-03-01T10:00:00-00:00"',
    b'"2026-03-01T10:00:00z"',
    b'"2026-03-01T10:00:00Zx"',
    b'"2026-03-01T10:00:00+24:00"',
    b'"2026-03-01T10:00:00+23:59"',
    b'"2026-03-01T24:00:00"',
    b'"2026-03-01T23:59:60"',
    b'"2026-03-01T10:00:07x+08:00"',
    b'"2026-03-01T10:0007"',
    b'"2026-03-01T1000:07"',
    b'"2026-03-01T10:00:07 "',
    b'"2026-03-01T10:00:07+08:00\\n"',
    b'"2026-03-01\\n"',
    b'"2026-02-29T00:00:00"',
    b'"2024-02-29T00:00:00"',
    b'"2026-W09-7"',
    b'"2026W097T10:00"',
    b'"2026-W53-1"',
    b'"2026-060"',
    b'"2026/03/01"',
    b'"2026-03-01\xe4\xb8\xad10:00:00"',
    b'"\xe4\xb8\xad\xe6\x96\x87\xe6\x97\xa5\xe6\x9c\x9f\xe4\xb8\x8d\xe6\x98\xaf\xe6\x97\xb6\xe9\x97\xb4"',
    b'"2026-03-01T10:00:00.000000000000000000000+08:00"',
    b'"2026-03-01T10:00:00.0000000000000000000000+08:00"',
    b'"2026-03-01T1"',
    b'"2026-03-0"',
    b'"1970-01-01T00:00:00Z"',
    b'"1970-01-01T07:59:59"',
    b'"1970-01-01T08:00:00"',
    b'"2099-12-31T23:59:59Z"',
    b'"2099-12-31T23:59:00Z"',
    b'"2100-01-01T07:59:59"',
    b'"0001-01-01T00:00:00+00:01"',
    b'"9999-12-31T23:59:59-23:59"',
    b'"2026-03-01T10:60:00"',
    b'"2026-13-01T10:00:07+08:00"',
    b'"2026-03-01T10:00:07.5+08:00"',
    b'"2026-03-01T10:00:7"',
    b"0",
    b"4102444799999",
    b"4102444800000",
    b"-1",
    b"-0",
    b"18446744073709551615",
    b"18446744073709551616",
    b"-9223372036854775809",
    b"1772330400000.0",
    b"1e3",
    b'"1772330400000"',
    b"null",
    b"true",
    b"{}",
]

ZONES = [
    "Asia/Shanghai",
    "UTC",
    "Asia/Kolkata",
    "Asia/Kathmandu",
    "America/New_York",
    "Europe/London",
    "Australia/Lord_Howe",
    "Pacific/Chatham",
    "America/Sao_Paulo",
]

# Local times at the edges of daylight saving time: a gap and a repeat in
# each of the zones above that has them.
DST_EDGES = [
    b'"2026-03-08T02:30:00"',
    b'"2026-11-01T01:30:00"',
    b'"2026-03-29T01:30:00"',
    b'"2026-10-25T01:30:00"',
    b'"2026-04-05T01:45:00"',
    b'"2026-10-04T02:15:00"',
    b'"2026-04-05T03:15:00"',
    b'"2026-09-27T02:45:00"',
    b'"1986-05-04T02:30:00"',
    b'"1991-09-15T01:30:00"',
    b'"2019-02-16T23:30:00"',
]


@pytest.mark.parametrize("zone", ZONES)
def test_times_in_every_zone(zone: str):
    lines = []
    for t in TIMES + DST_EDGES:
        lines.append(field(BALANCE, "as_of", t))
        lines.append(field(TXN, "ts", t))
        lines.append(field(LOAN, "issued_at", t))
        lines.append(field(ACCOUNT, "opened_at", t))
    assert_same(lines, zone=zone)


def test_a_shanghai_time_without_offset_is_utc_plus_8():
    row = as_a_chunk([field(BALANCE, "as_of", b'"2026-03-01T10:00:07"')], "Asia/Shanghai", None, 99)
    assert row == [("balance", {"account_id": "A1", "as_of": 1772330407000, "balance": 1230})]


MONEY = [
    b'"1234.5"',
    b'"1234.50"',
    b'"7"',
    b'"0.01"',
    b'"0"',
    b'"0.00"',
    b'"00012.30"',
    b'"1000000000000000"',
    b'"1000000000000000.0"',
    b'"1000000000000000.01"',
    b'"999999999999999.99"',
    b'"1234567890123456"',
    b'"12.345"',
    b'"12."',
    b'".5"',
    b'"-1"',
    b'"+1"',
    b'"1e3"',
    b'"1,000.00"',
    b'" 10.00"',
    b'"10.00 "',
    b'"12.3\\n"',
    b'"12.30\\n"',
    b'"12\\n"',
    b'"\\u0031\\u0032"',
    b'"\xef\xbc\x91"',
    b'""',
    b"1234.5",
    b"1234.56",
    b"1234.567",
    b"0.07",
    b"1.005",
    b"0.1",
    b"0.30000000000000004",
    b"123456789012345.67",
    b"12345678901234.56",
    b"1e2",
    b"1E2",
    b"1e-5",
    b"1e15",
    b"1e16",
    b"1000000000000000",
    b"1000000000000001",
    b"1000000000000000.5",
    b"-0",
    b"-0.0",
    b"-1",
    b"-1.5",
    b"0",
    b"0.0",
    b"5e-324",
    b"1e400",
    b"-1e400",
    b"123456789012345678901234567890",
    b"-123456789012345678901234567890",
    b"9" * 4400,
    b"01",
    b"-",
    b"1.",
    b"1e",
    b"1e+",
    b".5",
    b"+1",
    b"NaN",
    b"null",
    b"true",
    b"[]",
    b"{}",
    b'{"a":[1,2,{"b":null}]}',
]


def test_money_in_every_money_field():
    lines = []
    for m in MONEY:
        lines.append(field(TXN, "amount", m))
        lines.append(field(CLEARING, "amount", m))
        lines.append(field(LOAN, "principal", m))
        lines.append(field(REPORT, "client_liabilities", m))
        lines.append(field(BALANCE, "balance", m))
        lines.append(field(PRODUCT, "min_ticket", m))
    assert_same(lines)


def test_money_is_exact_fen():
    lines = [field(TXN, "amount", m) for m in (b'"0.01"', b"0.07", b'"999999999999999.99"')]
    amounts = [v["amount"] for _, v in as_a_chunk(lines, "UTC", None, 1 << 20)]
    assert amounts == [1, 7, 99999999999999999]


OTHER_FIELDS: list[tuple[bytes, str, list[bytes]]] = [
    (
        PRODUCT,
        "annual_rate",
        [
            b'"0.0825"',
            b'"10"',
            b'"10.0"',
            b'"10.5"',
            b'"99"',
            b'"00.50"',
            b'"0.5\\n"',
            b'"1.1234567890123"',
            b'"0.123456789012"',
            b'"-0.1"',
            b'"1e-2"',
            b"10",
            b"11",
            b"10.0",
            b"10.5",
            b"1e-7",
            b"0",
            b"-0.0",
            b"0.1",
            b"3.3333333333333335",
            b"null",
            b'""',
        ],
    ),
    (
        PRODUCT,
        "term_days",
        [
            b"0",
            b"1",
            b"36500",
            b"36501",
            b"-5",
            b"1.0",
            b'"30"',
            b"99999999999999999999999",
            b"-99999999999999999999999",
            b"null",
            b"1e2",
        ],
    ),
    (PRODUCT, "private", [b"false", b"1", b'"true"', b"null", b"0"]),
    (
        REPORT,
        "as_of",
        [
            b'"2026-02-30"',
            b'"2026-03-01\\n"',
            b'"1969-12-31"',
            b'"2100-01-01"',
            b'"2099-12-31"',
            b'"0000-01-01"',
            b'"2026-3-1"',
            b'"20260301"',
            b'"2026-03-01T00:00:00"',
            b"20260301",
            b"null",
        ],
    ),
    (
        ENTITY,
        "licenses",
        [
            b'[""]',
            b"[1]",
            b'"payment"',
            b'["' + b"x" * 65 + b'"]',
            b"[]",
            b"null",
            b'["a",]',
            b'["a" "b"]',
            b"[[]]",
        ],
    ),
    (
        ENTITY,
        "related",
        [
            b"[]",
            b'[{"entity_id":"E2"}]',
            b'[{"relation":"controller"}]',
            b"[1]",
            b'[{"entity_id":"E2","relation":"friend"}]',
            b'[{"entity_id":"E2","relation":"affiliate","share":1.5}]',
            b'[{"entity_id":"E2","relation":"affiliate","share":-0.0}]',
            b'[{"entity_id":"E2","relation":"affiliate","share":1}]',
            b'[{"entity_id":"E2","relation":"affiliate","share":"0.5"}]',
            b'[{"entity_id":"E2","relation":"affiliate","share":1e-7}]',
            b'[{"entity_id":"E2","relation":"affiliate","share":0.1,"type":"entity"}]',
            b'[{"entity_id":"","relation":"affiliate"}]',
            b"{}",
            b'[{"entity_id":"E2","relation":"affiliate"},{"entity_id":5,"relation":"affiliate"}]',
        ],
    ),
    (ENTITY, "name", [b'""', b'"' + b"n" * 257 + b'"', b'"' + "盛".encode() * 256 + b'"', b"null"]),
    (
        ENTITY,
        "kind",
        [
            b'"bank"',
            b'"Bank"',
            b'""',
            b'"\xe9\x93\xb6\xe8\xa1\x8c"',
            b'"it\'s"',
            b'"\\u0001"',
            b'"\\u00a0x"',
            b'"\\ud83d\\ude00"',
            b'"missing required field `type`"',
        ],
    ),
    (
        TXN,
        "txn_id",
        [
            b'"' + b"x" * 64 + b'"',
            b'"' + b"x" * 65 + b'"',
            b'"' + "中".encode() * 64 + b'"',
            b'"' + "中".encode() * 65 + b'"',
            b'""',
            b"null",
            b"5",
            b"5.5",
            b"123456789012345678901234567890",
            b'"T\\u0000"',
            b'"\\"quoted\\""',
            b'"\\/"',
            b'"\\b\\f\\n\\r\\t"',
            b'"\\x"',
            b'"\\u12G4"',
            b'"\\ud800"',
            b'"\\udc00"',
            b'"\\ud800\\u0041"',
            b'"\\ud800x"',
            b'"tab\there"',
            b'"\\ud83d\\ude00"',
            b'"\\',
        ],
    ),
    (TXN, "purpose", [b'"steal"', b'"INVEST"', b"1", b"null", b'"x - at `$.amount`"']),
    (
        TXN,
        "currency",
        [b'""', b'"USD"', b'"ABCDEFGHI"', b"null", b'"\xe4\xba\xba\xe6\xb0\x91\xe5\xb8\x81"'],
    ),
    (TXN, "product_id", [b"null", b'""', b'"PR1"', b"7"]),
    (TXN, "credit_account", [b'"A"', b'"a"']),
    (CLEARING, "payee_account", [b'"A1"', b'"A2"']),
    (CLEARING, "system", [b'"SWIFT"', b'"cnaps"', b'"internal"']),
    (CLEARING, "purpose", [b'"' + b"p" * 65 + b'"', b"null", b"{}"]),
    (ACCOUNT, "role", [b'"lender_sub"', b'"owner"', b"[]"]),
    (ACCOUNT, "platform_id", [b'"P1"', b'""', b"null"]),
    (
        TXN,
        "type",
        [
            b'"clearing_txn"',
            b'"steal"',
            b"5",
            b"null",
            b"{}",
            b'"x - at `$.amount`"',
            b'"custody_txn\\u0000"',
            b'"\\u0063ustody_txn"',
            b"[1,",
            b'"trunc',
        ],
    ),
]


@pytest.mark.parametrize(
    ("base", "name", "values"),
    OTHER_FIELDS,
    ids=[f"{b[9:20].decode()}.{n}" for b, n, _ in OTHER_FIELDS],
)
def test_every_field_with_good_and_bad_values(base: bytes, name: str, values: list[bytes]):
    assert_same([field(base, name, v) for v in values])


STRUCTURE = [
    *GOOD,
    b"{}",
    b"[]",
    b"[1]",
    b'"custody_txn"',
    b"1",
    b"-1",
    b"1.5",
    b"12345678901234567890123",
    b"1e400",
    b"null",
    b"true",
    b"false",
    b"nul",
    b"tru",
    b"nulx",
    b"x",
    b"}",
    b"{",
    b"{,}",
    b'{"type"}',
    b'{"type":}',
    b'{"type" "balance"}',
    b'{type:"balance"}',
    b'{"type":"balance",}',
    b'{"type":"balance"',
    b'{"type":"balance","account_id":"A1"',
    b'{"a":1,}',
    b'{"a":1 "type":"balance"}',
    b'{"a":[1,2,}',
    b'{"a":[1 2]}',
    b'{"a":{"b":1,}}',
    b'{"a":{1:2}}',
    b'{"a":{"b" 1}}',
    b'{"a":"\\q","type":"balance"}',
    b'{"a":"\\ud800\\u0041","type":"balance"}',
    b'{"a":"\\ud800x","type":"balance"}',
    b'{"a":"\\u12","type":"balance"}',
    b'{"a":"ctl\x01","type":"balance"}',
    b'{"a":01,"type":"balance"}',
    b'{"a":-,"type":"balance"}',
    b'{"a":1.,"type":"balance"}',
    b'{"a":1e,"type":"balance"}',
    b'{"a":nan,"type":"balance"}',
    b'{"a":truex,"type":"balance"}',
    b'{"\\u0074ype":"balance","account_id":"A1","as_of":0,"balance":"1"}',
    b'{"account_id":"A1","as_of":0,"balance":"1","type":"balance"}',
    b'{"account_id":5,"type":"balance","as_of":0,"balance":"1"}',
    b'{"account_id":"A1","as_of":0,"type":"balance","balance":"1","type":"account"}',
    b'{"type":"balance","type":"balance","account_id":"A1","as_of":0,"balance":"1"}',
    b'{"type":"balance","account_id":"","account_id":"A1","as_of":0,"balance":"1"}',
    b'{"type":"balance","account_id":"A1","account_id":"","as_of":0,"balance":"1"}',
    b'{"type":"balance","account_id":"A1","as_of":0,"balance":"1"} ',
    b'{"type":"balance","account_id":"A1","as_of":0,"balance":"1"}\r',
    b'{"type":"balance","account_id":"A1","as_of":0,"balance":"1"}\t\x0b',
    b' \t{"type":"balance","account_id":"A1","as_of":0,"balance":"1"}',
    b'{"type":"balance","account_id":"A1","as_of":0,"balance":"1","x":{"y":[1,{"z":null}]}}',
    b'{"type":"balance","account_id":"A1","as_of":0,"balance":"1","x":"\xe4\xb8\xad"}',
    b'{"type":"entity"}',
    b'{"type":"account","account_id":"A"}',
    b"\xef\xbb\xbf" + BALANCE,
    b"\xef\xbb\xbf\xef\xbb\xbf" + BALANCE,
    b"\xef\xbb\xbf",
    b"\xef\xbb",
    b"\xff",
    b"\xc0\x80",
    b"\xed\xa0\x80",
    b"\xf4\x90\x80\x80",
    b"\xe4\xb8",
    b"\xe4\xb8\x41",
    b"\xf0\x9f\x98",
    BALANCE[:-2] + b"\xe4\xb8",
    BALANCE.replace(b"A1", b"A\x80"),
    BALANCE.replace(b"A1", "A\u00e9".encode("latin-1")),
    b"[" * 100_000 + b"]" * 100_000,
    b"{" * 50_000,
    BALANCE[:-1] + b',"x":' + b"[" * 900 + b"]" * 900 + b"}",
    BALANCE[:-1] + b',"x":' + b"[" * 5000 + b"]" * 5000 + b"}",
    BALANCE[:-1] + b',"x":' + b'{"a":' * 5000 + b"1" + b"}" * 5000 + b"}",
    BALANCE[:-1] + b',"x":"' + "盛".encode() * 30_000 + b'"}',
]


def test_structure_and_encoding():
    assert_same(STRUCTURE)


@pytest.mark.parametrize("kind", ["custody_txn", "balance", "entity", "no_such_kind"])
def test_a_kind_given_as_by_a_kafka_topic(kind: str):
    lines = [*GOOD, *STRUCTURE[: len(GOOD) + 60]]
    lines += [ln.replace(b'"type":"custody_txn",', b"") for ln in (TXN, field(TXN, "amount", b"0"))]
    lines += [
        ln.replace(b'"type":"balance",', b"") for ln in (BALANCE, field(BALANCE, "as_of", b"-1"))
    ]
    assert_same(lines, kind=kind)


def test_a_line_over_the_limit_is_too_large_with_the_line_as_raw():
    lines = [BALANCE, BALANCE + b" " * 200, b"\xff" * 300, b"x" * 70_000]
    rows = assert_same(lines, limit=250)
    assert rows[1][1]["detail"] == f"{len(BALANCE) + 200} bytes, limit 250"
    assert rows[3][1]["raw"] == "x" * 65536


def test_pinned_dead_letters():
    """A few refusals spelled out, so that a change on both sides at once
    still shows."""
    lines = [
        field(TXN, "amount", b'"12.345"'),
        field(TXN, "amount", b"1e-5"),
        field(TXN, "ts", b'"2026-13-01T10:00:07+08:00"'),
        TXN[:-1],
        TXN.replace(b'"purpose":"invest"', b'"purpose":"x"'),
        b"[1]",
        TXN.replace(b"T1", b"T\xff"),
    ]
    got = [(v["reason"], v["detail"]) for _, v in as_a_chunk(lines, "Asia/Shanghai", None, 1 << 20)]
    money = r"'^([0-9]{1,15}(\\.[0-9]{1,2})?|1000000000000000(\\.0{1,2})?)$'"
    assert got == [
        ("bad_amount", f"Expected `str` matching regex {money} - at `$.amount`"),
        ("bad_amount", "amount: 1e-05 is not a plain decimal"),
        # The minute is parsed once for all its seconds: the text quoted is the minute's.
        ("bad_time", "ts: '2026-13-01T10:00:00+08:00' is not ISO-8601"),
        ("not_json", "Input data was truncated"),
        ("bad_enum", "Invalid enum value 'x' - at `$.purpose`"),
        ("not_object", "Expected `object`, got `array`"),
        ("not_json", "'utf-8' codec can't decode byte 0xff in position 33: invalid start byte"),
    ]


def test_nesting_deeper_than_max_depth_is_too_large():
    """A fixed MAX_DEPTH levels, whatever the caller's stack (the retired
    Python decoder refused at its recursion limit, less the frames below
    it: some dozens levels fewer under pytest, its one known difference).
    The object is one level, each array one more."""

    def line(arrays: int) -> bytes:
        return BALANCE[:-1] + b',"x":' + b"[" * arrays + b"]" * arrays + b"}"

    for dec in (Decoder().decode, RecordDecoder().decode):
        assert dec(line(MAX_DEPTH - 1)).TYPE == "balance"
        deep = dec(line(MAX_DEPTH))
        assert (deep.reason, deep.detail) == ("too_large", "JSON nested too deep to decode")
    assert Decoder().records(line(MAX_DEPTH))[0][0] == deep


def test_an_unknown_zone_is_refused():
    with pytest.raises(ValueError, match="No time zone found with key Mars/Olympus"):
        Decoder("Mars/Olympus")


def test_the_unprintable_table_is_this_pythons():
    """``repr()`` escapes what ``str.isprintable()`` refuses; the crate
    carries Python 3.11's answer (core/gen_unprintable.py writes it)."""
    assert unicodedata.unidata_version == UNICODE_VERSION
    refused = [cp for cp in range(0x80, 0x110000) if not chr(cp).isprintable()]
    table = [cp for lo, hi in UNPRINTABLE for cp in range(lo, hi + 1)]
    assert table == refused


def test_quoted_text_escapes_what_python_escapes():
    # Both ends of every range and their neighbours, in an enum value that
    # the dead letter quotes with repr() (surrogates cannot be in UTF-8).
    points = sorted(
        {cp for lo, hi in UNPRINTABLE for cp in (lo - 1, lo, hi, hi + 1)}
        - set(range(0xD800, 0xE000))
        - {0x110000}
    )
    # The JSON text "k<cp>'\"": the value holds a single and a double quote.
    lines = [field(ENTITY, "kind", b'"k' + chr(cp).encode() + b'\'\\""') for cp in points]
    rows = assert_same(lines)
    assert {v["reason"] for _, v in rows} == {"bad_enum"}
