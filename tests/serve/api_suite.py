"""The API contract suite of ``fundflow serve``, run against each store.

A test module imports every ``test_*`` from here and supplies the fixture
``db``: the path or URL of an empty, writable alert store
(``tests/unit/test_serve_api.py``: a SQLite file;
``tests/integration/test_serve_pg.py``: a fresh PostgreSQL database),
importing it as ``serve.api_suite`` (tests/conftest.py puts ``tests/`` on
the path). The fixture ``served`` fills the store with :data:`ALERTS` and
three users, one per role, and gives a :class:`Served` to drive the app
through Starlette's TestClient.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import msgspec
import pytest
from starlette.testclient import TestClient

from fundflow.schemas.records import Alert
from fundflow.serve.api import OPS
from fundflow.serve.app import create_app
from fundflow.serve.auth import (
    PRINCIPAL_TTL,
    PrincipalCache,
    hash_password,
    new_api_token,
    token_hash,
)
from fundflow.serve.state import ServeSettings, ServeState
from fundflow.store import open_sink, open_store

PASSWORD = "correct horse battery"
# Hashed once: argon2 is slow on purpose.
_HASH = hash_password(PASSWORD)
USERS = {"root": "admin", "ana": "analyst", "vic": "viewer"}
# Text that would break a query or a page if it were not kept as data.
HOSTILE = [
    "' OR '1'='1' --",
    '"; DROP TABLE alerts; --',
    "<script>alert(1)</script>",
    "<img src=x onerror=alert(1)>",
    "%_\\ 资金池 ' \" ; --",
    "bidi \u202e override, zero width \u200b, 𝓊𝓃𝒾𝒸ℴ𝒹ℯ",
]


def make_alert(alert_id: str, **overrides: Any) -> Alert:
    fields: dict[str, Any] = {
        "alert_id": alert_id,
        "detector": "fund_pool",
        "severity": "high",
        "subject_id": "P1",
        "accounts": ("ACC-1", "ACC-2"),
        "first_ts": "2026-03-01T10:00:00+08:00",
        "last_ts": "2026-03-01T12:00:00+08:00",
        "amount": "150000.00",
        "summary": "Investor money pooled in the platform's own account.",
        "evidence": {
            "sample_txn_ids": ["T1", "T2"],
            "pool_accounts": ["ACC-1"],
            "thresholds": {"window_days": 7},
        },
        "detector_version": "1.0",
        "revision": 1,
    }
    fields.update(overrides)
    return Alert(**fields)


ALERTS = [
    make_alert("A1"),
    make_alert("A2", severity="critical", detector="reserve_misuse", subject_id="I004",
               accounts=("ACC-I004-R1",), amount="11143302.66", last_ts="2026-03-05T12:00:00+08:00",
               summary="备付金被挪用 <b>bold</b> ' OR 1=1"),
    make_alert("A3", severity="low", subject_id="P2", amount="29100.00",
               last_ts="2026-03-02T12:00:00+08:00"),
    make_alert("A4", severity="medium", detector="maturity_mismatch", subject_id="P6",
               amount="974900.00", last_ts="2026-03-03T12:00:00+08:00"),
]  # fmt: skip


@dataclass
class Served:
    """The app over a filled store, and how to reach it as each user."""

    db: str
    app: Any

    def client(self, **kwargs: Any) -> TestClient:
        return TestClient(self.app, **kwargs)

    def login(self, name: str) -> tuple[TestClient, str]:
        """A client signed in as ``name`` and its CSRF token."""
        c = self.client()
        r = c.post("/api/v1/session", json={"name": name, "password": PASSWORD})
        assert r.status_code == 200, r.text
        return c, r.json()["csrf_token"]

    def token(self, name: str) -> str:
        secret = new_api_token()
        with open_store(self.db) as st:
            st.add_token(token_hash(secret), name, "api", None)
        return secret

    def bearer(self, name: str) -> TestClient:
        return self.client(headers={"Authorization": f"Bearer {self.token(name)}"})


def _fill(db: str) -> None:
    with open_sink(db) as sink:
        sink.upsert(ALERTS)
    with open_store(db) as st:
        for name, role in USERS.items():
            st.add_user(name, role, _HASH)


@pytest.fixture
def served(db: str) -> Iterator[Served]:
    _fill(db)
    settings = ServeSettings(db=db)
    state = ServeState(settings)
    yield Served(db, create_app(settings, state))
    state.close()


def _post(c: TestClient, path: str, body: Any, csrf: str | None = None) -> Any:
    headers = {"X-CSRF-Token": csrf} if csrf else {}
    return c.post("/api/v1" + path, json=body, headers=headers)


def _concrete(path: str) -> str:
    return (
        path.replace("{alert_id}", "A1").replace("{case_id}", "1")
        .replace("{notice_id}", "1").replace("{hook}", "h").replace("{name}", "vic")
    )  # fmt: skip


def _call(c: TestClient, method: str, path: str, headers: dict[str, str] | None = None) -> Any:
    body = None if method in ("GET", "DELETE") else {}
    return c.request(method, "/api/v1" + _concrete(path), json=body, headers=headers or {})


# -- sign-in, roles, CSRF ------------------------------------------------------------

SIGNED = [op for op in OPS if op.role is not None]


@pytest.mark.parametrize("op", SIGNED, ids=lambda op: f"{op.method} {op.path}")
def test_unauthenticated_is_refused(served: Served, op: Any) -> None:
    r = _call(served.client(), op.method, op.path)
    assert r.status_code == 401
    assert r.json()["error"] == "unauthenticated"


@pytest.mark.parametrize(
    "op",
    [op for op in OPS if op.role in ("analyst", "admin")],
    ids=lambda op: f"{op.method} {op.path}",
)
def test_viewer_cannot_act(served: Served, op: Any) -> None:
    c = served.bearer("vic")
    r = _call(c, op.method, op.path)
    assert r.status_code == 403, r.text
    assert r.json()["error"] == "forbidden"


@pytest.mark.parametrize(
    "op", [op for op in OPS if op.role == "admin"], ids=lambda op: f"{op.method} {op.path}"
)
def test_analyst_cannot_manage_users_or_webhooks(served: Served, op: Any) -> None:
    r = _call(served.bearer("ana"), op.method, op.path)
    assert r.status_code == 403


def test_sign_in_sets_a_strict_http_only_cookie(served: Served) -> None:
    c = served.client()
    r = c.post("/api/v1/session", json={"name": "ana", "password": PASSWORD})
    assert r.status_code == 200
    cookie = r.headers["set-cookie"]
    assert cookie.startswith("fundflow_session=")
    low = cookie.lower()
    assert "httponly" in low and "samesite=strict" in low and "path=/" in low
    assert "secure" not in low  # plain HTTP here; --cert turns it on
    me = c.get("/api/v1/me").json()
    assert me == {
        "name": "ana",
        "role": "analyst",
        "via": "session",
        "csrf_token": r.json()["csrf_token"],
    }


def test_secure_cookie_under_tls(db: str) -> None:
    _fill(db)
    settings = ServeSettings(db=db, secure_cookie=True)
    state = ServeState(settings)
    c = TestClient(create_app(settings, state), base_url="https://testserver")
    r = c.post("/api/v1/session", json={"name": "ana", "password": PASSWORD})
    assert "secure" in r.headers["set-cookie"].lower()
    state.close()


@pytest.mark.parametrize(
    "name, password", [("ana", "wrong password"), ("nobody", PASSWORD), ("", PASSWORD)]
)
def test_bad_credentials(served: Served, name: str, password: str) -> None:
    r = served.client().post("/api/v1/session", json={"name": name, "password": password})
    assert r.status_code in (400, 401)
    assert "set-cookie" not in r.headers


def test_repeated_failures_are_throttled(served: Served) -> None:
    c = served.client()
    codes = [
        c.post("/api/v1/session", json={"name": "ana", "password": "nope-nope"}).status_code
        for _ in range(6)
    ]
    assert codes == [401] * 5 + [429]
    r = c.post("/api/v1/session", json={"name": "ana", "password": PASSWORD})
    assert r.status_code == 429 and int(r.headers["retry-after"]) > 0


def test_disabled_user_cannot_sign_in_and_loses_sessions(served: Served) -> None:
    c, _ = served.login("vic")
    with open_store(served.db) as st:
        st.disable_user("vic")
    assert c.get("/api/v1/me").status_code == 401
    r = served.client().post("/api/v1/session", json={"name": "vic", "password": PASSWORD})
    assert r.status_code == 401


def test_csrf_is_required_with_the_session_cookie(served: Served) -> None:
    c, csrf = served.login("ana")
    assert _post(c, "/alerts/A1/ack", {}).json()["error"] == "csrf"
    assert _post(c, "/alerts/A1/ack", {}, "x" * 64).status_code == 403
    assert _post(c, "/alerts/A1/ack", {}, csrf[:-1]).status_code == 403
    assert c.get("/api/v1/alerts/A1").json()["status"] == "open"
    r = _post(c, "/alerts/A1/ack", {}, csrf)
    assert r.status_code == 200 and r.json()["actor"] == "ana"


def test_bearer_token_needs_no_csrf_and_a_bad_one_is_refused(served: Served) -> None:
    r = _post(served.bearer("ana"), "/alerts/A1/ack", {"note": "via API"})
    assert r.status_code == 200 and r.json()["actor"] == "ana"
    bad = served.client(headers={"Authorization": "Bearer ffk_not-a-token"})
    assert bad.get("/api/v1/me").status_code == 401
    basic = served.client(headers={"Authorization": "Basic YTpi"})
    assert basic.get("/api/v1/me").status_code == 401


def test_expired_token_is_refused(served: Served) -> None:
    secret = new_api_token()
    with open_store(served.db) as st:
        st.add_token(token_hash(secret), "ana", "api", datetime(2020, 1, 1, tzinfo=UTC))
    c = served.client(headers={"Authorization": f"Bearer {secret}"})
    assert c.get("/api/v1/me").status_code == 401


def test_a_session_token_is_not_an_api_token(served: Served) -> None:
    c, _ = served.login("ana")
    session = c.cookies["fundflow_session"]
    other = served.client(headers={"Authorization": f"Bearer {session}"})
    assert other.get("/api/v1/me").status_code == 401


def test_sign_out_revokes_the_session(served: Served) -> None:
    c, csrf = served.login("vic")
    token = c.cookies["fundflow_session"]
    assert c.delete("/api/v1/session", headers={"X-CSRF-Token": csrf}).status_code == 200
    again = served.client(cookies={"fundflow_session": token})
    assert again.get("/api/v1/me").status_code == 401


class _Clock:
    """A monotonic clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clocked(db: str) -> Iterator[tuple[Served, _Clock]]:
    """``served`` whose principal cache runs on a clock the test moves."""
    _fill(db)
    clock = _Clock()
    settings = ServeSettings(db=db)
    state = ServeState(settings, principals=PrincipalCache(clock=clock))
    yield Served(db, create_app(settings, state)), clock
    state.close()


