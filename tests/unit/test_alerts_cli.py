"""Tests of ``fundflow alerts`` (fundflow.alerts_cli), through click's CliRunner."""

from __future__ import annotations

import csv
import io
import json
import re
import socket
from datetime import timedelta
from zoneinfo import ZoneInfo

import msgspec
import pytest
from click.testing import CliRunner

from fundflow.alerts_cli import alerts
from fundflow.detectors.engine import DETECTORS, TYPOLOGIES
from fundflow.schemas.records import Alert
from fundflow.store import SQLiteSink, SQLiteStore

A = Alert(
    alert_id="fund_pool:P1:1",
    detector="fund_pool",
    severity="high",
    subject_id="P1",
    accounts=("ACC-1", "ACC-2"),
    first_ts="2026-03-01T10:00:00+08:00",
    last_ts="2026-03-01T12:00:00+08:00",
    amount="150000.00",
    summary="Investor money pooled in the platform's own account, then paid out to "
    "earlier investors as interest.",
    evidence={"txn_ids": ["T1", "T2"], "pooled_fen": 15000000},
    detector_version="1.0",
    revision=2,
)
B = Alert(
    alert_id="reserve_misuse:PAY1:7",
    detector="reserve_misuse",
    severity="critical",
    subject_id="PAY1",
    accounts=("RES-1",),
    first_ts="2026-03-01T09:00:00+08:00",
    last_ts="2026-03-02T09:00:00+08:00",
    amount="9.99",
    summary="备付金被挪用于关联公司。",
    evidence={"shortfall_fen": 999, "注": "中文"},
    detector_version="1.0",
    revision=1,
)
C = Alert(
    alert_id="fund_pool:P2:3",
    detector="fund_pool",
    severity="low",
    subject_id="P2",
    accounts=(),
    first_ts="2026-03-01T09:30:00+08:00",
    last_ts="2026-03-01T09:45:00+08:00",
    amount="0.50",
    summary='Small, with a comma, and a "quote".',
    evidence={},
    detector_version="1.1",
    revision=1,
)
ORDERED = [B, C, A]  # by first_ts


@pytest.fixture
def db(tmp_path):
    path = tmp_path / "alerts.db"
    with SQLiteSink(path) as sink:
        sink.upsert([A, B, C])
    return str(path)


@pytest.fixture
def runner():
    return CliRunner()


def test_list_prints_a_table_oldest_first(runner, db):
    result = runner.invoke(alerts, ["list", "--db", db])
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines() == [
        "alert_id               status  severity  detector        subject     amount  first_ts                   summary",
        "reserve_misuse:PAY1:7  open    critical  reserve_misuse  PAY1          9.99  2026-03-01T09:00:00+08:00  备付金被挪用于关联公司。",
        "fund_pool:P2:3         open    low       fund_pool       P2            0.50  2026-03-01T09:30:00+08:00  Small, with a comma, and a \"quote\".",
        "fund_pool:P1:1         open    high      fund_pool       P1       150000.00  2026-03-01T10:00:00+08:00  Investor money pooled in the platform's own account, then p…",
    ]  # fmt: skip


@pytest.mark.parametrize(
    ("args", "ids"),
    [
        (["--detector", "fund_pool"], ["fund_pool:P2:3", "fund_pool:P1:1"]),
        (["--severity", "critical"], ["reserve_misuse:PAY1:7"]),
        (["--subject", "P1"], ["fund_pool:P1:1"]),
        (["--detector", "fund_pool", "--severity", "high"], ["fund_pool:P1:1"]),
        (["--limit", "2"], ["reserve_misuse:PAY1:7", "fund_pool:P2:3"]),
        (["--subject", "nobody"], []),
    ],
)
def test_list_filters(runner, db, args, ids):
    result = runner.invoke(alerts, ["list", "--db", db, *args])
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0].startswith("alert_id ")
    assert [line.split()[0] for line in lines[1:]] == ids


