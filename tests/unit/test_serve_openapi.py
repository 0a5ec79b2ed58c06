"""docs/openapi.json is the document the app serves, and it names every
route of the app (and nothing else)."""

from __future__ import annotations

import json
import re
from pathlib import Path

from starlette.routing import Mount, Route
from starlette.testclient import TestClient

from fundflow.serve.app import create_app
from fundflow.serve.openapi import PREFIX, openapi_document, render
from fundflow.serve.state import ServeSettings, ServeState

DOC = Path(__file__).resolve().parents[2] / "docs" / "openapi.json"


def _app_operations(app) -> set[tuple[str, str]]:  # type: ignore[no-untyped-def]
    found: set[tuple[str, str]] = set()
    for route in app.routes:
        if isinstance(route, Mount) and route.path == PREFIX:
            for sub in route.routes:
                assert isinstance(sub, Route)
                for method in sub.methods or ():
                    if method != "HEAD":
                        found.add((method.lower(), PREFIX + sub.path))
    return found


def test_checked_in_document_is_current() -> None:
    assert DOC.read_text(encoding="utf-8") == render(), (
        "docs/openapi.json is stale: python -m fundflow.serve.openapi > docs/openapi.json"
    )


def test_served_document_equals_the_checked_in_one(tmp_path: Path) -> None:
    from fundflow.store import open_sink

    db = str(tmp_path / "a.db")
    with open_sink(db):
        pass
    settings = ServeSettings(db=db)
    state = ServeState(settings)
    with TestClient(create_app(settings, state)) as c:
        r = c.get("/api/v1/openapi.json")
    assert r.status_code == 200
    assert r.json() == json.loads(DOC.read_text(encoding="utf-8"))


def test_every_route_is_documented_and_every_documented_route_exists(tmp_path: Path) -> None:
    settings = ServeSettings(db=str(tmp_path / "unused.db"))
    app = create_app(settings, ServeState(settings))
    documented = {
        (method, path) for path, ops in openapi_document()["paths"].items() for method in ops
    }
    assert _app_operations(app) == documented
    assert len(documented) == 27


def test_path_parameters_are_declared() -> None:
    for path, ops in openapi_document()["paths"].items():
        names = set(re.findall(r"{(\w+)}", path))
        for op in ops.values():
            declared = {p["name"] for p in op.get("parameters", []) if p["in"] == "path"}
            assert declared == names, path


def test_roles_and_errors_are_stated() -> None:
    paths = openapi_document()["paths"]
    ack = paths["/api/v1/alerts/{alert_id}/ack"]["post"]
    assert ack["x-role"] == "analyst"
    assert {"400", "401", "403", "404", "409", "413", "415"} <= set(ack["responses"])
    assert paths["/api/v1/session"]["post"]["security"] == []
    assert paths["/api/v1/webhooks/deliveries"]["get"]["x-role"] == "admin"
