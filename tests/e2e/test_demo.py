"""``fundflow demo`` prints what README.md says it prints ("What the demo
prints"), line for line; only the speed line differs from run to run."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from click.testing import CliRunner

from fundflow.cli import main

README = Path(__file__).resolve().parents[2] / "README.md"
RATE = re.compile(r"[\d,]+ records/s over \d+\.\d\d s")


def _readme_block() -> list[str]:
    text = README.read_text(encoding="utf-8")
    start = text.index("## What the demo prints\n\n```\n") + len("## What the demo prints\n\n```\n")
    return text[start : text.index("```\n", start)].splitlines()


@pytest.mark.slow
def test_the_demo_prints_what_the_readme_shows(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(main, ["demo"])
    assert result.exit_code == 0, result.output
    printed = result.output.splitlines()
    expected = _readme_block()
    assert [RATE.fullmatch(line) is not None for line in printed] == [
        RATE.fullmatch(line) is not None for line in expected
    ]
    assert [line for line in printed if not RATE.fullmatch(line)] == [
        line for line in expected if not RATE.fullmatch(line)
    ]