def test_list_uses_fundflow_db_in_the_current_directory(runner, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with SQLiteSink("fundflow.db") as sink:
        sink.upsert([C])
    result = runner.invoke(alerts, ["list"])
    assert result.exit_code == 0, result.output
    assert [line.split()[0] for line in result.stdout.splitlines()] == [
        "alert_id",
        "fund_pool:P2:3",
    ]


def test_show_prints_the_whole_alert_as_json(runner, db):
    result = runner.invoke(alerts, ["show", "reserve_misuse:PAY1:7", "--db", db])
    assert result.exit_code == 0, result.output
    assert result.stdout == (
        "{\n"
        '  "alert_id": "reserve_misuse:PAY1:7",\n'
        '  "detector": "reserve_misuse",\n'
        '  "severity": "critical",\n'
        '  "subject_id": "PAY1",\n'
        '  "accounts": [\n'
        '    "RES-1"\n'
        "  ],\n"
        '  "first_ts": "2026-03-01T09:00:00+08:00",\n'
        '  "last_ts": "2026-03-02T09:00:00+08:00",\n'
        '  "amount": "9.99",\n'
        '  "summary": "备付金被挪用于关联公司。",\n'
        '  "evidence": {\n'
        '    "shortfall_fen": 999,\n'
        '    "注": "中文"\n'
        "  },\n"
        '  "detector_version": "1.0",\n'
        '  "revision": 1,\n'
        '  "status": "open",\n'
        '  "events": []\n'
        "}\n"
    )
    # Still an Alert to any reader of the old output: the extra keys are ignored.
    assert msgspec.json.decode(result.stdout, type=Alert) == B


def test_show_unknown_id_exits_2_with_one_line(runner, db):
    result = runner.invoke(alerts, ["show", "nope", "--db", db])
    assert result.exit_code == 2
    assert result.stdout == ""
    assert result.stderr == f"Error: no alert 'nope' in {db}\n"


def test_export_jsonl_round_trips_to_identical_alerts(runner, db):
    result = runner.invoke(alerts, ["export", "--db", db])
    assert result.exit_code == 0, result.output
    lines = result.stdout_bytes.splitlines()
    # The store keeps evidence with sorted keys (its JSON columns are
    # deterministic), so each line is the alert encoded in that order.
    assert lines == [msgspec.json.encode(a, order="deterministic") for a in ORDERED]
    assert lines[2] == (
        b'{"alert_id":"fund_pool:P1:1","detector":"fund_pool","severity":"high",'
        b'"subject_id":"P1","accounts":["ACC-1","ACC-2"],'
        b'"first_ts":"2026-03-01T10:00:00+08:00","last_ts":"2026-03-01T12:00:00+08:00",'
        b'"amount":"150000.00","summary":"Investor money pooled in the platform\'s own '
        b'account, then paid out to earlier investors as interest.",'
        b'"evidence":{"pooled_fen":15000000,"txn_ids":["T1","T2"]},'
        b'"detector_version":"1.0","revision":2}'
    )
    assert [msgspec.json.decode(line, type=Alert) for line in lines] == ORDERED


def test_export_jsonl_with_filters_to_a_file(runner, db, tmp_path):
    out = tmp_path / "out.jsonl"
    result = runner.invoke(
        alerts,
        ["export", "--db", db, "--detector", "fund_pool", "--format", "jsonl", "--out", str(out)],
    )
    assert result.exit_code == 0, result.output
    assert result.stdout == ""
    assert out.read_bytes() == b"".join(
        msgspec.json.encode(a, order="deterministic") + b"\n" for a in (C, A)
    )


def test_export_csv_has_header_and_one_row_per_alert(runner, db):
    result = runner.invoke(alerts, ["export", "--db", db, "--format", "csv"])
    assert result.exit_code == 0, result.output
    rows = list(csv.reader(io.StringIO(result.stdout)))
    assert rows[0] == [
        "alert_id", "detector", "severity", "subject_id", "accounts", "first_ts",
        "last_ts", "amount", "summary", "evidence", "detector_version", "revision", "status",
    ]  # fmt: skip
    assert rows[1:] == [
        ["reserve_misuse:PAY1:7", "reserve_misuse", "critical", "PAY1", '["RES-1"]',
         "2026-03-01T09:00:00+08:00", "2026-03-02T09:00:00+08:00", "9.99",
         "备付金被挪用于关联公司。", '{"shortfall_fen":999,"注":"中文"}', "1.0", "1", "open"],
        ["fund_pool:P2:3", "fund_pool", "low", "P2", "[]",
         "2026-03-01T09:30:00+08:00", "2026-03-01T09:45:00+08:00", "0.50",
         'Small, with a comma, and a "quote".', "{}", "1.1", "1", "open"],
        ["fund_pool:P1:1", "fund_pool", "high", "P1", '["ACC-1","ACC-2"]',
         "2026-03-01T10:00:00+08:00", "2026-03-01T12:00:00+08:00", "150000.00",
         A.summary, '{"pooled_fen":15000000,"txn_ids":["T1","T2"]}', "1.0", "2", "open"],
    ]  # fmt: skip
    assert json.loads(rows[3][9]) == A.evidence


def test_export_csv_severity_filter(runner, db):
    result = runner.invoke(alerts, ["export", "--db", db, "--format", "csv", "--severity", "low"])
    assert result.exit_code == 0, result.output
    assert [r[0] for r in csv.reader(io.StringIO(result.stdout))] == ["alert_id", "fund_pool:P2:3"]


@pytest.mark.parametrize(
    "args", [["list"], ["show", "fund_pool:P1:1"], ["export"], ["export", "--format", "csv"]]
)
def test_missing_db_exits_2_with_one_line_and_creates_nothing(runner, tmp_path, args):
    missing = tmp_path / "missing.db"
    result = runner.invoke(alerts, [*args, "--db", str(missing)])
    assert result.exit_code == 2
    assert result.stdout == ""
    assert result.stderr == f"Error: alert store not found: {missing}\n"
    assert list(tmp_path.iterdir()) == []


def test_not_a_store_exits_2_with_one_line(runner, tmp_path):
    junk = tmp_path / "junk.db"
    junk.write_bytes(b"not sqlite at all" * 100)
    result = runner.invoke(alerts, ["list", "--db", str(junk)])
    assert result.exit_code == 2
    assert result.stderr.startswith(f"Error: {junk} is not a fundflow alert store: ")
    assert result.stderr.count("\n") == 1


def test_unwritable_out_exits_2_with_one_line(runner, db, tmp_path):
    plain = tmp_path / "plain-file"
    plain.write_text("x")
    out = plain / "out.jsonl"
    result = runner.invoke(alerts, ["export", "--db", db, "--out", str(out)])
    assert result.exit_code == 2
    assert result.stderr == f"Error: cannot write {out}: Not a directory\n"


@pytest.mark.parametrize(
    "args",
    [
        ["list", "--limit", "0"],
        ["export", "--format", "xml"],
    ],
)
def test_bad_options_exit_2(runner, db, args):
    result = runner.invoke(alerts, [*args, "--db", db])
    assert result.exit_code == 2
    assert "Error: Invalid value for" in result.stderr


KNOWN = (
    "fund_pool, reserve_misuse, maturity_mismatch, self_financing, guaranteed_return, "
    "excessive_return, cross_bank_clearing, unlicensed_business, down_payment_loan, "
    "private_product_split, fan_in, fan_out, cycle, gather_scatter, scatter_gather, split_payments,"
    " off_profile, bipartite, stack, peel_chain"
)


@pytest.mark.parametrize("command", ["list", "export"])
@pytest.mark.parametrize(
    ("option", "value", "message"),
    [
        ("--detector", "nosuch", f"--detector: unknown detector 'nosuch'; known: {KNOWN}"),
        ("--detector", "Fund_Pool", f"--detector: unknown detector 'Fund_Pool'; known: {KNOWN}"),
        (
            "--severity",
            "urgent",
            "--severity: unknown severity 'urgent'; known: low, medium, high, critical",
        ),
        ("--status", "done", "--status: unknown status 'done'; known: open, acknowledged, closed"),
    ],
)
def test_a_filter_that_names_nothing_known_is_one_line_and_exit_2(
    runner, db, command, option, value, message
):
    result = runner.invoke(alerts, [command, "--db", db, option, value])
    assert (result.exit_code, result.stdout, result.stderr) == (2, "", f"Error: {message}\n")


def test_every_detector_of_the_engine_is_a_known_filter(runner, db):
    for name in [*DETECTORS, *TYPOLOGIES]:
        result = runner.invoke(alerts, ["list", "--db", db, "--detector", name])
        assert result.exit_code == 0, (name, result.output)


# --- triage: ack, close, --status, the audit trail in show -----------------------

AT = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}\+08:00"  # the default zone, as alert times