def test_a_user_disabled_elsewhere_is_refused_within_the_principal_ttl(
    clocked: tuple[Served, _Clock],
) -> None:
    served, clock = clocked
    c = served.bearer("vic")
    assert c.get("/api/v1/me").status_code == 200
    with open_store(served.db) as st:  # as `fundflow users disable` does
        st.disable_user("vic")
        st.revoke_tokens("vic")
    clock.now += PRINCIPAL_TTL - 0.5
    assert c.get("/api/v1/me").status_code == 200  # believed from the last check
    clock.now += 0.5
    assert c.get("/api/v1/me").status_code == 401


def test_a_role_changed_elsewhere_takes_effect_within_the_principal_ttl(
    clocked: tuple[Served, _Clock],
) -> None:
    served, clock = clocked
    c = served.bearer("vic")
    assert c.get("/api/v1/users").status_code == 403
    with open_store(served.db) as st:  # as `fundflow users role` does
        st.set_role("vic", "admin")
    clock.now += PRINCIPAL_TTL - 0.5
    assert c.get("/api/v1/users").status_code == 403
    clock.now += 0.5
    assert c.get("/api/v1/users").status_code == 200
    assert c.get("/api/v1/me").json()["role"] == "admin"


def test_role_changes_and_disabling_through_the_api_take_effect_at_once(
    clocked: tuple[Served, _Clock],
) -> None:
    served, _clock = clocked
    root, ana = served.bearer("root"), served.bearer("ana")
    assert ana.get("/api/v1/me").json()["role"] == "analyst"
    assert root.post("/api/v1/users/ana/role", json={"role": "viewer"}).status_code == 200
    r = ana.post("/api/v1/alerts/A1/ack", json={})
    assert r.status_code == 403 and r.json()["error"] == "forbidden"
    assert root.post("/api/v1/users/ana/disable", json={}).status_code == 200
    assert ana.get("/api/v1/me").status_code == 401


