"""`fundflow replay` on a foreign CSV layout (`--map`, `--const`) and with
a chosen set of detectors (`--detectors`, `engine.detectors`), through the
CLI: the happy path with pinned alerts, and each mistake as one line and
exit code 2."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from fundflow.cli import main
from fundflow.detectors.alerting import make_alert_id

MAP = "txn_id=ref,ts=when,payer_account=from,payee_account=to,amount=yuan,payer_bank=bank,payee_bank=bank,initiator_id=bank"


def _dump(tmp: Path, payers: int = 10) -> Path:
    """``payers`` accounts pay 20,000 yuan each into H, a minute apart, in a
    bank's own layout (local times without an offset)."""
    lines = ["ref,when,from,to,yuan,bank,note"]
    lines += [f"R{i:02d},2026-03-02 09:{i:02d}:00,P{i:02d},H,20000.00,B1,x" for i in range(payers)]
    path = tmp / "dump.csv"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


#: An absolute floor (a supervisor's legal threshold) instead of one relative to
#: the dump: ten payments are too few for the dump's own percentile.
FLOORS = '[fan_in]\nmin_payment_pct = 0\nmin_payment = "10000"\nmin_total = "200000"\n'


def _floors(tmp: Path, more: str = "") -> str:
    path = tmp / "floors.toml"
    path.write_text(FLOORS + more, encoding="utf-8")
    return str(path)


def _replay(tmp: Path, *args: str):
    return CliRunner().invoke(
        main,
        [
            "replay",
            "--no-db",
            "--alerts-out",
            str(tmp / "alerts.jsonl"),
            "--deadletter-out",
            str(tmp / "dead.jsonl"),
            "--summary-json",
            str(tmp / "summary.json"),
            *args,
        ],
    )


def _alerts(tmp: Path) -> list[dict]:
    return [json.loads(x) for x in (tmp / "alerts.jsonl").read_text().splitlines()]


def test_a_foreign_layout_is_replayed_through_the_map(tmp_path: Path):
    dump = _dump(tmp_path)
    args = ["--kind", "clearing_txn", "--map", MAP, "--const", "system=CNAPS"]
    config = ["--config", _floors(tmp_path)]
    result = _replay(tmp_path, *args, *config, "--detectors", "typologies", str(dump))
    assert result.exit_code == 0, result.output
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert (summary["read"], summary["accepted"], summary["dead_letters"]) == (10, 10, {})
    [alert] = _alerts(tmp_path)
    # 09:09 local (+08:00) is when the tenth payer paid: the episode's start.
    assert (alert["alert_id"], alert["detector"], alert["subject_id"], alert["amount"]) == (
        make_alert_id("fan_in", "H", 1772413740000),
        "fan_in",
        "H",
        "200000.00",
    )
    assert alert["first_ts"] == "2026-03-02T09:00:00+08:00"
    assert alert["evidence"]["sample_txn_ids"][:2] == ["R00", "R01"]


def test_map_and_const_may_be_repeated_and_the_default_detectors_find_nothing(tmp_path: Path):
    dump = _dump(tmp_path)
    half = MAP.split(",")
    args = ["--kind", "clearing_txn", "--map", ",".join(half[:4]), "--map", ",".join(half[4:])]
    result = _replay(tmp_path, *args, "--const", "system=NUCC", str(dump))
    assert result.exit_code == 0, result.output
    assert _alerts(tmp_path) == []  # the business detectors: no reference data, no finding
    assert json.loads((tmp_path / "summary.json").read_text())["accepted"] == 10


def test_the_configuration_chooses_the_detectors_and_the_flag_overrides_it(tmp_path: Path):
    dump = _dump(tmp_path)
    conf = _floors(tmp_path, '[engine]\ndetectors = ["fan_in", "cycle"]\n')
    base = ["--kind", "clearing_txn", "--map", MAP, "--const", "system=CNAPS"]
    result = _replay(tmp_path, *base, "--config", str(conf), str(dump))
    assert result.exit_code == 0, result.output
    assert [a["detector"] for a in _alerts(tmp_path)] == ["fan_in"]
    result = _replay(tmp_path, *base, "--config", str(conf), "--detectors", "fan_out", str(dump))
    assert result.exit_code == 0, result.output
    assert _alerts(tmp_path) == []


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--map", MAP], "--map and --const need --kind (the record kind of every row)"),
        (
            ["--kind", "clearing_txn", "--map", "payer=from"],
            "--map: payer is not a field of clearing_txn (fields: txn_id, ts,",
        ),
        (
            ["--kind", "clearing_txn", "--map", MAP + ",ts=ref"],
            "--map: ts is given more than once",
        ),
        (
            ["--kind", "clearing_txn", "--map", MAP, "--const", "txn_id=X"],
            "--const: txn_id is given more than once",
        ),
        (
            ["--kind", "clearing_txn", "--map", MAP.replace("yuan", "value")],
            "no column 'value' (mapped to amount) in its header",
        ),
        (
            ["--kind", "clearing_txn", "--map", MAP],
            "no column for required field system: add --map system=COLUMN or --const system=VALUE",
        ),
        (["--kind", "clearing_txn", "--const", "system"], "--const: 'system' is not FIELD=VALUE"),
        (["--detectors", "fan_in,nope"], "--detectors: unknown detector(s): nope; known: default,"),
        (["--detectors", " , "], "--detectors: name at least one detector or group"),
    ],
    ids=[
        "no-kind",
        "unknown-field",
        "duplicate-map",
        "duplicate-const",
        "missing-column",
        "missing-required",
        "not-a-pair",
        "unknown-detector",
        "no-detector",
    ],
)
def test_mistakes_are_one_line_and_exit_2(tmp_path: Path, args, message):
    result = _replay(tmp_path, *args, str(_dump(tmp_path)))
    assert result.exit_code == 2
    assert message in result.output
    assert result.output.count("\n") == 1
    assert not (tmp_path / "alerts.jsonl").exists()


def test_map_reads_csv_dumps_only(tmp_path: Path):
    jsonl = tmp_path / "dump.jsonl"
    jsonl.write_text("", encoding="utf-8")
    result = _replay(tmp_path, "--kind", "clearing_txn", "--map", MAP, str(jsonl))
    assert result.exit_code == 2
    assert result.output == f"fundflow: --map and --const read CSV dumps, not {jsonl}\n"
