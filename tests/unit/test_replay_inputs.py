"""``fundflow replay`` and inputs that are almost always a usage error: gzip
without a .gz name (a file, or a pipe on standard input), a .gz name
without gzip, other compressions, a CSV dump with no type column and no
--kind, and runs that refuse most or all of what they read."""

from __future__ import annotations

import bz2
import gzip
import json
import lzma
import os
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from fundflow.cli import ALL_REFUSED_EXIT, main
from fundflow.replay import REFUSED_WARNING_SHARE

KINDS = "entity, account, product, loan, reserve_report, balance, custody_txn, clearing_txn"


def _custody(n: int, start: int = 1) -> str:
    return "".join(
        f'{{"type":"custody_txn","txn_id":"T{i}","ts":"2026-03-01T10:{i % 60:02d}:00+08:00",'
        '"bank_id":"B","platform_id":"P","debit_account":"L1","credit_account":"B1",'
        '"amount":"100.00","purpose":"invest"}\n'
        for i in range(start, start + n)
    )


CSV = (
    "txn_id,ts,bank_id,platform_id,debit_account,credit_account,amount,purpose\n"
    "T1,2026-03-01T10:00:00+08:00,B,P,L1,B1,100.00,invest\n"
    "T2,2026-03-01T10:01:00+08:00,B,P,L1,B1,12.345,invest\n"
)


def _outputs(tmp: Path) -> list[str]:
    return [
        "--no-db",
        "--alerts-out", str(tmp / "alerts.jsonl"),
        "--deadletter-out", str(tmp / "dead.jsonl"),
        "--summary-json", str(tmp / "summary.json"),
    ]  # fmt: skip


def _replay(tmp: Path, *args: str, input: bytes | None = None):  # type: ignore[no-untyped-def]
    return CliRunner().invoke(main, ["replay", *args, *_outputs(tmp)], input=input)


def _figures(tmp: Path) -> tuple[int, int, int, dict[str, int]]:
    s = json.loads((tmp / "summary.json").read_text())
    return s["read"], s["accepted"], s["duplicates"], s["dead_letters"]


# -- compression told by content ------------------------------------------------------


def test_gzip_piped_into_stdin_is_read_as_gzip(tmp_path: Path) -> None:
    # A real pipe (not seekable), as `cat x.jsonl.gz | fundflow replay -` gives.
    run = subprocess.run(
        [sys.executable, "-m", "fundflow.cli", "replay", "-", *_outputs(tmp_path)],
        input=gzip.compress(_custody(5).encode()),
        capture_output=True,
        timeout=120,
        env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"},
    )
    assert run.returncode == 0, run.stderr
    assert _figures(tmp_path) == (5, 5, 0, {})
    assert b"warning" not in run.stderr


def test_a_plain_pipe_on_stdin_still_reads_every_byte(tmp_path: Path) -> None:
    run = subprocess.run(
        [sys.executable, "-m", "fundflow.cli", "replay", "-", *_outputs(tmp_path)],
        input=_custody(3).encode(),
        capture_output=True,
        timeout=120,
    )
    assert run.returncode == 0, run.stderr
    assert _figures(tmp_path) == (3, 3, 0, {})


@pytest.mark.parametrize(
    ("name", "data"),
    [
        ("dump.jsonl", gzip.compress(_custody(4).encode())),  # gzip under a plain name
        ("dump.jsonl.gz", _custody(4).encode()),  # a .gz name on plain JSON lines
        ("dump.jsonl.gz", gzip.compress(_custody(4).encode())),
        (
            "dump",
            gzip.compress(_custody(2).encode()) + gzip.compress(_custody(2, start=3).encode()),
        ),
    ],
    ids=["gzip named .jsonl", "plain named .gz", "gzip named .gz", "two gzip members"],
)
def test_a_file_is_read_by_its_content_not_its_name(tmp_path: Path, name: str, data: bytes) -> None:
    (tmp_path / name).write_bytes(data)
    result = _replay(tmp_path, str(tmp_path / name))
    assert result.exit_code == 0, result.output
    assert _figures(tmp_path) == (4, 4, 0, {})


def test_gzip_on_stdin_through_click(tmp_path: Path) -> None:
    result = _replay(tmp_path, "-", input=gzip.compress(_custody(3).encode()))
    assert result.exit_code == 0, result.output
    assert _figures(tmp_path) == (3, 3, 0, {})


def test_a_gzip_csv_without_a_gz_name_is_read(tmp_path: Path) -> None:
    (tmp_path / "d.csv").write_bytes(gzip.compress(CSV.encode()))
    result = _replay(tmp_path, str(tmp_path / "d.csv"), "--kind", "custody_txn")
    assert result.exit_code == 0, result.output
    assert _figures(tmp_path) == (2, 1, 0, {"bad_amount": 1})