def test_anonymous_viewer_only_when_asked_and_only_from_loopback(db: str) -> None:
    _fill(db)
    for flag, client, expected in [
        (False, ("127.0.0.1", 5000), 401),
        (True, ("127.0.0.1", 5000), 200),
        (True, ("::1", 5000), 200),
        (True, ("192.0.2.7", 5000), 401),
    ]:
        settings = ServeSettings(db=db, anonymous_loopback_viewer=flag)
        state = ServeState(settings)
        c = TestClient(create_app(settings, state), client=client)
        assert c.get("/api/v1/alerts").status_code == expected, (flag, client)
        if expected == 200:
            assert c.get("/api/v1/me").json()["role"] == "viewer"
            assert c.post("/api/v1/alerts/A1/ack", json={}).status_code == 403
        state.close()


# -- the queue ------------------------------------------------------------------------


def test_queue_lists_alerts_with_counts(served: Served) -> None:
    body = served.bearer("vic").get("/api/v1/alerts").json()
    assert [r["alert"]["alert_id"] for r in body["items"]] == ["A2", "A4", "A3", "A1"]
    assert body["counts"] == {"low": 1, "medium": 1, "high": 1, "critical": 1}
    assert body["next_cursor"] is None
    first = body["items"][0]
    assert first["status"] == "open" and first["assignee"] is None and first["cases"] == []
    assert msgspec.convert(first["alert"], Alert) == ALERTS[1]


