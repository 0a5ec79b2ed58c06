"""End to end: `fundflow simulate` then `fundflow replay`, through the CLI.

Every labelled violator of a simulated world is found, no honest subject is
alerted, the accounting identity holds with the exact noise the world
carries, and the output is byte-identical from run to run.
"""

from __future__ import annotations

import json
from pathlib import Path

import msgspec
import pytest
from click.testing import CliRunner

from fundflow.cli import main
from fundflow.schemas.records import Alert
from fundflow.store import SQLiteStore
from fundflow.truth import score

SEEDS = [1, 2, 3]


def _world(tmp: Path, seed: int, scale: int = 1) -> dict:
    result = CliRunner().invoke(
        main, ["simulate", "--out", str(tmp), "--seed", str(seed), "--scale", str(scale)]
    )
    assert result.exit_code == 0, result.output
    return json.loads((tmp / "truth.json").read_text())


def _replay(tmp: Path, *extra: str) -> tuple[dict, bytes]:
    args = [
        "replay",
        str(tmp / "world.jsonl"),
        "--alerts-out",
        str(tmp / "alerts.jsonl"),
        "--deadletter-out",
        str(tmp / "dead.jsonl"),
        "--db",
        str(tmp / "fundflow.db"),
        "--summary-json",
        str(tmp / "summary.json"),
        *extra,
    ]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    return json.loads((tmp / "summary.json").read_text()), (tmp / "alerts.jsonl").read_bytes()


@pytest.mark.parametrize("seed", SEEDS)
def test_every_violator_found_and_no_false_alarm(tmp_path: Path, seed: int) -> None:
    truth = _world(tmp_path, seed)
    summary, raw = _replay(tmp_path)
    alerts = [msgspec.json.decode(line, type=Alert) for line in raw.splitlines()]
    result = score(truth, alerts)
    assert result.missed == []
    assert result.false_alarms == []
    assert result.unexpected == []
    assert {v["detector"] for v in truth["violators"]} == {
        "fund_pool",
        "reserve_misuse",
        "maturity_mismatch",
        "self_financing",
        "guaranteed_return",
        "excessive_return",
        "cross_bank_clearing",
        "unlicensed_business",
        "down_payment_loan",
        "private_product_split",
    }
    # The store holds the newest revision of each alert, one row per id.
    stored = SQLiteStore(str(tmp_path / "fundflow.db")).list()
    assert sorted(a.alert_id for a in stored) == sorted({a.alert_id for a in alerts})
    assert score(truth, stored).perfect


@pytest.mark.parametrize("seed", SEEDS)
def test_accounting_identity_with_the_world_noise(tmp_path: Path, seed: int) -> None:
    truth = _world(tmp_path, seed)
    summary, _ = _replay(tmp_path)
    noise = truth["noise"]
    assert summary["read"] == truth["records"]
    assert summary["duplicates"] == noise["duplicates"]
    assert summary["dead_letters"] == {k: v for k, v in noise["dead_letters"].items() if v}
    assert summary["read"] == summary["accepted"] + summary["duplicates"] + sum(
        summary["dead_letters"].values()
    )
    dead = [json.loads(line) for line in (tmp_path / "dead.jsonl").read_text().splitlines()]
    assert len(dead) == sum(noise["dead_letters"].values())
    assert all(
        d["source"].startswith(str(tmp_path / "world.jsonl") + ":") and d["raw"] for d in dead
    )


def test_replay_is_byte_identical_and_idempotent_in_the_store(tmp_path: Path) -> None:
    _world(tmp_path, 1)
    first_summary, first = _replay(tmp_path)
    rows_first = [msgspec.json.encode(a) for a in SQLiteStore(str(tmp_path / "fundflow.db")).list()]
    second_summary, second = _replay(tmp_path)
    rows_second = [
        msgspec.json.encode(a) for a in SQLiteStore(str(tmp_path / "fundflow.db")).list()
    ]
    assert first == second
    assert rows_first == rows_second
    first_summary.pop("seconds"), second_summary.pop("seconds")
    first_summary.pop("records_per_second"), second_summary.pop("records_per_second")
    assert first_summary == second_summary


def test_gzip_and_stdin_give_the_same_alerts(tmp_path: Path) -> None:
    plain = tmp_path / "plain"
    _world(plain, 2)
    _, expected = _replay(plain)
    gz = tmp_path / "gz"
    result = CliRunner().invoke(main, ["simulate", "--out", str(gz), "--seed", "2", "--gzip"])
    assert result.exit_code == 0, result.output
    out = tmp_path / "gz-alerts.jsonl"
    result = CliRunner().invoke(
        main,
        [
            "replay",
            str(gz / "world.jsonl.gz"),
            "--alerts-out",
            str(out),
            "--no-db",
            "--deadletter-out",
            str(tmp_path / "d1"),
        ],
    )
    assert result.exit_code == 0, result.output
    assert out.read_bytes() == expected
    out2 = tmp_path / "stdin-alerts.jsonl"
    result = CliRunner().invoke(
        main,
        [
            "replay",
            "-",
            "--alerts-out",
            str(out2),
            "--no-db",
            "--deadletter-out",
            str(tmp_path / "d2"),
        ],
        input=(plain / "world.jsonl").read_bytes(),
    )
    assert result.exit_code == 0, result.output
    assert out2.read_bytes() == expected
