"""The command line: exit codes, one-line errors, CSV dumps, summaries."""

from __future__ import annotations

import json
import shutil
import subprocess
import tomllib
from pathlib import Path

import pytest
from click.testing import CliRunner

from fundflow.cli import main
from fundflow.detectors import default_toml, load_config

CUSTODY = (
    '{"type":"custody_txn","txn_id":"T1","ts":"2026-03-01T10:00:00+08:00","bank_id":"B",'
    '"platform_id":"P","debit_account":"L1","credit_account":"B1","amount":"100.00","purpose":"invest"}\n'
)


ROOT = Path(__file__).resolve().parents[2]


def _run(*args: str, input: bytes | None = None):
    return CliRunner().invoke(main, list(args), input=input)


def _default(command: str, option: str) -> str:
    (param,) = [p for p in main.commands[command].params if p.name == option]
    return str(param.default)


def test_missing_file_is_one_line_and_exit_2(tmp_path: Path) -> None:
    result = _run("replay", str(tmp_path / "nope.jsonl"), "--no-db")
    assert result.exit_code == 2
    assert result.output.strip().splitlines() == [
        f"fundflow: no such file: {tmp_path / 'nope.jsonl'}"
    ]


def test_replay_help_says_the_store_may_be_a_url() -> None:
    result = CliRunner().invoke(
        main, ["replay", "--help"], terminal_width=200, max_content_width=200
    )
    (line,) = [x for x in result.output.splitlines() if x.lstrip().startswith("--db ")]
    assert " ".join(line.split()) == (
        "--db PATH|URL Alert store: a SQLite file, or a postgresql:// URL. [default: fundflow.db]"
    )


def test_bad_flag_is_exit_2() -> None:
    result = _run("replay", "--frobnicate", "x")
    assert result.exit_code == 2
    assert "No such option" in result.output


def test_bad_config_is_one_line_and_exit_2(tmp_path: Path) -> None:
    cfg = tmp_path / "bad.toml"
    cfg.write_text("[fund_pool]\nmin_sources = 0\n")
    dump = tmp_path / "d.jsonl"
    dump.write_text(CUSTODY)
    result = _run("replay", str(dump), "--config", str(cfg), "--no-db")
    assert result.exit_code == 2
    assert result.output.strip() == "fundflow: fund_pool.min_sources must be >= 1, got 0"
    cfg.write_text("[fund_pool]\nmin_sourcez = 3\n")
    result = _run("config", "--check", str(cfg))
    assert result.exit_code == 2
    assert result.output.strip() == f"fundflow: {cfg}: unknown setting fund_pool.min_sourcez"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[store]\nurl = 'x'\n", "{cfg}: unknown section [store]"),
        ("[metrics]\nport = 9100\n", "{cfg}: unknown section [metrics]"),
        ("[worker]\nbatch = 5\n", "{cfg}: unknown section [worker]"),
        ("[fund_pol]\nmin_sources = 5\n", "{cfg}: unknown section [fund_pol]"),
        ("[kafka]\nbootstrap_servers = 'b:9092'\n", "{cfg}: unknown setting kafka.bootstrap_servers; known: "),
        ("[kafka]\nbatch_size = 'many'\n", "kafka.batch_size must be int, got 'many'"),
        ("[logging]\naccount_ids = 'loud'\n", "logging.account_ids must be one of hash, plain, omit, got 'loud'"),
        ("[logging]\nkeys = 'x'\n", "{cfg}: unknown setting logging.keys; known: account_ids"),
        (
            "[[webhooks]]\nname = 'a'\nurl = 'http://127.0.0.1:9/'\nsecret_file = 'missing.key'\n",
            "cannot read the secret file {dir}/missing.key (webhooks.a.secret_file): No such file or directory",
        ),
    ],
)  # fmt: skip
def test_config_check_refuses_what_no_reader_knows(tmp_path: Path, text: str, message: str) -> None:
    cfg = tmp_path / "c.toml"
    cfg.write_text(text)
    result = _run("config", "--check", str(cfg))
    assert result.exit_code == 2, result.output
    assert result.output.startswith("fundflow: " + message.format(cfg=cfg, dir=tmp_path))
    assert len(result.output.strip().splitlines()) == 1


def test_config_check_reads_the_shells_tables_from_the_file_alone(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "hook.key").write_text("k" * 32 + "\n")
    cfg = tmp_path / "c.toml"
    hook = "[[webhooks]]\nname = '{}'\nurl = 'http://127.0.0.1:9/'\nsecret_file = 'hook.key'\n"
    cfg.write_text(
        "[fund_pool]\nmin_sources = 10\n[kafka]\nbootstrap = 'b:9092'\n"
        "[logging]\naccount_ids = 'omit'\n" + hook.format("a") + hook.format("b")
    )
    monkeypatch.setenv("FUNDFLOW_KAFKA_BATCH_SIZE", "not a number")  # the worker's, not the file's
    result = _run("config", "--check", str(cfg))
    assert (result.exit_code, result.output) == (
        0, f"{cfg}: ok (23 detector sections; kafka, logging, 2 webhooks)\n",
    )  # fmt: skip
    cfg.write_text("[fund_pool]\nmin_sources = 10\n")
    result = _run("config", "--check", str(cfg))
    assert (result.exit_code, result.output) == (0, f"{cfg}: ok (23 detector sections)\n")