@pytest.mark.parametrize(
    "query, ids",
    [
        ("severity=critical", ["A2"]),
        ("severity=low,medium", ["A4", "A3"]),
        ("severity=low&severity=critical", ["A2", "A3"]),
        ("detector=maturity_mismatch", ["A4"]),
        ("subject=P2", ["A3"]),
        ("status=open", ["A2", "A4", "A3", "A1"]),
        ("status=closed", []),
        ("q=备付金", ["A2"]),
        ("q=acc-i004", ["A2"]),
        ("since=2026-03-03T00:00:00%2B08:00", ["A2", "A4"]),
        ("until=2026-03-03T00:00:00Z", ["A3", "A1"]),
        ("assignee=", ["A2", "A4", "A3", "A1"]),
        ("order=amount", ["A3", "A1", "A4", "A2"]),
        ("order=-severity", ["A2", "A1", "A4", "A3"]),
        ("order=subject", ["A2", "A1", "A3", "A4"]),
    ],
)
def test_queue_filters_and_orders(served: Served, query: str, ids: list[str]) -> None:
    r = served.bearer("vic").get(f"/api/v1/alerts?{query}")
    assert r.status_code == 200, r.text
    assert [x["alert"]["alert_id"] for x in r.json()["items"]] == ids


def test_queue_pages_with_cursors(served: Served) -> None:
    c = served.bearer("vic")
    seen: list[str] = []
    cursor = None
    for _ in range(4):
        url = "/api/v1/alerts?limit=1&order=amount" + (f"&cursor={cursor}" if cursor else "")
        body = c.get(url).json()
        seen += [x["alert"]["alert_id"] for x in body["items"]]
        cursor = body["next_cursor"]
    assert seen == ["A3", "A1", "A4", "A2"]
    assert cursor is None


@pytest.mark.parametrize(
    "query, reason",
    [
        ("colour=red", "unknown_parameter"),
        ("severity=severe", "bad_parameter"),
        ("status=done", "bad_parameter"),
        ("detector=nope", "bad_parameter"),
        ("limit=0", "bad_parameter"),
        ("limit=501", "bad_parameter"),
        ("limit=ten", "bad_parameter"),
        ("order=summary", "bad_parameter"),
        ("since=yesterday", "bad_parameter"),
        ("since=2026-03-01T00:00:00", "bad_parameter"),
        ("since=2026-03-05T00:00:00Z&until=2026-03-01T00:00:00Z", "bad_parameter"),
        ("case=x", "bad_parameter"),
        ("subject=a&subject=b", "bad_parameter"),
        ("cursor=not-a-cursor", "bad_cursor"),
        ("q=" + "x" * 201, "bad_parameter"),
    ],
)
def test_queue_refuses_bad_parameters(served: Served, query: str, reason: str) -> None:
    r = served.bearer("vic").get(f"/api/v1/alerts?{query}")
    assert r.status_code == 400, r.text
    assert r.json()["error"] == reason and r.json()["detail"]


