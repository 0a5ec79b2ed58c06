"""``fundflow simulate --amlsim``: IBM AMLSim's nodes and transactions as a
transfer world (``fundflow/amlsim.py``), on a hand-built sample and on the
vendored 20K sample (``tests/data/amlsim/``), with each bad input as one
line and exit code 2."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from fundflow.amlsim import AMLSimError, convert_amlsim
from fundflow.cli import main
from fundflow.schemas.records import Alert
from fundflow.transfers import score_nodes

SAMPLE = Path(__file__).parent.parent / "data" / "amlsim" / "20K_fanin200cycle200.tgz"


def _sample(tmp: Path, txns: list[str] | None = None) -> Path:
    src = tmp / "sim"
    src.mkdir()
    (src / "nodes.csv").write_text(
        "nodeid,isFraud,init_balance,fraudStep\n0,0,10.00,-1\n1,1,20.00,3\n2,1,30.00,3\n",
        encoding="utf-8",
    )
    rows = txns or ["0,1,163.3,1", "1,2,4.49,1", "2,0,1000,3"]
    (src / "transactions.csv").write_text(
        "sourceNodeId,targetNodeId,value,time\n" + "\n".join(rows) + "\n", encoding="utf-8"
    )
    return src


def test_a_sample_becomes_the_transfer_layout_one_step_a_day(tmp_path: Path):
    out = tmp_path / "out"
    out.mkdir()
    truth = convert_amlsim(_sample(tmp_path), out, currency="USD")
    rows = list(csv.reader((out / "transfers.csv").open(encoding="utf-8")))
    assert rows == [
        ["id", "time", "src_bank", "src", "dst_bank", "dst", "value", "ccy", "memo"],
        ["TX000000001", "2026-03-03 00:00:00", "AML", "0", "AML", "1", "163.30", "USD", ""],
        ["TX000000002", "2026-03-03 00:00:00", "AML", "1", "AML", "2", "4.49", "USD", ""],
        ["TX000000003", "2026-03-05 00:00:00", "AML", "2", "AML", "0", "1000.00", "USD", ""],
    ]
    assert (truth["rows"], truth["accounts"], truth["fraud_accounts"]) == (3, 3, ["1", "2"])
    assert json.loads((out / "truth.json").read_text()) == truth


def test_the_vendored_sample_converts_whole(tmp_path: Path):
    truth = convert_amlsim(SAMPLE, tmp_path, currency="USD")
    assert (truth["rows"], truth["accounts"], len(truth["fraud_accounts"])) == (120558, 20000, 1804)


def _alert(detector: str, accounts: tuple[str, ...]) -> Alert:
    return Alert(
        alert_id="x", detector=detector, severity="low", subject_id=accounts[0],
        accounts=accounts, first_ts="", last_ts="", amount="0.00", summary="",
        evidence={}, detector_version="1",
    )  # fmt: skip


def test_node_scores_count_every_named_account_of_the_chosen_detectors():
    truth = {"accounts": 5, "fraud_accounts": ["1", "2", "3", "4"]}
    alerts = [_alert("fan_in", ("1", "2", "9")), _alert("fund_pool", ("3",))]
    got = score_nodes(truth, alerts, ["fan_in", "cycle"])
    assert (got["named"], got["correct"], got["precision"], got["recall"]) == (3, 2, 2 / 3, 0.5)
    assert got["f1"] == pytest.approx(4 / 7)
    assert score_nodes(truth, [], ["fan_in"])["f1"] is None


@pytest.mark.parametrize(
    ("txns", "message"),
    [
        (["0,1,abc,1"], "transactions.csv line 2: value 'abc' is not a number"),
        (["0,1,1.234,1"], "value '1.234' is not an amount with at most two decimals"),
        (["0,1,-5,1"], "value '-5' is not an amount with at most two decimals"),
        (["0,1,5,x"], "transactions.csv line 2: time 'x' is not a step number"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(tmp_path: Path, txns: list[str], message: str):
    src = _sample(tmp_path, txns)
    result = CliRunner().invoke(
        main, ["simulate", "--amlsim", str(src), "--out", str(tmp_path / "o")]
    )
    assert result.exit_code == 2
    assert message in result.output
    assert result.output.count("\n") == 1
    with pytest.raises(AMLSimError):
        convert_amlsim(src, tmp_path)


def test_a_folder_without_the_files_and_a_bad_currency_are_refused(tmp_path: Path):
    runner = CliRunner()
    result = runner.invoke(
        main, ["simulate", "--amlsim", str(tmp_path), "--out", str(tmp_path / "o")]
    )
    assert (result.exit_code, result.output.strip()) == (
        2,
        f"fundflow: {tmp_path}: no nodes.csv and transactions.csv in it",
    )
    src = _sample(tmp_path)
    args = ["simulate", "--amlsim", str(src), "--currency", "usd", "--out", str(tmp_path / "o")]
    result = runner.invoke(main, args)
    assert (result.exit_code, result.output.strip()) == (
        2,
        "fundflow: --currency: 'usd' is not a three-letter code such as USD",
    )