def test_config_defaults_print_the_commented_toml() -> None:
    result = _run("config", "--defaults")
    assert result.exit_code == 0
    assert result.output == default_toml()
    parsed = tomllib.loads(result.output)
    assert parsed["fund_pool"]["min_sources"] == 20
    assert parsed["maturity_mismatch"]["max_exposure"] == "500000"
    # Every threshold line carries a comment line above it naming its rule.
    lines = result.output.splitlines()
    for i, line in enumerate(lines):
        if "=" in line and not line.startswith("#"):
            assert lines[i - 1].startswith("#"), line
    assert load_config().raw == parsed


def test_summary_json_keys_and_identity(tmp_path: Path) -> None:
    dump = tmp_path / "d.jsonl"
    dump.write_text(CUSTODY + CUSTODY + "{not json\n" + '{"type":"wire"}\n' + "\n")
    summary = tmp_path / "s.json"
    result = _run(
        "replay",
        str(dump),
        "--no-db",
        "--alerts-out",
        str(tmp_path / "a.jsonl"),
        "--deadletter-out",
        str(tmp_path / "dl.jsonl"),
        "--summary-json",
        str(summary),
    )
    assert result.exit_code == 0, result.output
    figures = json.loads(summary.read_text())
    assert {"read", "accepted", "duplicates", "dead_letters", "alerts"} <= set(figures)
    assert figures["read"] == 4
    assert figures["accepted"] == 1
    assert figures["duplicates"] == 1
    assert figures["dead_letters"] == {"not_json": 1, "unknown_type": 1}
    assert figures["alerts"] == {}
    dead = [json.loads(x) for x in (tmp_path / "dl.jsonl").read_text().splitlines()]
    assert [(d["reason"], d["source"]) for d in dead] == [
        ("not_json", f"{dump}:3"),
        ("unknown_type", f"{dump}:4"),
    ]
    assert "records read" in result.output and "dead letters" in result.output


def test_csv_dump_with_kind(tmp_path: Path) -> None:
    dump = tmp_path / "d.csv"
    dump.write_text(
        "txn_id,ts,bank_id,platform_id,debit_account,credit_account,amount,purpose,product_id\n"
        "T1,2026-03-01T10:00:00+08:00,B,P,L1,B1,100.00,invest,\n"
        "T2,1772330400000,B,P,L1,B1,12.345,invest,\n"
    )
    summary = tmp_path / "s.json"
    result = _run(
        "replay",
        str(dump),
        "--kind",
        "custody_txn",
        "--no-db",
        "--alerts-out",
        str(tmp_path / "a"),
        "--deadletter-out",
        str(tmp_path / "dl.jsonl"),
        "--summary-json",
        str(summary),
    )
    assert result.exit_code == 0, result.output
    figures = json.loads(summary.read_text())
    assert (figures["read"], figures["accepted"], figures["dead_letters"]) == (
        2,
        1,
        {"bad_amount": 1},
    )


def test_output_into_missing_folder_is_exit_1_and_one_line(tmp_path: Path) -> None:
    dump = tmp_path / "d.jsonl"
    dump.write_text(CUSTODY)
    result = _run(
        "replay",
        str(dump),
        "--no-db",
        "--alerts-out",
        str(tmp_path / "no" / "a.jsonl"),
        "--deadletter-out",
        str(tmp_path / "dl.jsonl"),
    )
    assert result.exit_code == 1
    assert (
        result.output.strip()
        == f"fundflow: cannot write {tmp_path / 'no' / 'a.jsonl'}: no such directory {tmp_path / 'no'}"
    )
    assert not (tmp_path / "dl.jsonl").exists()


def test_what_demo_and_replay_leave_by_default_is_git_ignored(tmp_path: Path) -> None:
    # The project's .gitignore in a fresh repository: the check does not
    # depend on what this checkout tracks or holds.
    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True)
    shutil.copy(ROOT / ".gitignore", tmp_path / ".gitignore")
    demo_dir = _default("demo", "work_dir")
    db = _default("replay", "db")
    left = [
        *(f"{demo_dir}/{name}" for name in (
            "world.jsonl", "truth.json", "fundflow.db", "alerts.jsonl", "deadletter.jsonl",
            "summary.json",
        )),
        _default("replay", "deadletter_out"),
        db, f"{db}-wal", f"{db}-shm",
        f"elsewhere/{demo_dir}/world.jsonl",
        f"elsewhere/{_default('replay', 'deadletter_out')}",
    ]  # fmt: skip
    kept = ["README.md", "fundflow/demo.py", "tests/unit/test_cli.py"]
    run = subprocess.run(
        ["git", "-C", str(tmp_path), "check-ignore", "--no-index", *left, *kept],
        capture_output=True,
        text=True,
    )
    assert run.stdout.splitlines() == left
    assert (demo_dir, _default("replay", "deadletter_out"), db) == (
        "fundflow-demo",
        "fundflow.deadletter.jsonl",
        "fundflow.db",
    )
