"""Hostile input against every decoder: JSONL lines, Kafka payloads (a known
kind, bytes-like values), CSV rows and CSV files, then through the engine
and through ``fundflow replay``.

Every input is either a dead letter with a reason from ``REASONS`` or one of
the acceptances listed in README "Guarantees"; nothing raises out of a
decoder or the engine, and a replay never stops on what a dump holds.
"""

from __future__ import annotations

import json
import random
import tracemalloc
from pathlib import Path
from typing import Any

import msgspec
import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fundflow.cli import main
from fundflow.detectors import Engine, load_config
from fundflow.replay import iter_records, replay
from fundflow.schemas import REASONS, DeadLetter, RecordDecoder
from fundflow.schemas.records import KINDS, ClearingTxn, CustodyTxn
from fundflow.schemas.wire import WIRE_TYPES

DEC = RecordDecoder()
DECODING_REASONS = set(REASONS) - {"too_late"}
TS = "2026-03-01T10:00:00+08:00"
GOOD = {
    "type": "custody_txn",
    "txn_id": "T1",
    "ts": TS,
    "bank_id": "B",
    "platform_id": "P",
    "debit_account": "A",
    "credit_account": "C",
    "amount": "10.00",
    "purpose": "invest",
}
G = msgspec.json.encode(GOOD)
MB = 1 << 20


def sub(field: str, raw_value: bytes) -> bytes:
    """``G`` with one field's JSON value replaced by ``raw_value`` (raw JSON text)."""
    old = b'"' + field.encode() + b'":' + msgspec.json.encode(GOOD[field])
    assert G.count(old) == 1
    return G.replace(old, b'"' + field.encode() + b'":' + raw_value)