def test_a_cursor_of_another_order_is_refused(served: Served) -> None:
    c = served.bearer("vic")
    cursor = c.get("/api/v1/alerts?limit=1&order=amount").json()["next_cursor"]
    r = c.get(f"/api/v1/alerts?limit=1&order=-amount&cursor={cursor}")
    assert r.status_code == 400 and r.json()["error"] == "bad_cursor"


@pytest.mark.parametrize(
    "param",
    [
        "subject",
        "q",
        "assignee",
        "detector",
        "severity",
        "status",
        "case",
        "order",
        "cursor",
        "since",
    ],
)
@pytest.mark.parametrize("payload", [*HOSTILE[:2], "nul \x00"])
def test_injection_in_every_filter_is_data(served: Served, param: str, payload: str) -> None:
    r = served.bearer("vic").get("/api/v1/alerts", params={param: payload})
    assert r.status_code in (200, 400), r.text
    if r.status_code == 200:
        assert r.json()["items"] == []
    with open_store(served.db) as st:
        assert st.count() == len(ALERTS)


def test_text_search_matches_hostile_text_literally(served: Served) -> None:
    c = served.bearer("vic")
    assert [
        x["alert"]["alert_id"]
        for x in c.get("/api/v1/alerts", params={"q": "' OR 1=1"}).json()["items"]
    ] == ["A2"]
    assert [
        x["alert"]["alert_id"]
        for x in c.get("/api/v1/alerts", params={"q": "<b>bold</b>"}).json()["items"]
    ] == ["A2"]
    assert c.get("/api/v1/alerts", params={"q": "%"}).json()["items"] == []


# -- one alert ------------------------------------------------------------------------


def test_alert_detail(served: Served) -> None:
    body = served.bearer("vic").get("/api/v1/alerts/A2").json()
    assert set(body) == {"alert", "status", "assignee", "cases", "revisions", "events"}
    assert body["alert"]["summary"] == ALERTS[1].summary
    assert [a["revision"] for a in body["revisions"]] == [1]
    assert body["events"] == []


def test_unknown_alert_is_404(served: Served) -> None:
    c = served.bearer("ana")
    for r in (
        c.get("/api/v1/alerts/NOPE"),
        c.get("/api/v1/alerts/NOPE/graph"),
        c.post("/api/v1/alerts/NOPE/ack", json={}),
        c.post("/api/v1/alerts/NOPE/comments", json={"text": "x"}),
        c.post("/api/v1/alerts/NOPE/assign", json={"assignee": None}),
    ):
        assert r.status_code == 404, r.text
        assert r.json()["error"] == "not_found"


def test_graph_from_the_alert_alone(served: Served) -> None:
    g = served.bearer("vic").get("/api/v1/alerts/A1/graph").json()
    assert g["graph"]["source"] == "alert" and "no dumps" in g["graph"]["note"]
    assert json.loads(g["graph"]["evidence_txn_ids"]) == ["T1", "T2"]
    ids = sorted(n["id"] for n in g["nodes"])
    assert ids == ["account:ACC-1", "account:ACC-2", "entity:P1"]
    assert g["edges"] == []


def test_alert_lifecycle_through_the_api(served: Served) -> None:
    c, csrf = served.login("ana")
    assert _post(c, "/alerts/A1/ack", {"note": "looking"}, csrf).json()["action"] == "acknowledged"
    r = _post(c, "/alerts/A1/ack", {}, csrf)
    assert r.status_code == 409 and r.json()["error"] == "conflict"
    assert _post(c, "/alerts/A1/assign", {"assignee": "vic"}, csrf).json()["action"] == "assigned"
    assert (
        _post(c, "/alerts/A1/assign", {"assignee": "ghost"}, csrf).json()["error"] == "unknown_user"
    )
    r = _post(c, "/alerts/A1/comments", {"text": "custody ledger checked"}, csrf)
    assert r.status_code == 201 and r.json()["action"] == "commented"
    assert _post(c, "/alerts/A1/close", {"note": "done"}, csrf).json()["action"] == "closed"
    assert _post(c, "/alerts/A1/close", {}, csrf).status_code == 409
    assert _post(c, "/alerts/A1/reopen", {}, csrf).json()["action"] == "reopened"
    body = c.get("/api/v1/alerts/A1").json()
    assert body["status"] == "open" and body["assignee"] == "vic"
    assert [(e["action"], e["actor"]) for e in body["events"]] == [
        ("acknowledged", "ana"), ("assigned", "ana"), ("commented", "ana"),
        ("closed", "ana"), ("reopened", "ana"),
    ]  # fmt: skip
    assert [
        x["alert"]["alert_id"] for x in c.get("/api/v1/alerts?assignee=vic").json()["items"]
    ] == ["A1"]