def test_ack_then_close_print_one_line_each_and_show_the_trail(runner, db):
    result = runner.invoke(
        alerts, ["ack", "fund_pool:P1:1", "--by", "wang", "--note", "checking", "--db", db]
    )
    assert result.exit_code == 0, result.output
    assert re.fullmatch(f"fund_pool:P1:1 acknowledged by wang at {AT}\n", result.stdout)
    result = runner.invoke(alerts, ["close", "fund_pool:P1:1", "--by", "li", "--db", db])
    assert result.exit_code == 0, result.output
    assert re.fullmatch(f"fund_pool:P1:1 closed by li at {AT}\n", result.stdout)

    shown = runner.invoke(alerts, ["show", "fund_pool:P1:1", "--db", db])
    assert shown.exit_code == 0, shown.output
    data = json.loads(shown.stdout)
    assert data["status"] == "closed"
    assert [{k: v for k, v in e.items() if k != "at"} for e in data["events"]] == [
        {"action": "acknowledged", "actor": "wang", "note": "checking"},
        {"action": "closed", "actor": "li", "note": None},
    ]
    assert all(re.fullmatch(AT, e["at"]) for e in data["events"])
    assert list(data)[-2:] == ["status", "events"]
    assert msgspec.json.decode(shown.stdout, type=Alert) == A