# (name, raw line, expected reason, or for an acceptance (amount fen, ts ms, txn_id))
HOSTILE: list[tuple[str, bytes, str | tuple[int, int, str]]] = [
    ("truncated", G[:-1], "not_json"),
    ("truncated-mid-key", G[:40], "not_json"),
    ("huge-10MB", G[:-1] + b',"x":"' + b"a" * (10 * MB) + b'"}', "too_large"),
    ("deep-100k-arrays", b"[" * 100_000 + b"]" * 100_000, "not_object"),
    (
        "deep-100k-in-a-field",
        G[:-1] + b',"x":' + b"[" * 100_000 + b"]" * 100_000 + b"}",
        "too_large",
    ),
    ("amount-bool", sub("amount", b"true"), "bad_amount"),
    ("amount-null", sub("amount", b"null"), "bad_amount"),
    ("amount-list", sub("amount", b"[]"), "bad_amount"),
    ("txn_id-number", sub("txn_id", b"5"), "bad_id"),
    ("txn_id-empty", sub("txn_id", b'""'), "bad_id"),
    ("txn_id-65-chars", sub("txn_id", b'"' + b"x" * 65 + b'"'), "bad_id"),
    ("purpose-number", sub("purpose", b"1"), "bad_field"),
    ("ts-list", sub("ts", b"[]"), "bad_time"),
    ("ts-bool", sub("ts", b"true"), "bad_time"),
    ("amount-NaN", sub("amount", b"NaN"), "not_json"),
    ("amount-Infinity", sub("amount", b"Infinity"), "not_json"),
    ("amount-NaN-string", sub("amount", b'"NaN"'), "bad_amount"),
    ("amount-1e400", sub("amount", b"1e400"), "bad_amount"),
    ("amount-20-digits", sub("amount", b'"12345678901234567890"'), "bad_amount"),
    ("amount-20-digit-number", sub("amount", b"12345678901234567890"), "bad_amount"),
    ("amount-over-10^15", sub("amount", b'"1000000000000000.01"'), "bad_amount"),
    ("amount-3-decimals", sub("amount", b'"10.001"'), "bad_amount"),
    ("amount-3-decimal-number", sub("amount", b"10.001"), "bad_amount"),
    ("amount-negative", sub("amount", b'"-1"'), "bad_amount"),
    ("amount-zero", sub("amount", b"0"), "bad_amount"),
    ("amount-minus-zero", sub("amount", b"-0.0"), "bad_amount"),
    ("amount-exponent-string", sub("amount", b'"1e3"'), "bad_amount"),
    ("amount-leading-space", sub("amount", b'" 10.00"'), "bad_amount"),
    ("amount-fullwidth-digit", sub("amount", '"１0.00"'.encode()), "bad_amount"),
    ("purpose-unknown", sub("purpose", b'"steal"'), "bad_enum"),
    ("type-unknown", sub("type", b'"steal_txn"'), "unknown_type"),
    ("bad-utf8", sub("txn_id", b'"T\xff"'), "not_json"),
    ("lone-surrogate-escape", sub("txn_id", b'"\\ud800"'), "not_json"),
    ("utf16-bom", b"\xff\xfe" + G, "not_json"),
    ("two-boms", b"\xef\xbb\xbf\xef\xbb\xbf" + G, "not_json"),
    ("bom-inside", G[:9] + b"\xef\xbb\xbf" + G[9:], "unknown_type"),
    ("ts-1969", sub("ts", b'"1969-12-31T23:59:59Z"'), "bad_time"),
    ("ts-negative-ms", sub("ts", b"-1"), "bad_time"),
    ("ts-2100", sub("ts", b'"2100-01-01T00:00:00Z"'), "bad_time"),
    ("ts-2099-west-of-utc", sub("ts", b'"2099-12-31T23:59:59-10:00"'), "bad_time"),
    ("ts-year-1", sub("ts", b'"0001-01-01T00:00:00"'), "bad_time"),
    ("ts-20-digit-ms", sub("ts", b"99999999999999999999"), "bad_time"),
    ("ts-float-ms", sub("ts", b"1.5e12"), "bad_time"),
    ("type-twice-differing", G[:-1] + b',"type":"clearing_txn"}', "unknown_type"),
    ("trailing-garbage", G + b"x", "not_json"),
    ("two-objects", G + G, "not_json"),
    ("same-debit-and-credit", sub("credit_account", b'"A"'), "bad_field"),
    ("not-an-object", b'"custody_txn"', "not_object"),
    # Documented acceptances (README "Guarantees").
    ("bom-at-start", b"\xef\xbb\xbf" + G, (1000, 1772330400000, "T1")),
    ("crlf", G + b"\r\n", (1000, 1772330400000, "T1")),
    ("duplicate-key-last-wins", G[:-1] + b',"amount":"20.00"}', (2000, 1772330400000, "T1")),
    ("type-twice-same", G[:-1] + b',"type":"custody_txn"}', (1000, 1772330400000, "T1")),
    ("amount-exponent-number", sub("amount", b"1e2"), (10000, 1772330400000, "T1")),
    ("amount-one-decimal", sub("amount", b'"10.5"'), (1050, 1772330400000, "T1")),
    ("amount-10^15", sub("amount", b'"1000000000000000.00"'), (10**17, 1772330400000, "T1")),
    ("ts-1970-start", sub("ts", b'"1970-01-01T00:00:00Z"'), (1000, 0, "T1")),
    ("ts-2099-last-ms", sub("ts", b"4102444799999"), (1000, 4102444799999, "T1")),
    ("ts-date-only", sub("ts", b'"2026-03-01"'), (1000, 1772294400000, "T1")),
    ("nul-in-id", sub("txn_id", b'"T\\u0000"'), (1000, 1772330400000, "T\x00")),
]


def _check(result: Any, expected: str | tuple[int, int, str]) -> None:
    if isinstance(expected, str):
        assert type(result) is DeadLetter, result
        assert result.reason == expected, result.detail
        msgspec.json.encode(result)  # a dead-letter sink can always write it
    else:
        assert type(result) is CustodyTxn, result
        assert (result.amount, result.ts, result.txn_id) == expected


@pytest.mark.parametrize(("name", "raw", "expected"), HOSTILE, ids=[c[0] for c in HOSTILE])
def test_hostile_jsonl_line(name: str, raw: bytes, expected: Any) -> None:
    _check(DEC.decode(raw), expected)
    _check(DEC.decode(raw.decode("utf-8", "surrogateescape")), expected)


@pytest.mark.parametrize(("name", "raw", "expected"), HOSTILE, ids=[c[0] for c in HOSTILE])
def test_hostile_kafka_payload(name: str, raw: bytes, expected: Any) -> None:
    # A payload on the custody topic: the kind comes from the topic, the value
    # is whatever bytes-like object the client hands over.
    for value in (raw, bytearray(raw), memoryview(raw)):
        _check(DEC.decode(value, "custody_txn"), expected)


