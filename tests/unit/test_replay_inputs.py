"""``fundflow replay`` and inputs that are almost always a usage error: gzip
without a .gz name (a file, or a pipe on standard input), a .gz name
without gzip, other compressions, a CSV dump with no type column and no
--kind."""

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

from fundflow.cli import main

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
