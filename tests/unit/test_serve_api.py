"""The API contract suite (tests/serve/api_suite.py) over a SQLite store."""

from __future__ import annotations

from pathlib import Path

import pytest
from serve.api_suite import *  # noqa: F403 - the suite's tests run here


@pytest.fixture
def db(tmp_path: Path) -> str:
    return str(tmp_path / "alerts.db")