def test_a_kafka_payload_of_another_kind_or_none_kind_is_refused():
    assert DEC.decode(G, "clearing_txn").reason == "unknown_type"
    assert DEC.decode(G, "no_such_topic_kind").reason == "unknown_type"
    assert DEC.decode(b"", "custody_txn").reason == "not_json"
    assert DEC.decode(b"{}", "custody_txn").reason == "missing_field"


CSV_GOOD = {k: str(v) for k, v in GOOD.items()}
CSV_HOSTILE: list[tuple[str, dict[str, Any], str | tuple[int, int, str]]] = [
    ("amount-NaN", {"amount": "NaN"}, "bad_amount"),
    ("amount-Infinity", {"amount": "Infinity"}, "bad_amount"),
    ("amount-20-digits", {"amount": "12345678901234567890"}, "bad_amount"),
    ("amount-3-decimals", {"amount": "10.001"}, "bad_amount"),
    ("amount-negative", {"amount": "-5.00"}, "bad_amount"),
    ("amount-zero", {"amount": "0"}, "bad_amount"),
    ("purpose-unknown", {"purpose": "steal"}, "bad_enum"),
    ("type-unknown", {"type": "steal_txn"}, "unknown_type"),
    ("ts-1969", {"ts": "1969-12-31T23:59:59Z"}, "bad_time"),
    ("ts-2100", {"ts": "2100-01-01T00:00:00Z"}, "bad_time"),
    ("ts-20-digit-ms", {"ts": "99999999999999999999"}, "bad_time"),
    ("txn_id-65", {"txn_id": "x" * 65}, "bad_id"),
    ("lone-surrogate", {"txn_id": "T\udcff"}, "not_json"),
    ("bom-before-type", {"type": "\ufeffcustody_txn"}, "unknown_type"),
    ("cell-over-limit", {"bank_id": "B" * (MB + 1)}, "too_large"),
    ("surplus-cells", {None: ["x", "y"]}, (1000, 1772330400000, "T1")),
    ("ts-epoch-ms", {"ts": "1772330400000"}, (1000, 1772330400000, "T1")),
    ("amount-one-decimal", {"amount": "10.5"}, (1050, 1772330400000, "T1")),
]


@pytest.mark.parametrize(
    ("name", "change", "expected"), CSV_HOSTILE, ids=[c[0] for c in CSV_HOSTILE]
)
def test_hostile_csv_row(name: str, change: dict[str, Any], expected: Any) -> None:
    row: dict[Any, Any] = {**CSV_GOOD, **change}
    _check(DEC.from_row(row), expected)


def test_a_deeply_nested_json_cell_is_too_large():
    row = {
        "type": "entity",
        "entity_id": "E1",
        "name": "n",
        "kind": "company",
        "related": "[" * 60_000 + "]" * 60_000,
    }
    letter = DEC.from_row(row)
    assert (letter.reason, letter.detail) == ("too_large", "a JSON cell nested too deep to decode")


# -- generated input ----------------------------------------------------------

FRAGMENTS = st.sampled_from(
    [
        b"\xef\xbb\xbf",
        b"\r\n",
        b"\r",
        b"\n",
        b"\x00",
        b"\xff",
        b"\xc3",
        b'"',
        b"{",
        b"}",
        b"[" * 5000,
        b"NaN",
        b"-Infinity",
        b"1e999",
        b"99999999999999999999",
        b"\\ud800",
        b'"type":"clearing_txn",',
        b'"amount":"1.001",',
    ]
)
_FUZZ = settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _outcome_ok(result: Any) -> None:
    if type(result) is DeadLetter:
        assert result.reason in DECODING_REASONS
        msgspec.json.encode(result)
    elif type(result) in (CustodyTxn, ClearingTxn):
        assert 0 < result.amount <= 10**17
        assert 0 <= result.ts < 4102444800000
        assert 0 < len(result.txn_id) <= 64


@_FUZZ
@given(
    cuts=st.lists(st.tuples(st.integers(0, len(G)), FRAGMENTS), max_size=4),
    truncate=st.integers(0, len(G)),
    kind=st.sampled_from([None, "custody_txn", "clearing_txn"]),
)
def test_spliced_lines_never_raise(cuts: list, truncate: int, kind: str | None) -> None:
    raw = G
    for at, fragment in sorted(cuts, reverse=True):
        raw = raw[:at] + fragment + raw[at:]
    for line in (raw, raw[: truncate or len(raw)]):
        _outcome_ok(DEC.decode(line, kind))
        _outcome_ok(DEC.decode(memoryview(line), kind))