@pytest.mark.parametrize(
    ("compress", "name"),
    [(bz2.compress, "bzip2"), (lzma.compress, "xz")],
)
def test_another_compression_is_one_line_before_anything_is_read(
    tmp_path: Path, compress, name: str
) -> None:
    good = tmp_path / "first.jsonl"
    good.write_text(_custody(2))
    packed = tmp_path / "second.jsonl"
    packed.write_bytes(compress(_custody(2).encode()))
    result = _replay(tmp_path, str(good), str(packed))
    assert (result.exit_code, result.output) == (
        2,
        f"fundflow: cannot read {packed}: it is {name}-compressed, and only gzip is read "
        "(decompress it first)\n",
    )
    assert sorted(p.name for p in tmp_path.iterdir()) == ["first.jsonl", "second.jsonl"]


def test_another_compression_on_stdin_is_one_line(tmp_path: Path) -> None:
    result = _replay(tmp_path, "-", input=bz2.compress(_custody(2).encode()))
    assert (result.exit_code, result.output) == (
        2,
        "fundflow: cannot read stdin: it is bzip2-compressed, and only gzip is read "
        "(decompress it first)\n",
    )
    assert list(tmp_path.iterdir()) == []


def test_to_kafka_refuses_another_compression_before_it_connects(tmp_path: Path) -> None:
    packed = tmp_path / "d.jsonl"
    packed.write_bytes(bz2.compress(_custody(2).encode()))
    result = CliRunner().invoke(main, ["replay", "--to-kafka", "127.0.0.1:1", str(packed)])
    assert (result.exit_code, result.output) == (
        2,
        f"fundflow: cannot read {packed}: it is bzip2-compressed, and only gzip is read "
        "(decompress it first)\n",
    )


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["--detectors", "typologies", "d.jsonl"],
            "--detectors does not go with --to-kafka (the workers' --config names them)",
        ),
        (
            ["--kind", "clearing_txn", "d.jsonl"],
            "--kind with --to-kafka reads CSV dumps (a JSON line names its type)",
        ),
        (
            ["--map", "ts=time", "t.csv"],
            "--map and --const need --kind (the record kind of every row)",
        ),
        (
            ["--kind", "clearing_txn", "--map", "ts=when", "t.csv"],
            "t.csv: no column 'when' (mapped to ts) in its header",
        ),
    ],
    ids=["detectors", "kind on JSON lines", "map without kind", "a mapped column missing"],
)
def test_to_kafka_checks_its_csv_layout_before_it_connects(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, args: list[str], message: str
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "d.jsonl").write_text(_custody(1))
    (tmp_path / "t.csv").write_text("id,time\nX1,2026-03-01 10:00:00\n")
    result = CliRunner().invoke(main, ["replay", "--to-kafka", "127.0.0.1:1", *args])
    assert (result.exit_code, result.output) == (2, f"fundflow: {message}\n")


# -- a CSV dump with no type column ---------------------------------------------------


@pytest.mark.parametrize("name", ["d.csv", "d.csv.gz", "D.CSV"])
def test_a_csv_without_type_column_or_kind_is_one_line_and_exit_2(tmp_path: Path, name) -> None:
    path = tmp_path / name
    path.write_bytes(gzip.compress(CSV.encode()) if name.endswith(".gz") else CSV.encode())
    result = _replay(tmp_path, str(path))
    assert (result.exit_code, result.output) == (
        2,
        f"fundflow: {path} has no type column: give the record kind of its rows with --kind "
        f"({KINDS})\n",
    )
    assert [p.name for p in tmp_path.iterdir()] == [name]  # nothing written


def test_a_csv_with_a_type_column_or_with_kind_or_empty_is_replayed(tmp_path: Path) -> None:
    typed = tmp_path / "typed.csv"
    typed.write_text(
        "\ufefftype,txn_id,ts,bank_id,platform_id,debit_account,credit_account,amount,purpose\n"
        "custody_txn,T1,2026-03-01T10:00:00+08:00,B,P,L1,B1,100.00,invest\n"
        "custody_txn,T2,2026-03-01T10:01:00+08:00,B,P,L1,B1,12.345,invest\n"
    )
    result = _replay(tmp_path, str(typed))
    assert result.exit_code == 0, result.output
    assert _figures(tmp_path) == (2, 1, 0, {"bad_amount": 1})
    empty = tmp_path / "empty.csv"
    empty.write_text("")
    result = _replay(tmp_path, str(empty))
    assert result.exit_code == 0, result.output
    assert _figures(tmp_path) == (0, 0, 0, {})


# -- runs that refuse most or all of what they read -----------------------------------


def test_the_warning_share_is_more_than_half() -> None:
    assert REFUSED_WARNING_SHARE == 0.5


def test_half_refused_is_no_warning(tmp_path: Path) -> None:
    dump = tmp_path / "d.jsonl"
    dump.write_text(_custody(2) + "{not json\n" + '{"type":"wire"}\n')
    result = _replay(tmp_path, str(dump))
    assert result.exit_code == 0, result.output
    assert _figures(tmp_path) == (4, 2, 0, {"not_json": 1, "unknown_type": 1})
    assert "warning" not in result.output


