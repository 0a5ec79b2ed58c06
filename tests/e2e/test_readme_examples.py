"""The account-graph examples of README.md run as written against the demo's
output: `fundflow demo` in a fresh folder, then each command of the block
after the ``<!-- graph-examples -->`` marker, each in its own process. Each
exits 0 and writes its file in the format its name says."""

from __future__ import annotations

import json
import shlex
import struct
import subprocess
import sys
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[2] / "README.md"
MARKER = "<!-- graph-examples -->"


def graph_examples(text: str) -> list[list[str]]:
    """The commands of the shell block right after :data:`MARKER`, one a
    line, comments dropped."""
    after = text.split(MARKER, 1)[1].lstrip("\n")
    assert after.startswith("```sh\n"), "the marker must sit right above a ```sh block"
    block = after[len("```sh\n") :].split("\n```", 1)[0]
    return [shlex.split(line, comments=True) for line in block.splitlines() if line.strip()]


def _fundflow(args: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    assert args[0] == "fundflow", args
    return subprocess.run(
        [sys.executable, "-m", "fundflow.cli", *args[1:]],
        cwd=cwd, capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip


def _check_output(path: Path) -> None:
    raw = path.read_bytes()
    if path.suffix == ".png":
        assert raw[:8] == b"\x89PNG\r\n\x1a\n"
        width, height = struct.unpack(">II", raw[16:24])
        assert width <= 1600 and height <= 1000
    elif path.suffix == ".graphml":
        assert raw.startswith(b"<?xml") and b"<graphml" in raw
    else:
        assert json.loads(raw)["nodes"]


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("readme")
    result = _fundflow(["fundflow", "demo"], folder)
    assert result.returncode == 0, result.stderr
    assert (folder / "fundflow-demo" / "world.jsonl").exists()
    return folder


def test_the_block_holds_the_graph_examples() -> None:
    examples = graph_examples(README.read_text(encoding="utf-8"))
    assert [args[:2] for args in examples] == [["fundflow", "graph"]] * 4
    assert [args[args.index("--out") + 1] for args in examples] == [
        "i004.png", "p004-pool.png", "p004.graphml", "c00169.json",
    ]  # fmt: skip


@pytest.mark.parametrize("index", range(len(graph_examples(README.read_text(encoding="utf-8")))))
def test_readme_graph_example_runs_as_written(demo: Path, index: int) -> None:
    args = graph_examples(README.read_text(encoding="utf-8"))[index]
    out = demo / args[args.index("--out") + 1]
    result = _fundflow(args, demo)
    assert result.returncode == 0, result.stderr
    _check_output(out)
    assert f"{args[args.index('--out') + 1]}: " in result.stderr