HOSTILE_VALUES = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(10**25), max_value=10**25),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=70),
    st.sampled_from(["NaN", "-0", "0.001", "1e3", "2100-01-01T00:00:00Z", "1969-01-01", "\ufeff"]),
    st.lists(st.integers(), max_size=3),
    st.dictionaries(st.text(max_size=5), st.integers(), max_size=2),
)


@_FUZZ
@given(
    kind=st.sampled_from(["custody_txn", "clearing_txn", "balance", "reserve_report"]),
    field=st.integers(0, 20),
    value=HOSTILE_VALUES,
)
def test_one_hostile_field_in_a_record_never_raises(kind: str, field: int, value: Any) -> None:
    names = list(WIRE_TYPES[kind].__struct_fields__)
    name = names[field % len(names)]
    record = {"type": kind, **dict.fromkeys(names, "X1"), name: value}
    line = json.dumps(record, allow_nan=True).encode()  # NaN / Infinity tokens included
    _outcome_ok(DEC.decode(line))
    _outcome_ok(DEC.decode(line, kind))
    cells = {k: v if isinstance(v, str) else json.dumps(v) for k, v in record.items()}
    _outcome_ok(DEC.from_row(cells))


@_FUZZ
@given(raw=st.binary(max_size=300), kind=st.sampled_from([None, *KINDS]))
def test_random_bytes_never_raise_through_the_engine(raw: bytes, kind: str | None) -> None:
    eng = Engine()
    lines = [raw, G, raw + G, sub("ts", b"0"), sub("txn_id", b'"T2"')]
    outcomes = [DEC.decode(line, kind) for line in lines]
    dead = 0
    for rec in outcomes:
        if type(rec) is DeadLetter:
            dead += 1
        else:
            eng.process(rec)
    eng.finish()
    dead += len(eng.dead_letters)
    assert eng.counts["accepted"] + eng.counts["duplicates"] + dead == len(lines)


# -- through the replay -----------------------------------------------------


def test_an_overlong_line_is_read_past_without_holding_it(tmp_path: Path) -> None:
    path = tmp_path / "dump.jsonl"
    with path.open("wb") as f:
        f.write(G + b"\n")
        f.write(b'{"x":"' + b"a" * (40 * MB) + b'"}\n')  # 40 MB, no record
        f.write(sub("txn_id", b'"T2"') + b"\n")
        f.write(b"b" * (3 * MB))  # an unterminated last line
    tracemalloc.start()
    try:
        got = list(iter_records([str(path)], RecordDecoder()))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert [type(r).__name__ for r, _ in got] == [
        "CustodyTxn",
        "DeadLetter",
        "CustodyTxn",
        "DeadLetter",
    ]
    assert [(r.reason, r.detail, r.source, len(r.raw)) for r, _ in got[1::2]] == [
        ("too_large", f"{40 * MB + 8} bytes, limit {MB}", f"{path}:2", 65536),
        ("too_large", f"{3 * MB} bytes, limit {MB}", f"{path}:4", 65536),
    ]
    assert peak < 6 * MB, peak


def test_the_line_limit_is_a_replay_setting(tmp_path: Path) -> None:
    path = tmp_path / "dump.jsonl"
    path.write_bytes(G + b"\n" + sub("txn_id", b'"T2"')[:-1] + b',"pad":"' + b"p" * 300 + b'"}\n')
    s = replay([str(path)], config=load_config(), max_line_bytes=300)
    assert (s.read, s.accepted, s.dead_letters) == (2, 1, {"too_large": 1})


def _hostile_lines() -> list[tuple[bytes, str]]:
    """Lines that are dead letters, with their reason, for mixing into a world."""
    out = [(raw, expected) for _, raw, expected in HOSTILE if isinstance(expected, str)]
    return [(raw.replace(b"\n", b" "), reason) for raw, reason in out if b"\n" not in raw] + [
        (b"\xef\xbb\xbf", "not_json"),  # a BOM alone on a line mid-file
        (b"\x00\x00\x00", "not_json"),
        (bytes(range(256)).replace(b"\n", b""), "not_json"),
        (b"x" * (2 * MB), "too_large"),
    ]


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("world")
    result = CliRunner().invoke(main, ["simulate", "--out", str(tmp), "--seed", "1"])
    assert result.exit_code == 0, result.output
    return tmp


