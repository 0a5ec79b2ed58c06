"""``fundflow replay`` when its outputs cannot be written: a full disk (a
real one: the file-size limit of the process, and /dev/full), an unwritable
folder. Each ends with one line on stderr and exit code 1, and no output
file appears under its final name unless it is complete.

The replay runs in a child process so that the limits apply to it alone. An
unwritable folder is made with chmod; under root, which file modes do not
stop, the child runs without the capabilities that override them
(``setpriv`` drops CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH and CAP_FOWNER from
its bounding set), so the folder's mode applies to it as to anyone.
"""

from __future__ import annotations

import json
import os
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest


def _cli(
    args: list[str], preexec: Callable[[], None] | None = None, prefix: tuple[str, ...] = ()
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*prefix, sys.executable, "-m", "fundflow.cli", *args],
        capture_output=True,
        text=True,
        timeout=300,
        preexec_fn=preexec,
        env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"},
    )


def _outputs(out: Path) -> list[str]:
    return [
        "--alerts-out", str(out / "alerts.jsonl"),
        "--deadletter-out", str(out / "dead.jsonl"),
        "--summary-json", str(out / "summary.json"),
    ]  # fmt: skip


@pytest.fixture(scope="module")
def shared() -> Iterator[Path]:
    """A folder holding a simulated world and, in ``reference/``, the outputs
    of its replay with nothing in the way."""
    folder = Path(tempfile.mkdtemp(prefix="fundflow-faults-"))
    try:
        run = _cli(["simulate", "--out", str(folder / "world"), "--seed", "1"])
        assert run.returncode == 0, run.stderr
        (folder / "reference").mkdir()
        world = str(folder / "world" / "world.jsonl")
        run = _cli(["replay", world, "--no-db", *_outputs(folder / "reference")])
        assert run.returncode == 0, run.stderr
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _world(shared: Path) -> str:
    return str(shared / "world" / "world.jsonl")


def _file_size_limit(limit: int) -> Callable[[], None]:
    def apply() -> None:
        # SIGXFSZ would kill the process; ignored, a write past the limit
        # fails with EFBIG, as on a full disk.
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    return apply


def _one_line_error(run: subprocess.CompletedProcess[str], message: str) -> None:
    assert run.returncode == 1, run.stderr
    assert run.stderr.splitlines() == [f"fundflow: {message}"]


def test_the_world_writes_more_than_the_limits_below(shared: Path) -> None:
    ref = shared / "reference"
    assert (ref / "alerts.jsonl").stat().st_size > 40_000
    assert (ref / "dead.jsonl").stat().st_size > 16_000
    truth = json.loads((shared / "world" / "truth.json").read_text())
    assert json.loads((ref / "summary.json").read_text())["read"] == truth["records"]


def test_disk_full_leaves_no_output_and_says_so_in_one_line(shared: Path, tmp_path: Path) -> None:
    run = _cli(
        ["replay", _world(shared), "--no-db", *_outputs(tmp_path)],
        preexec=_file_size_limit(16_000),
    )
    _one_line_error(run, "could not write the results: File too large")
    assert os.listdir(tmp_path) == []  # no output, no temporary file left


def test_disk_full_on_the_store_leaves_no_jsonl_output(shared: Path, tmp_path: Path) -> None:
    db = tmp_path / "fundflow.db"
    run = _cli(
        ["replay", _world(shared), "--db", str(db), *_outputs(tmp_path)],
        # Room for the new store's schema (its write-ahead log holds about
        # 160 kB after the migration), not for this world's alerts (about 630 kB).
        preexec=_file_size_limit(300_000),
    )
    _one_line_error(
        run, f"could not write the results: cannot write alert store {db}: disk I/O error"
    )
    # The store is a database of upserted alerts, not a file moved into place:
    # what it holds is whole committed batches, which a rerun upserts again.
    assert os.listdir(tmp_path) == ["fundflow.db"]


def test_dev_full_as_an_output_fails_in_one_line(shared: Path, tmp_path: Path) -> None:
    for flag in ("--alerts-out", "--deadletter-out", "--summary-json"):
        args = [
            "replay", _world(shared), "--no-db",
            "--alerts-out", str(tmp_path / "alerts.jsonl"),
            "--deadletter-out", str(tmp_path / "dead.jsonl"),
            flag, "/dev/full",
        ]  # fmt: skip
        run = _cli(args)
        _one_line_error(run, "could not write the results: No space left on device")
        # Outputs are moved into place one by one (alerts, dead letters,
        # summary): one moved before the failure is complete.
        left = sorted(os.listdir(tmp_path))
        assert (
            left
            == {
                "--alerts-out": [],
                "--deadletter-out": ["alerts.jsonl"],
                "--summary-json": ["alerts.jsonl", "dead.jsonl"],
            }[flag]
        )
        for name in left:
            assert (tmp_path / name).read_bytes() == (shared / "reference" / name).read_bytes()
            (tmp_path / name).unlink()
    # /dev/full is still the device it was.
    assert os.stat("/dev/full").st_rdev == os.makedev(1, 7)


def test_dev_null_is_written_in_place(shared: Path, tmp_path: Path) -> None:
    args = [
        "replay", _world(shared), "--no-db",
        "--alerts-out", "/dev/null", "--deadletter-out", "/dev/null",
        "--summary-json", str(tmp_path / "summary.json"),
    ]  # fmt: skip
    run = _cli(args)
    assert run.returncode == 0, run.stderr
    assert os.stat("/dev/null").st_rdev == os.makedev(1, 3)
    assert os.listdir(tmp_path) == ["summary.json"]
    assert not [n for n in os.listdir("/dev") if n.startswith(".null.")]


def _unwritable(folder: Path) -> tuple[str, ...]:
    """Makes ``folder`` unwritable for the child; returns the command prefix
    that runs the child without root's power over file modes."""
    folder.chmod(0o555)
    if os.geteuid() != 0:
        return ()
    return ("setpriv", "--bounding-set=-dac_override,-dac_read_search,-fowner")


def test_an_unwritable_folder_is_refused_before_reading(shared: Path) -> None:
    out = Path(tempfile.mkdtemp(dir=shared))
    try:
        prefix = _unwritable(out)
        run = _cli(["replay", _world(shared), "--no-db", *_outputs(out)], prefix=prefix)
        _one_line_error(run, f"cannot write {out / 'alerts.jsonl'}: Permission denied")
        assert os.listdir(out) == []
    finally:
        out.chmod(0o755)
        shutil.rmtree(out, ignore_errors=True)


def test_an_unwritable_store_folder_is_one_line(shared: Path) -> None:
    out = Path(tempfile.mkdtemp(dir=shared))
    try:
        prefix = _unwritable(out)
        args = ["replay", _world(shared), "--db", str(out / "f.db"), "--alerts-out", "-"]
        run = _cli([*args, "--deadletter-out", "/dev/null"], prefix=prefix)
        _one_line_error(
            run, f"cannot open alert store {out / 'f.db'}: unable to open database file"
        )
        assert run.stdout == ""
        assert os.listdir(out) == []
    finally:
        out.chmod(0o755)
        shutil.rmtree(out, ignore_errors=True)