@pytest.mark.parametrize(
    "headers, body, status, reason",
    [
        ({"Content-Type": "text/plain"}, b"{}", 415, "unsupported_media_type"),
        (
            {"Content-Type": "application/x-www-form-urlencoded"},
            b"note=x",
            415,
            "unsupported_media_type",
        ),
        ({"Content-Type": "application/json"}, b"{not json", 400, "bad_json"),
        ({"Content-Type": "application/json"}, b"[1, 2]", 400, "bad_body"),
        ({"Content-Type": "application/json"}, b'{"note": 5}', 400, "bad_field"),
        ({"Content-Type": "application/json"}, b'{"nope": 1}', 400, "unknown_field"),
        (
            {"Content-Type": "application/json"},
            b'{"note": "' + b"x" * 70_000 + b'"}',
            413,
            "body_too_large",
        ),
    ],
)
def test_bad_bodies(
    served: Served, headers: dict[str, str], body: bytes, status: int, reason: str
) -> None:
    r = served.bearer("ana").post("/api/v1/alerts/A1/ack", content=body, headers=headers)
    assert r.status_code == status, r.text
    assert r.json()["error"] == reason


# Every free-text field a user can write, and how to read it back.
TEXT_FIELDS = [
    ("alert ack note", "/alerts/A1/ack", "note"),
    ("alert close note", "/alerts/A2/close", "note"),
    ("alert comment", "/alerts/A3/comments", "text"),
    ("case title", "/cases", "title"),
    ("case note", "/cases", "note"),
    ("case comment", "/cases/{case}/comments", "text"),
    ("case status note", "/cases/{case}/status", "note"),
]


@pytest.mark.parametrize("what, path, field", TEXT_FIELDS, ids=[t[0] for t in TEXT_FIELDS])
@pytest.mark.parametrize("payload", HOSTILE, ids=range(len(HOSTILE)))
def test_hostile_text_comes_back_as_data(
    served: Served, what: str, path: str, field: str, payload: str
) -> None:
    c = served.bearer("ana")
    case = c.post("/api/v1/cases", json={"title": "holder", "alert_ids": ["A4"]}).json()["case_id"]
    body: dict[str, Any] = {field: payload}
    if path == "/cases" and field != "title":
        body["title"] = "t"
    if path.endswith("/status"):
        body["status"] = "closed"
    r = c.post("/api/v1" + path.replace("{case}", str(case)), json=body)
    assert r.status_code in (200, 201), r.text
    if path.startswith("/alerts/"):
        alert_id = path.split("/")[2]
        events = c.get(f"/api/v1/alerts/{alert_id}").json()["events"]
        assert events[-1]["note"] == payload.strip()
    elif path == "/cases":
        made = c.get(f"/api/v1/cases/{r.json()['case_id']}").json()
        if field == "title":
            assert made["case"]["title"] == payload.strip()
        else:
            assert payload.strip() in [e["note"] for e in made["events"]]
    else:
        events = c.get(f"/api/v1/cases/{case}").json()["events"]
        assert events[-1]["note"] == payload.strip()
    with open_store(served.db) as st:
        assert st.count() == len(ALERTS)


@pytest.mark.parametrize("what, path, field", TEXT_FIELDS, ids=[t[0] for t in TEXT_FIELDS])
def test_nul_in_text_is_refused(served: Served, what: str, path: str, field: str) -> None:
    c = served.bearer("ana")
    case = c.post("/api/v1/cases", json={"title": "holder"}).json()["case_id"]
    body: dict[str, Any] = (
        {"title": "t", field: "a \x00 b"} if path == "/cases" else {field: "a \x00 b"}
    )
    if path.endswith("/status"):
        body["status"] = "closed"
    r = c.post("/api/v1" + path.replace("{case}", str(case)), json=body)
    assert r.status_code == 400 and r.json()["error"] == "bad_field"
    assert "NUL" in r.json()["detail"]


def test_hostile_names_are_refused_or_data(served: Served) -> None:
    c = served.bearer("root")
    for payload in HOSTILE:
        assert (
            c.post(
                "/api/v1/users", json={"name": payload, "role": "viewer", "password": PASSWORD}
            ).status_code
            == 400
        )
        assert (
            served.client()
            .post("/api/v1/session", json={"name": payload, "password": PASSWORD})
            .status_code
            == 401
        )
        assert (
            c.post("/api/v1/alerts/A1/assign", json={"assignee": payload}).json()["error"]
            == "unknown_user"
        )
        assert c.get(f"/api/v1/alerts/{payload}").status_code == 404