def test_duplicates_are_not_refused(tmp_path: Path) -> None:
    dump = tmp_path / "d.jsonl"
    dump.write_text(_custody(1) * 5)
    result = _replay(tmp_path, str(dump))
    assert result.exit_code == 0, result.output
    assert _figures(tmp_path) == (5, 1, 4, {})
    assert "warning" not in result.output


def test_more_than_half_refused_warns_in_one_line_naming_the_reasons(tmp_path: Path) -> None:
    dump = tmp_path / "d.jsonl"
    dump.write_text(
        _custody(1)
        + '{"type":"custody_txn"}\n' * 3
        + "not json\n" * 4
        + '{"txn_id":"X"}\n' * 2
        + "[1]\n"
        + _custody(1, start=2).replace('"100.00"', '"1.234"')
    )
    result = _replay(tmp_path, str(dump))
    assert result.exit_code == 0, result.output
    assert _figures(tmp_path) == (
        12,
        1,
        0,
        {"bad_amount": 1, "missing_field": 3, "not_json": 4, "not_object": 1, "unknown_type": 2},
    )
    assert result.output.splitlines()[-1] == (
        "fundflow: warning: 11 of the 12 records read were refused (not_json 4, missing_field 3, "
        "unknown_type 2, 2 more reasons): the dump is not JSON lines (a CSV dump needs a .csv "
        "name; of the compressions only gzip is read); each refused record, with its reason, is "
        f"in {tmp_path / 'dead.jsonl'}"
    )


def test_a_replay_that_refuses_everything_warns_and_exits_3(tmp_path: Path) -> None:
    # JSON lines without a type: every record unknown_type.
    dump = tmp_path / "d.jsonl"
    dump.write_text(_custody(3).replace('"type":"custody_txn",', ""))
    result = _replay(tmp_path, str(dump))
    assert ALL_REFUSED_EXIT == 3
    assert result.exit_code == 3, result.output
    assert _figures(tmp_path) == (3, 0, 0, {"unknown_type": 3})
    assert result.output.splitlines()[-1] == (
        "fundflow: warning: 3 of the 3 records read were refused (unknown_type 3): the records "
        "name no known type (a dump without a type field or column needs --kind); each refused "
        f"record, with its reason, is in {tmp_path / 'dead.jsonl'}"
    )
    # The outputs are written all the same: the dead letters say what went wrong.
    dead = [json.loads(x) for x in (tmp_path / "dead.jsonl").read_text().splitlines()]
    assert [(d["reason"], d["source"]) for d in dead] == [
        ("unknown_type", f"{dump}:{n}") for n in (1, 2, 3)
    ]
    assert (tmp_path / "alerts.jsonl").read_text() == ""
    # With the kind given, the same dump is accepted whole.
    result = _replay(tmp_path, str(dump), "--kind", "custody_txn")
    assert result.exit_code == 0, result.output
    assert _figures(tmp_path) == (3, 3, 0, {})


def test_an_empty_dump_is_no_failure(tmp_path: Path) -> None:
    dump = tmp_path / "d.jsonl"
    dump.write_text("\n\n")
    result = _replay(tmp_path, str(dump))
    assert result.exit_code == 0, result.output
    assert _figures(tmp_path) == (0, 0, 0, {})
    assert "warning" not in result.output


@pytest.mark.parametrize(
    ("lines", "hint"),
    [
        ('{"type":"custody_txn","txn_id":"T1"}\n', "required fields are missing (field and "
         "column names are the wire format's; a CSV dump in another layout needs --kind with "
         "--map)"),
        (_custody(1).replace("2026-03-01T10:01:00+08:00", "yesterday"),
         "times are neither ISO-8601 nor epoch milliseconds"),
        (_custody(1).replace('"100.00"', '"1e3"'), "amounts are not yuan with at most 2 decimals"),
    ],
    ids=["missing_field", "bad_time", "bad_amount"],
)  # fmt: skip
def test_the_hint_follows_the_commonest_reason(tmp_path: Path, lines: str, hint: str) -> None:
    dump = tmp_path / "d.jsonl"
    dump.write_text(lines)
    result = _replay(tmp_path, str(dump))
    assert result.exit_code == 3, result.output
    assert result.output.splitlines()[-1].split("): ", 1)[1] == (
        f"{hint}; each refused record, with its reason, is in {tmp_path / 'dead.jsonl'}"
    )


def test_help_and_readme_state_the_share_and_the_exit_code() -> None:
    result = CliRunner().invoke(main, ["replay", "--help"])
    text = " ".join(result.output.split())
    assert "When more than half of the records read were refused, one warning line follows" in text
    assert "3 when records were read and every one was refused" in text
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text(encoding="utf-8")
    (row,) = [line for line in readme.splitlines() if line.startswith("| `fundflow replay PATH")]
    assert "when more than half of the records read were refused, one more line, a warning" in row
    assert "3 when records were read and every one was refused" in row
