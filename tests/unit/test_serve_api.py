"""The API contract suite (tests/serve/api_suite.py) over a SQLite store."""

from __future__ import annotations

from pathlib import Path

import pytest
from serve.api_suite import *  # noqa: F403 - the suite's tests run here


@pytest.fixture
def db(tmp_path: Path) -> str:
    return str(tmp_path / "alerts.db")


def test_an_unreadable_store_is_503(tmp_path: Path) -> None:
    from starlette.testclient import TestClient

    from fundflow.serve.app import create_app
    from fundflow.serve.state import ServeSettings, ServeState

    settings = ServeSettings(db=str(tmp_path / "gone.db"))
    c = TestClient(create_app(settings, ServeState(settings)))
    r = c.get("/api/v1/alerts", headers={"Authorization": "Bearer ffk_x"})
    assert r.status_code == 503 and r.json()["error"] == "store_unavailable"
    assert "gone.db" in r.json()["detail"]


def test_a_graph_from_dumps_that_are_gone_is_422(served, tmp_path: Path) -> None:  # noqa: F405
    from starlette.testclient import TestClient

    from fundflow.serve.app import create_app
    from fundflow.serve.state import ServeSettings, ServeState

    settings = ServeSettings(db=served.db, data=(str(tmp_path / "moved.jsonl"),))
    c = TestClient(create_app(settings, ServeState(settings)))
    r = c.get("/api/v1/alerts/A1/graph", headers={"Authorization": f"Bearer {served.token('vic')}"})
    assert r.status_code == 422 and r.json()["error"] == "graph_unavailable"
    assert "moved.jsonl" in r.json()["detail"]