def _printed_at(event) -> str:
    return event.at.astimezone(ZoneInfo("Asia/Shanghai")).isoformat(timespec="microseconds")


def test_audit_times_print_in_the_zone_alert_times_are_written_in(runner, db, tmp_path):
    ack = runner.invoke(alerts, ["ack", "fund_pool:P1:1", "--by", "wang", "--db", db])
    cfg = tmp_path / "utc.toml"
    cfg.write_text('[engine]\nzone = "UTC"\n')
    close = runner.invoke(
        alerts, ["close", "fund_pool:P1:1", "--by", "li", "--db", db, "--config", str(cfg)]
    )
    shown = runner.invoke(alerts, ["show", "fund_pool:P1:1", "--db", db])
    shown_utc = runner.invoke(alerts, ["show", "fund_pool:P1:1", "--db", db, "--config", str(cfg)])
    with SQLiteStore(db) as store:
        acked, closed = store.events("fund_pool:P1:1")
    assert acked.at.tzinfo is not None and acked.at.utcoffset() == timedelta(0)  # kept in UTC
    assert ack.stdout == f"fund_pool:P1:1 acknowledged by wang at {_printed_at(acked)}\n"
    utc = closed.at.isoformat(timespec="microseconds")
    assert utc.endswith("+00:00")
    assert close.stdout == f"fund_pool:P1:1 closed by li at {utc}\n"
    assert [e["at"] for e in json.loads(shown.stdout)["events"]] == [
        _printed_at(acked),
        _printed_at(closed),
    ]
    assert [e["at"] for e in json.loads(shown_utc.stdout)["events"]] == [
        acked.at.isoformat(timespec="microseconds"),
        utc,
    ]
    first_ts = json.loads(shown.stdout)["first_ts"]
    assert first_ts[-6:] == _printed_at(acked)[-6:] == "+08:00"


def test_a_bad_config_for_the_zone_is_one_line(runner, db, tmp_path):
    cfg = tmp_path / "bad.toml"
    cfg.write_text('[engine]\nzone = "Mars/Olympus"\n')
    result = runner.invoke(alerts, ["show", "fund_pool:P1:1", "--db", db, "--config", str(cfg)])
    assert (result.exit_code, result.stdout, result.stderr) == (
        2,
        "",
        "Error: engine.zone is not a known time zone: 'Mars/Olympus'\n",
    )