# -- cases ------------------------------------------------------------------------------


def test_case_lifecycle(served: Served) -> None:
    c, csrf = served.login("ana")
    r = _post(
        c, "/cases", {"title": "P1 pool", "alert_ids": ["A1", "A3"], "note": "same group"}, csrf
    )
    assert r.status_code == 201
    case = r.json()
    assert (
        case["alert_ids"] == ["A1", "A3"]
        and case["status"] == "open"
        and case["created_by"] == "ana"
    )
    cid = case["case_id"]
    assert r.headers["location"] == f"/api/v1/cases/{cid}"
    assert _post(c, f"/cases/{cid}/alerts", {"alert_ids": ["A4"]}, csrf).json()["alert_ids"] == [
        "A1",
        "A3",
        "A4",
    ]
    assert _post(c, f"/cases/{cid}/assign", {"owner": "vic"}, csrf).json()["owner"] == "vic"
    assert (
        _post(c, f"/cases/{cid}/comments", {"text": "asked the custodian"}, csrf).status_code == 201
    )
    assert _post(c, f"/cases/{cid}/status", {"status": "closed"}, csrf).json()["status"] == "closed"
    assert _post(c, f"/cases/{cid}/status", {"status": "closed"}, csrf).status_code == 409
    assert _post(c, f"/cases/{cid}/status", {"status": "shut"}, csrf).status_code == 400
    detail = c.get(f"/api/v1/cases/{cid}").json()
    assert [a["alert"]["alert_id"] for a in detail["alerts"]] == ["A1", "A3", "A4"]
    assert all(e["actor"] == "ana" for e in detail["events"])
    assert c.get("/api/v1/alerts/A1").json()["cases"] == [
        {"case_id": cid, "title": "P1 pool", "status": "closed"}
    ]
    assert [
        x["alert"]["alert_id"]
        for x in c.get(f"/api/v1/alerts?case={cid}&order=amount").json()["items"]
    ] == ["A3", "A1", "A4"]
    listed = c.get("/api/v1/cases?status=closed").json()
    assert [x["case_id"] for x in listed["items"]] == [cid]
    assert c.get("/api/v1/cases?status=open").json()["items"] == []


def test_case_errors(served: Served) -> None:
    c = served.bearer("ana")
    assert c.get("/api/v1/cases/999").status_code == 404
    assert c.get("/api/v1/cases/abc").status_code == 404
    assert c.post("/api/v1/cases/999/comments", json={"text": "x"}).status_code == 404
    assert c.post("/api/v1/cases", json={"title": "x", "alert_ids": ["NOPE"]}).status_code == 404
    assert c.post("/api/v1/cases", json={"title": ""}).status_code == 400
    assert c.post("/api/v1/cases", json={"title": "x", "alert_ids": "A1"}).status_code == 400
    assert (
        c.post("/api/v1/cases", json={"title": "x", "owner": "ghost"}).json()["error"]
        == "unknown_user"
    )
    assert c.get("/api/v1/cases?status=maybe").status_code == 400
    assert c.get("/api/v1/cases?page=2").json()["error"] == "unknown_parameter"


# -- export, webhooks, users, the rest ------------------------------------------------


def test_export_jsonl_and_csv(served: Served) -> None:
    c = served.bearer("vic")
    r = c.get("/api/v1/export?format=jsonl&severity=critical,low")
    assert r.status_code == 200 and r.headers["content-type"].startswith("application/x-ndjson")
    got = [msgspec.json.decode(line, type=Alert) for line in r.content.splitlines()]
    assert got == [ALERTS[2], ALERTS[1]]  # oldest last_ts first
    r = c.get("/api/v1/export?format=csv")
    lines = r.text.splitlines()
    assert lines[0].split(",")[0] == "alert_id" and lines[0].endswith(",status") and len(lines) == 5
    assert c.get("/api/v1/export?format=xml").status_code == 400
    assert c.get("/api/v1/export?order=amount").status_code == 400