def _run(tmp: Path, dump: Path, name: str) -> tuple[dict, bytes]:
    args = [
        "replay", str(dump),
        "--alerts-out", str(tmp / f"{name}.alerts.jsonl"),
        "--deadletter-out", str(tmp / f"{name}.dead.jsonl"),
        "--summary-json", str(tmp / f"{name}.summary.json"),
        "--no-db",
    ]  # fmt: skip
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    summary = json.loads((tmp / f"{name}.summary.json").read_text())
    return summary, (tmp / f"{name}.alerts.jsonl").read_bytes()


def test_replay_of_a_world_mixed_with_hostile_lines(world: Path, tmp_path: Path) -> None:
    clean, clean_alerts = _run(tmp_path, world / "world.jsonl", "clean")
    lines = (world / "world.jsonl").read_bytes().split(b"\n")
    hostile = _hostile_lines()
    rng = random.Random(7)
    mixed = list(lines[:-1])
    for raw, _ in hostile:
        mixed.insert(rng.randrange(1, len(mixed)), raw)
    # Windows line ends on one line in ten, and a BOM at the very start.
    mixed = [line + b"\r" if i % 10 == 3 else line for i, line in enumerate(mixed)]
    dump = tmp_path / "mixed.jsonl"
    dump.write_bytes(b"\xef\xbb\xbf" + b"\n".join(mixed) + b"\n")
    summary, alerts = _run(tmp_path, dump, "mixed")

    expected_dead = dict(clean["dead_letters"])
    for _, reason in hostile:
        expected_dead[reason] = expected_dead.get(reason, 0) + 1
    assert summary["dead_letters"] == dict(sorted(expected_dead.items()))
    assert summary["read"] == clean["read"] + len(hostile)
    assert (summary["accepted"], summary["duplicates"]) == (clean["accepted"], clean["duplicates"])
    assert summary["read"] == (
        summary["accepted"] + summary["duplicates"] + sum(summary["dead_letters"].values())
    )
    assert alerts == clean_alerts


def test_replay_of_a_csv_dump_with_hostile_rows(tmp_path: Path) -> None:
    header = ",".join(GOOD) + "\r\n"

    def row(**change: str) -> str:
        return ",".join({**CSV_GOOD, **change}.values()) + "\r\n"

    text = (
        "\ufeff" + header
        + row(txn_id="T1")
        + row(txn_id="T2", amount="NaN")
        + row(txn_id="T3", bank_id="B" * 200_000)  # over csv's cell limit
        + row(txn_id="T4", ts="2100-01-01T00:00:00Z")
        + row(txn_id="T5", purpose="steal")
        + row(txn_id="T6")
        + '"unterminated,' + "x" * 10 + "\r\n"  # swallows the rest of the file into one cell
        + row(txn_id="T7")
    )  # fmt: skip
    data = text.encode().replace(b"T6", b"T6\xff")  # a byte that is not UTF-8
    path = tmp_path / "dump.csv"
    path.write_bytes(data)
    s = replay([str(path)], config=load_config())
    assert (s.read, s.accepted, s.duplicates) == (7, 1, 0)
    assert s.dead_letters == {
        "bad_amount": 1,
        "bad_enum": 1,
        "bad_time": 1,
        "not_json": 1,
        "too_large": 1,
        "unknown_type": 1,
    }
    assert s.balanced()


def test_replay_of_a_csv_dump_with_an_overlong_physical_line(tmp_path: Path) -> None:
    header = ",".join(GOOD) + "\n"
    good = ",".join(CSV_GOOD.values()) + "\n"
    path = tmp_path / "dump.csv"
    path.write_bytes(
        (header + good).encode()
        + b"z" * (3 * MB)
        + b"\n"
        + ",".join({**CSV_GOOD, "txn_id": "T9"}.values()).encode()
    )
    got = [r for r, _ in iter_records([str(path)], RecordDecoder())]
    assert [
        (type(r).__name__, getattr(r, "reason", None), getattr(r, "source", None)) for r in got
    ] == [
        ("CustodyTxn", None, None),
        ("DeadLetter", "too_large", f"{path}:line 3"),
        ("CustodyTxn", None, None),
    ]