def test_list_and_export_filter_by_status(runner, db):
    assert (
        runner.invoke(alerts, ["ack", "fund_pool:P1:1", "--by", "wang", "--db", db]).exit_code == 0
    )
    assert (
        runner.invoke(alerts, ["close", "fund_pool:P2:3", "--by", "li", "--db", db]).exit_code == 0
    )
    result = runner.invoke(alerts, ["list", "--db", db])
    assert [line.split()[:2] for line in result.stdout.splitlines()] == [
        ["alert_id", "status"],
        ["reserve_misuse:PAY1:7", "open"],
        ["fund_pool:P2:3", "closed"],
        ["fund_pool:P1:1", "acknowledged"],
    ]
    for status, ids in [
        ("open", ["reserve_misuse:PAY1:7"]),
        ("acknowledged", ["fund_pool:P1:1"]),
        ("closed", ["fund_pool:P2:3"]),
    ]:
        listed = runner.invoke(alerts, ["list", "--db", db, "--status", status])
        assert [line.split()[0] for line in listed.stdout.splitlines()[1:]] == ids
        exported = runner.invoke(alerts, ["export", "--db", db, "--status", status])
        assert [json.loads(line)["alert_id"] for line in exported.stdout.splitlines()] == ids
    exported = runner.invoke(alerts, ["export", "--db", db, "--format", "csv"])
    assert [(r[0], r[-1]) for r in csv.reader(io.StringIO(exported.stdout))] == [
        ("alert_id", "status"),
        ("reserve_misuse:PAY1:7", "open"),
        ("fund_pool:P2:3", "closed"),
        ("fund_pool:P1:1", "acknowledged"),
    ]


@pytest.mark.parametrize(
    ("first", "second", "message"),
    [
        ("ack", "ack", "cannot acknowledge alert 'fund_pool:P1:1': it is already acknowledged"),
        ("close", "ack", "cannot acknowledge alert 'fund_pool:P1:1': it is closed"),
        ("close", "close", "cannot close alert 'fund_pool:P1:1': it is already closed"),
    ],
)
def test_an_illegal_move_exits_2_with_one_line(runner, db, first, second, message):
    assert runner.invoke(alerts, [first, "fund_pool:P1:1", "--by", "w", "--db", db]).exit_code == 0
    result = runner.invoke(alerts, [second, "fund_pool:P1:1", "--by", "w", "--db", db])
    assert result.exit_code == 2
    assert result.stdout == ""
    assert result.stderr == f"Error: {message}\n"


@pytest.mark.parametrize("move", ["ack", "close"])
def test_moving_an_unknown_alert_exits_2(runner, db, move):
    result = runner.invoke(alerts, [move, "nope", "--by", "wang", "--db", db])
    assert result.exit_code == 2
    assert result.stderr == f"Error: no alert 'nope' in {db}\n"


@pytest.mark.parametrize("by", [None, "", "  "])
def test_a_move_needs_by(runner, db, by):
    args = ["ack", "fund_pool:P1:1", "--db", db] + ([] if by is None else ["--by", by])
    result = runner.invoke(alerts, args)
    assert result.exit_code == 2
    assert "--by" in result.stderr
    shown = json.loads(runner.invoke(alerts, ["show", "fund_pool:P1:1", "--db", db]).stdout)
    assert (shown["status"], shown["events"]) == ("open", [])


@pytest.mark.parametrize("move", ["ack", "close"])
def test_moving_in_a_missing_store_creates_nothing(runner, tmp_path, move):
    missing = tmp_path / "missing.db"
    result = runner.invoke(alerts, [move, "x", "--by", "wang", "--db", str(missing)])
    assert result.exit_code == 2
    assert result.stderr == f"Error: alert store not found: {missing}\n"
    assert list(tmp_path.iterdir()) == []


def test_an_unreachable_postgres_store_is_one_line_without_the_password(runner):
    pytest.importorskip("psycopg")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"postgresql://fundflow:Sup3rSecret@127.0.0.1:{port}/alerts"
    for args in (["list"], ["show", "x"], ["export"], ["ack", "x", "--by", "w"]):
        result = runner.invoke(alerts, [*args, "--db", url])
        assert result.exit_code == 2, args
        assert result.stderr.startswith(
            f"Error: cannot open alert store postgresql://fundflow:***@127.0.0.1:{port}/alerts: "
        )
        assert result.stderr.count("\n") == 1
        assert "Sup3rSecret" not in result.output