def test_webhook_deliveries_and_retry(served: Served) -> None:
    now = datetime.now(UTC)
    with open_store(served.db) as st:
        due = st.due_deliveries(["ops"], now)
        assert len(due) == len(ALERTS)
        st.mark_failed(due[0].notice_id, "ops", "HTTP 500 from hook", None, dead=True)
        dead_id = due[0].notice_id
    c = served.bearer("root")
    body = c.get("/api/v1/webhooks/deliveries?state=dead").json()
    assert [
        (d["notice_id"], d["hook"], d["state"], d["attempts"], d["last_error"])
        for d in body["items"]
    ] == [(dead_id, "ops", "dead", 1, "HTTP 500 from hook")]
    assert body["items"][0]["alert"]["alert_id"] == due[0].alert.alert_id
    assert c.post(f"/api/v1/webhooks/deliveries/{dead_id}/ops/retry", json={}).status_code == 200
    assert c.post(f"/api/v1/webhooks/deliveries/{dead_id}/ops/retry", json={}).status_code == 409
    assert c.post("/api/v1/webhooks/deliveries/x/ops/retry", json={}).status_code == 404
    assert c.get("/api/v1/webhooks/deliveries?state=lost").status_code == 400


def test_users_api(served: Served) -> None:
    c = served.bearer("root")
    assert [u["name"] for u in c.get("/api/v1/users").json()["items"]] == ["ana", "root", "vic"]
    assert all("password_hash" not in u for u in c.get("/api/v1/users").json()["items"])
    r = c.post("/api/v1/users", json={"name": "wang", "role": "analyst", "password": PASSWORD})
    assert r.status_code == 201 and r.json()["role"] == "analyst"
    assert (
        c.post(
            "/api/v1/users", json={"name": "wang", "role": "analyst", "password": PASSWORD}
        ).status_code
        == 409
    )
    assert (
        c.post(
            "/api/v1/users", json={"name": "li", "role": "boss", "password": PASSWORD}
        ).status_code
        == 400
    )
    assert (
        c.post(
            "/api/v1/users", json={"name": "li", "role": "viewer", "password": "short"}
        ).status_code
        == 400
    )
    assert c.post("/api/v1/users/wang/role", json={"role": "viewer"}).json()["role"] == "viewer"
    assert c.post("/api/v1/users/ghost/role", json={"role": "viewer"}).status_code == 404
    assert c.post("/api/v1/users/wang/disable", json={}).json()["disabled"] is True
    r = served.client().post("/api/v1/session", json={"name": "wang", "password": PASSWORD})
    assert r.status_code == 401


def test_security_headers_everywhere(served: Served) -> None:
    c = served.client()
    for r in (c.get("/"), c.get("/api/v1/alerts"), c.get("/static/js/main.js"), c.get("/nope")):
        csp = r.headers["content-security-policy"]
        assert "default-src 'self'" in csp and "frame-ancestors 'none'" in csp
        assert "unsafe-inline" not in csp
        assert r.headers["x-content-type-options"] == "nosniff"
        assert r.headers["referrer-policy"] == "no-referrer"


def test_unknown_route_and_method_are_json(served: Served) -> None:
    c = served.bearer("vic")
    r = c.get("/api/v1/nothing")
    assert r.status_code == 404 and r.json()["error"] == "not_found"
    r = c.put("/api/v1/alerts", json={})
    assert r.status_code == 405 and r.json()["error"] == "method_not_allowed"


def test_deep_links_open_the_page_at_the_alert_or_case(served: Served) -> None:
    # Grafana's alert tables link to /alerts/<id>; unsigned, it only names
    # the page's route, which asks for sign-in.
    c = served.client()
    r = c.get("/alerts/23ff50343be7290d38b12ffc", follow_redirects=False)
    assert (r.status_code, r.headers["location"]) == (302, "/#/alert/23ff50343be7290d38b12ffc")
    r = c.get("/cases/7", follow_redirects=False)
    assert (r.status_code, r.headers["location"]) == (302, "/#/case/7")
    for bad in ("/alerts/%3Cscript%3E", "/alerts/a%2F..%2Fb", "/alerts/" + "a" * 65):
        r = c.get(bad, follow_redirects=False)
        assert r.status_code == 404 and "location" not in r.headers, bad


def test_page_and_assets_are_served(served: Served) -> None:
    c = served.client()
    r = c.get("/")
    assert r.status_code == 200 and "/static/js/main.js" in r.text and "<script>" not in r.text
    assert (
        c.get("/static/js/views.js")
        .headers["content-type"]
        .startswith(("text/javascript", "application/javascript"))
    )
