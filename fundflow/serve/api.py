"""The triage API under ``/api/v1``: one :class:`Op` per method and path.

:data:`OPS` is the single description of the API: :mod:`fundflow.serve.app`
builds the routes from it and :mod:`fundflow.serve.openapi` the OpenAPI
document, so the two cannot drift apart. Each op names the least role it
needs (``None``: no sign-in), its query parameters (any other is 400) and
its body fields (any other is 400). :func:`endpoint` wraps a handler with
sign-in (401), role (403) and CSRF checks (403 ``csrf``: a state-changing
request made with the session cookie must carry the session's token in
``X-CSRF-Token``); every action passes the signed-in user's name to the
store as ``by``, so each audit event names who did it.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from fundflow import store as store_mod
from fundflow.alerts_cli import CSV_HEADER, csv_row
from fundflow.detectors.engine import DETECTORS, TYPOLOGIES
from fundflow.schemas.records import SEVERITIES

from .auth import (
    CSRF_HEADER,
    ROLES,
    SESSION_COOKIE,
    Principal,
    check_password_rules,
    csrf_for,
    csrf_matches,
    hash_password,
    new_session_token,
    role_allows,
    token_hash,
    verify_password,
)
from .http import ApiError, Query, id_list, json_response, read_json, text_field
from .state import ServeState
from .views import plain, row_json, user_json

Handler = Callable[[ServeState, Request, Principal | None], Awaitable[Response]]

DETECTOR_NAMES: tuple[str, ...] = (*DETECTORS, *TYPOLOGIES)
ORDERS: tuple[str, ...] = (
    "-last_ts", "last_ts", "-severity", "severity", "-amount", "amount", "detector", "subject",
)  # fmt: skip
CASE_STATUSES = ("open", "closed")
DELIVERY_STATES = ("pending", "delivered", "dead")
MAX_NOTE = 4000
MAX_TITLE = 200
_SAFE = frozenset({"GET", "HEAD", "OPTIONS"})


@dataclass(frozen=True)
class Param:
    """A query parameter: its OpenAPI schema and description."""

    name: str
    schema: dict[str, Any]
    description: str


@dataclass(frozen=True)
class Op:
    """One operation of the API. ``path`` is relative to ``/api/v1``;
    ``body`` maps each accepted field to its JSON schema (``required``
    lists those that must be there); ``ok`` is the success status;
    ``errors`` the refusals it may answer besides the common ones."""

    method: str
    path: str
    handler: Handler
    role: str | None
    summary: str
    query: tuple[Param, ...] = ()
    body: dict[str, dict[str, Any]] | None = None
    required: tuple[str, ...] = ()
    ok: int = 200
    errors: tuple[int, ...] = ()
    response: str = "Object"
    produces: str = "application/json"

    @property
    def operation_id(self) -> str:
        return self.handler.__name__.strip("_")


def endpoint(op: Op) -> Callable[[Request], Awaitable[Response]]:
    """The Starlette endpoint of ``op``: checks sign-in, role and CSRF,
    then calls its handler."""

    async def run(request: Request) -> Response:
        state: ServeState = request.app.state.serve
        principal = None
        if op.role is not None:
            principal = await state.principal(request)
            if principal is None:
                raise ApiError(401, "unauthenticated", "sign in first (POST /api/v1/session)")
            if (
                op.method not in _SAFE
                and principal.via == "session"
                and not csrf_matches(principal.csrf_hash, request.headers.get(CSRF_HEADER))
            ):
                raise ApiError(403, "csrf", "a missing or wrong X-CSRF-Token for this session")
            if not role_allows(principal.role, op.role):
                raise ApiError(403, "forbidden", f"{op.method} {op.path} needs the {op.role} role")
        return await op.handler(state, request, principal)

    return run


def _by(principal: Principal | None) -> str:
    assert principal is not None
    return principal.name


def _path(request: Request, name: str) -> str:
    return str(request.path_params[name])


def _case_id(request: Request) -> int:
    raw = _path(request, "case_id")
    if not raw.isdigit() or int(raw) >= 2**63:
        raise ApiError(404, "not_found", f"no case {raw}")
    return int(raw)


# -- sign-in ---------------------------------------------------------------


async def create_session(state: ServeState, request: Request, _p: Principal | None) -> Response:
    data = await read_json(request, ("name", "password"), ("name", "password"))
    name = text_field(data, "name", required=True, max_len=64) or ""
    password = text_field(data, "password", required=True, max_len=1024) or ""
    client = request.client.host if request.client is not None else ""
    wait = state.throttle.retry_after(client, name)
    if wait:
        raise ApiError(
            429, "too_many_attempts", f"too many failed sign-ins: try again in {wait} s",
            {"Retry-After": str(wait)},
        )  # fmt: skip

    def check(store: Any) -> Any:
        user = store.get_user(name)
        ok = verify_password(user.password_hash if user is not None else None, password)
        return user if ok and not user.disabled else None

    user = await state.run(check)
    if user is None:
        state.throttle.failed(client, name)
        raise ApiError(401, "bad_credentials", "unknown name, wrong password or disabled user")
    state.throttle.succeeded(client, name)
    token = new_session_token()
    csrf = csrf_for(token)
    max_age = int(state.settings.session_hours * 3600)
    expires = datetime.now(UTC) + timedelta(seconds=max_age)
    await state.run(
        lambda s: s.add_token(
            token_hash(token), user.name, "session", expires, csrf_hash=token_hash(csrf)
        )
    )
    response = json_response({"name": user.name, "role": user.role, "csrf_token": csrf})
    response.set_cookie(
        SESSION_COOKIE, token, max_age=max_age, path="/", httponly=True,
        samesite="strict", secure=state.settings.secure_cookie,
    )  # fmt: skip
    return response


async def delete_session(state: ServeState, request: Request, p: Principal | None) -> Response:
    assert p is not None
    if p.token_hash is not None and p.via == "session":
        await state.run(lambda s: s.revoke_token(p.token_hash))
    response = json_response({"signed_out": p.via == "session"})
    response.delete_cookie(
        SESSION_COOKIE, path="/", httponly=True, samesite="strict",
        secure=state.settings.secure_cookie,
    )  # fmt: skip
    return response


async def get_me(state: ServeState, request: Request, p: Principal | None) -> Response:
    assert p is not None
    body: dict[str, Any] = {"name": p.name, "role": p.role, "via": p.via}
    if p.via == "session":
        body["csrf_token"] = csrf_for(request.cookies[SESSION_COOKIE])
    return json_response(body)


async def get_health(state: ServeState, request: Request, _p: Principal | None) -> Response:
    Query(request, ())
    return json_response({"status": "ok"})


# -- alerts ----------------------------------------------------------------

FILTER_PARAMS = (
    Param("detector", {"type": "string"}, "Detector name(s), comma-separated or repeated."),
    Param("severity", {"type": "string"}, "Severity (low, medium, high, critical), comma-separated or repeated."),
    Param("status", {"type": "string"}, "Status (open, acknowledged, closed), comma-separated or repeated."),
    Param("subject", {"type": "string"}, "Subject id (platform, institution), exact."),
    Param("since", {"type": "string", "format": "date-time"}, "Alerts whose last_ts is at or after this time (ISO 8601 with offset)."),
    Param("until", {"type": "string", "format": "date-time"}, "Alerts whose last_ts is before this time (ISO 8601 with offset)."),
    Param("q", {"type": "string", "maxLength": 200}, "Text found in the summary, subject, alert id or accounts (as data)."),
    Param("assignee", {"type": "string"}, "User the alert is assigned to; empty: unassigned alerts."),
    Param("case", {"type": "integer", "minimum": 1}, "Case id the alert belongs to."),
)  # fmt: skip
PAGE_PARAMS = (
    Param("order", {"type": "string", "enum": list(ORDERS)}, "Sort order; '-' is descending. Default -last_ts."),
    Param("cursor", {"type": "string"}, "next_cursor of the previous page."),
    Param("limit", {"type": "integer", "minimum": 1, "maximum": 500}, "Page size, default 50."),
)  # fmt: skip


def alert_filter(q: Query) -> Any:
    """The ``AlertFilter`` of the filter parameters (each checked)."""
    text = q.one("q")
    if text is not None and len(text) > 200:
        raise ApiError(400, "bad_parameter", "q is limited to 200 characters")
    since, until = q.timestamp("since"), q.timestamp("until")
    if since is not None and until is not None and since >= until:
        raise ApiError(400, "bad_parameter", "since must be before until")
    return store_mod.AlertFilter(
        detector=q.choices("detector", DETECTOR_NAMES),
        severity=q.choices("severity", SEVERITIES),
        status=q.choices("status", store_mod.STATUSES),
        subject=q.one("subject"),
        since=since,
        until=until,
        text=text,
        assignee=q.one("assignee", empty_ok=True),
        case_id=q.integer("case", 1, 2**63 - 1),
    )


async def list_alerts(state: ServeState, request: Request, _p: Principal | None) -> Response:
    q = Query(request, [p.name for p in (*FILTER_PARAMS, *PAGE_PARAMS)])
    filters = alert_filter(q)
    order = q.one("order") or "-last_ts"
    if order not in ORDERS:
        raise ApiError(400, "bad_parameter", f"order={order!r} is none of: {', '.join(ORDERS)}")
    cursor = q.one("cursor")
    limit = q.integer("limit", 1, 500) or 50

    def read(store: Any) -> tuple[Any, dict[str, int]]:
        page = store.page(filters, order=order, cursor=cursor, limit=limit)
        return page, store.severity_counts(filters)

    page, counts = await state.run(read)
    return json_response(
        {
            "items": [row_json(r) for r in page.items],
            "next_cursor": page.next_cursor,
            "counts": {s: int(counts.get(s, 0)) for s in SEVERITIES},
        }
    )


async def _row_or_404(state: ServeState, alert_id: str) -> Any:
    row = await state.run(lambda s: s.row(alert_id))
    if row is None:
        raise ApiError(404, "not_found", f"no alert {alert_id}")
    return row


async def get_alert(state: ServeState, request: Request, _p: Principal | None) -> Response:
    Query(request, ())
    alert_id = _path(request, "alert_id")

    def read(store: Any) -> dict[str, Any] | None:
        row = store.row(alert_id)
        if row is None:
            return None
        cases = [store.get_case(c) for c in row.case_ids]
        return {
            **row_json(row),
            "cases": [
                {"case_id": c.case_id, "title": c.title, "status": c.status}
                for c in cases
                if c is not None
            ],
            "revisions": [plain(a) for a in store.revisions(alert_id)],
            "events": [plain(e) for e in store.events(alert_id)],
        }

    body = await state.run(read)
    if body is None:
        raise ApiError(404, "not_found", f"no alert {alert_id}")
    return json_response(body)


async def get_alert_graph(state: ServeState, request: Request, _p: Principal | None) -> Response:
    from fundflow.graph import Centre, GraphError, alert_graph, build_graph, node_link
    from fundflow.replay import ReplayError

    Query(request, ())
    row = await _row_or_404(state, _path(request, "alert_id"))
    alert = row.alert
    key = (alert.alert_id, alert.revision)
    cached = state.cached_graph(key)
    if cached is not None:
        return json_response(cached)

    def build() -> dict[str, Any]:
        data = list(state.settings.data)
        if not data:
            return node_link(alert_graph(alert, state.config))
        try:
            graph = build_graph(data, Centre(alert=alert), hops=1, config=state.config)
        except (GraphError, ReplayError) as e:
            raise ApiError(422, "graph_unavailable", str(e)) from None
        graph.attrs |= {"source": "dumps", "note": "; ".join(graph.stats["notes"])}
        return node_link(graph)

    from starlette.concurrency import run_in_threadpool

    body = await run_in_threadpool(build)
    state.keep_graph(key, body)
    return json_response(body)


async def _note_action(
    state: ServeState, request: Request, p: Principal | None, method: str
) -> Response:
    alert_id = _path(request, "alert_id")
    data = await read_json(request, ("note",))
    note = text_field(data, "note", max_len=MAX_NOTE)
    event = await state.run(lambda s: getattr(s, method)(alert_id, _by(p), note=note))
    return json_response(plain(event))


async def ack_alert(state: ServeState, request: Request, p: Principal | None) -> Response:
    return await _note_action(state, request, p, "ack")


async def close_alert(state: ServeState, request: Request, p: Principal | None) -> Response:
    return await _note_action(state, request, p, "close_alert")


async def reopen_alert(state: ServeState, request: Request, p: Principal | None) -> Response:
    return await _note_action(state, request, p, "reopen")


async def _known_user(state: ServeState, name: str | None, field: str) -> None:
    if name is None:
        return
    user = await state.run(lambda s: s.get_user(name))
    if user is None or user.disabled:
        raise ApiError(400, "unknown_user", f"{field} {name!r} is no enabled user")


async def assign_alert(state: ServeState, request: Request, p: Principal | None) -> Response:
    alert_id = _path(request, "alert_id")
    data = await read_json(request, ("assignee",), ("assignee",))
    assignee = text_field(data, "assignee", max_len=64)
    await _known_user(state, assignee, "assignee")
    event = await state.run(lambda s: s.assign(alert_id, _by(p), assignee))
    return json_response(plain(event))


async def comment_alert(state: ServeState, request: Request, p: Principal | None) -> Response:
    alert_id = _path(request, "alert_id")
    data = await read_json(request, ("text",), ("text",))
    text = text_field(data, "text", required=True, max_len=MAX_NOTE)
    event = await state.run(lambda s: s.comment(alert_id, _by(p), text))
    return json_response(plain(event), 201)


async def export_alerts(state: ServeState, request: Request, _p: Principal | None) -> Response:
    q = Query(request, ["format", *(p.name for p in FILTER_PARAMS)])
    fmt = q.one("format") or "jsonl"
    if fmt not in ("jsonl", "csv"):
        raise ApiError(400, "bad_parameter", "format must be jsonl or csv")
    filters = alert_filter(q)
    # The first page is read before the response starts, so a bad filter or
    # an unreadable store is still an error status, not a cut stream.
    first = await state.run(lambda s: s.page(filters, order="last_ts", limit=500))

    def rows() -> Iterator[bytes]:
        import msgspec

        page = first
        if fmt == "csv":
            yield _csv_line(CSV_HEADER)
        while True:
            for r in page.items:
                if fmt == "csv":
                    yield _csv_line(csv_row(r.alert, r.status))
                else:
                    yield msgspec.json.encode(r.alert) + b"\n"
            if page.next_cursor is None:
                return
            page = state.store().page(filters, order="last_ts", cursor=page.next_cursor, limit=500)

    media = "text/csv; charset=utf-8" if fmt == "csv" else "application/x-ndjson"
    name = f"fundflow-alerts.{fmt}"
    return StreamingResponse(
        rows(), media_type=media, headers={"Content-Disposition": f'attachment; filename="{name}"'}
    )


def _csv_line(values: Any) -> bytes:
    buf = io.StringIO()
    csv.writer(buf, lineterminator="\n").writerow(values)
    return buf.getvalue().encode("utf-8")


# -- cases -----------------------------------------------------------------


async def list_cases(state: ServeState, request: Request, _p: Principal | None) -> Response:
    q = Query(request, ("status", "owner", "cursor", "limit"))
    status = q.one("status")
    if status is not None and status not in CASE_STATUSES:
        raise ApiError(400, "bad_parameter", "status must be open or closed")
    owner, cursor = q.one("owner"), q.one("cursor")
    limit = q.integer("limit", 1, 500) or 50
    page = await state.run(
        lambda s: s.list_cases(status=status, owner=owner, cursor=cursor, limit=limit)
    )
    return json_response({"items": [plain(c) for c in page.items], "next_cursor": page.next_cursor})


async def create_case(state: ServeState, request: Request, p: Principal | None) -> Response:
    data = await read_json(request, ("title", "alert_ids", "owner", "note"), ("title",))
    title = text_field(data, "title", required=True, max_len=MAX_TITLE) or ""
    alert_ids = id_list(data, "alert_ids")
    owner = text_field(data, "owner", max_len=64)
    note = text_field(data, "note", max_len=MAX_NOTE)
    await _known_user(state, owner, "owner")
    case = await state.run(
        lambda s: s.create_case(title, _by(p), alert_ids=alert_ids, owner=owner, note=note)
    )
    return json_response(plain(case), 201, {"Location": f"/api/v1/cases/{case.case_id}"})


async def get_case(state: ServeState, request: Request, _p: Principal | None) -> Response:
    Query(request, ())
    case_id = _case_id(request)

    def read(store: Any) -> dict[str, Any] | None:
        case = store.get_case(case_id)
        if case is None:
            return None
        rows = [store.row(a) for a in case.alert_ids]
        return {
            "case": plain(case),
            "alerts": [row_json(r) for r in rows if r is not None],
            "events": [plain(e) for e in store.case_events(case_id)],
        }

    body = await state.run(read)
    if body is None:
        raise ApiError(404, "not_found", f"no case {case_id}")
    return json_response(body)


async def _case_after(state: ServeState, case_id: int) -> Response:
    case = await state.run(lambda s: s.get_case(case_id))
    if case is None:
        raise ApiError(404, "not_found", f"no case {case_id}")
    return json_response(plain(case))


async def add_case_alerts(state: ServeState, request: Request, p: Principal | None) -> Response:
    case_id = _case_id(request)
    data = await read_json(request, ("alert_ids",), ("alert_ids",))
    alert_ids = id_list(data, "alert_ids")
    if not alert_ids:
        raise ApiError(400, "bad_field", "alert_ids must name at least one alert")
    await state.run(lambda s: s.add_to_case(case_id, alert_ids, _by(p)))
    return await _case_after(state, case_id)


async def set_case_status(state: ServeState, request: Request, p: Principal | None) -> Response:
    case_id = _case_id(request)
    data = await read_json(request, ("status", "note"), ("status",))
    status = text_field(data, "status", required=True, max_len=10)
    if status not in CASE_STATUSES:
        raise ApiError(400, "bad_field", "status must be open or closed")
    note = text_field(data, "note", max_len=MAX_NOTE)
    await state.run(lambda s: s.set_case_status(case_id, status, _by(p), note=note))
    return await _case_after(state, case_id)


async def assign_case(state: ServeState, request: Request, p: Principal | None) -> Response:
    case_id = _case_id(request)
    data = await read_json(request, ("owner",), ("owner",))
    owner = text_field(data, "owner", max_len=64)
    await _known_user(state, owner, "owner")
    await state.run(lambda s: s.assign_case(case_id, _by(p), owner))
    return await _case_after(state, case_id)


async def comment_case(state: ServeState, request: Request, p: Principal | None) -> Response:
    case_id = _case_id(request)
    data = await read_json(request, ("text",), ("text",))
    text = text_field(data, "text", required=True, max_len=MAX_NOTE)
    event = await state.run(lambda s: s.comment_case(case_id, _by(p), text))
    return json_response(plain(event), 201)


# -- webhooks and users (admin) -----------------------------------------------


async def list_deliveries(state: ServeState, request: Request, _p: Principal | None) -> Response:
    q = Query(request, ("state", "hook", "limit"))
    st = q.one("state")
    if st is not None and st not in DELIVERY_STATES:
        raise ApiError(400, "bad_parameter", f"state must be one of: {', '.join(DELIVERY_STATES)}")
    hook = q.one("hook")
    limit = q.integer("limit", 1, 500) or 100
    found = await state.run(lambda s: s.list_deliveries(state=st, hook=hook, limit=limit))
    return json_response({"items": [plain(d) for d in found], "hooks": list(state.settings.hooks)})


async def retry_delivery(state: ServeState, request: Request, p: Principal | None) -> Response:
    raw, hook = _path(request, "notice_id"), _path(request, "hook")
    if not raw.isdigit() or int(raw) >= 2**63:
        raise ApiError(404, "not_found", f"no notice {raw}")
    await read_json(request, ())
    await state.run(lambda s: s.retry_delivery(int(raw), hook, _by(p)))
    return json_response({"notice_id": int(raw), "hook": hook, "state": "pending"})


async def list_users(state: ServeState, request: Request, _p: Principal | None) -> Response:
    Query(request, ())
    users = await state.run(lambda s: s.list_users())
    return json_response({"items": [user_json(u) for u in users]})


def _role(data: dict[str, Any]) -> str:
    role = text_field(data, "role", required=True, max_len=16)
    if role not in ROLES:
        raise ApiError(400, "bad_field", f"role must be one of: {', '.join(ROLES)}")
    return role


async def add_user(state: ServeState, request: Request, _p: Principal | None) -> Response:
    from .auth import check_user_name

    data = await read_json(request, ("name", "role", "password"), ("name", "role", "password"))
    name = text_field(data, "name", required=True, max_len=64) or ""
    role = _role(data)
    password = text_field(data, "password", required=True, max_len=1024) or ""
    try:
        check_user_name(name)
        check_password_rules(password)
    except ValueError as e:
        raise ApiError(400, "bad_field", str(e)) from None

    def add(store: Any) -> Any:
        if store.get_user(name) is not None:
            raise ApiError(409, "conflict", f"user {name} exists")
        return store.add_user(name, role, hash_password(password))

    user = await state.run(add)
    return json_response(user_json(user), 201)


async def set_user_role(state: ServeState, request: Request, _p: Principal | None) -> Response:
    name = _path(request, "name")
    role = _role(await read_json(request, ("role",), ("role",)))
    await state.run(lambda s: s.set_role(name, role))
    return await _user_after(state, name)


async def disable_user(state: ServeState, request: Request, _p: Principal | None) -> Response:
    name = _path(request, "name")
    await read_json(request, ())

    def disable(store: Any) -> None:
        store.disable_user(name)
        store.revoke_tokens(name)

    await state.run(disable)
    return await _user_after(state, name)


async def _user_after(state: ServeState, name: str) -> Response:
    user = await state.run(lambda s: s.get_user(name))
    if user is None:
        raise ApiError(404, "not_found", f"no user {name}")
    return json_response(user_json(user))


async def get_openapi(state: ServeState, request: Request, _p: Principal | None) -> Response:
    from .openapi import openapi_document

    Query(request, ())
    return json_response(openapi_document())


_NOTE = {"note": {"type": ["string", "null"], "maxLength": MAX_NOTE}}
_TEXT = {"text": {"type": "string", "minLength": 1, "maxLength": MAX_NOTE}}
_NAME = {"type": ["string", "null"], "maxLength": 64}
_IDS = {"type": "array", "items": {"type": "string"}, "maxItems": 500}

#: The whole API. Paths are relative to ``/api/v1``.
OPS: tuple[Op, ...] = (
    Op("POST", "/session", create_session, None, "Sign in: sets the session cookie and returns the CSRF token.",
       body={"name": {"type": "string"}, "password": {"type": "string"}}, required=("name", "password"),
       errors=(401, 429), response="Session"),
    Op("DELETE", "/session", delete_session, "viewer", "Sign out: revokes the session."),
    Op("GET", "/me", get_me, "viewer", "Who is signed in (and the session's CSRF token).", response="Me"),
    Op("GET", "/health", get_health, None, "The service answers."),
    Op("GET", "/alerts", list_alerts, "viewer", "A page of the alert queue with counts by severity.",
       query=(*FILTER_PARAMS, *PAGE_PARAMS), response="AlertPage"),
    Op("GET", "/alerts/{alert_id}", get_alert, "viewer", "One alert: status, assignee, cases, revisions, audit trail.",
       errors=(404,), response="AlertDetail"),
    Op("GET", "/alerts/{alert_id}/graph", get_alert_graph, "viewer",
       "The alert's account graph as networkx node-link JSON (from --data dumps, or from the alert alone).",
       errors=(404, 422), response="NodeLink"),
    Op("POST", "/alerts/{alert_id}/ack", ack_alert, "analyst", "Acknowledge an open alert.",
       body=_NOTE, errors=(404, 409), response="Event"),
    Op("POST", "/alerts/{alert_id}/close", close_alert, "analyst", "Close an alert.",
       body=_NOTE, errors=(404, 409), response="Event"),
    Op("POST", "/alerts/{alert_id}/reopen", reopen_alert, "analyst", "Reopen a closed alert.",
       body=_NOTE, errors=(404, 409), response="Event"),
    Op("POST", "/alerts/{alert_id}/assign", assign_alert, "analyst", "Assign the alert to a user (null: nobody).",
       body={"assignee": _NAME}, required=("assignee",), errors=(404, 409), response="Event"),
    Op("POST", "/alerts/{alert_id}/comments", comment_alert, "analyst", "Comment on the alert.",
       body=_TEXT, required=("text",), ok=201, errors=(404, 409), response="Event"),
    Op("GET", "/cases", list_cases, "viewer", "A page of cases.",
       query=(Param("status", {"type": "string", "enum": list(CASE_STATUSES)}, "Case status."),
              Param("owner", {"type": "string"}, "Case owner."),
              Param("cursor", {"type": "string"}, "next_cursor of the previous page."),
              Param("limit", {"type": "integer", "minimum": 1, "maximum": 500}, "Page size, default 50.")),
       response="CasePage"),
    Op("POST", "/cases", create_case, "analyst", "Open a case, with alerts or none.",
       body={"title": {"type": "string", "minLength": 1, "maxLength": MAX_TITLE}, "alert_ids": _IDS,
             "owner": _NAME, **_NOTE}, required=("title",), ok=201, errors=(404, 409), response="Case"),
    Op("GET", "/cases/{case_id}", get_case, "viewer", "One case: its alerts and its audit trail.",
       errors=(404,), response="CaseDetail"),
    Op("POST", "/cases/{case_id}/alerts", add_case_alerts, "analyst", "Add alerts to the case.",
       body={"alert_ids": _IDS}, required=("alert_ids",), errors=(404, 409), response="Case"),
    Op("POST", "/cases/{case_id}/status", set_case_status, "analyst", "Close or reopen the case.",
       body={"status": {"type": "string", "enum": list(CASE_STATUSES)}, **_NOTE}, required=("status",),
       errors=(404, 409), response="Case"),
    Op("POST", "/cases/{case_id}/assign", assign_case, "analyst", "Give the case an owner (null: nobody).",
       body={"owner": _NAME}, required=("owner",), errors=(404, 409), response="Case"),
    Op("POST", "/cases/{case_id}/comments", comment_case, "analyst", "Add a note to the case.",
       body=_TEXT, required=("text",), ok=201, errors=(404, 409), response="Event"),
    Op("GET", "/export", export_alerts, "viewer", "The matching alerts as JSON lines or CSV, oldest first.",
       query=(Param("format", {"type": "string", "enum": ["jsonl", "csv"]}, "Default jsonl."), *FILTER_PARAMS),
       response="Export", produces="application/x-ndjson"),
    Op("GET", "/webhooks/deliveries", list_deliveries, "admin", "Webhook deliveries, newest first.",
       query=(Param("state", {"type": "string", "enum": list(DELIVERY_STATES)}, "Delivery state."),
              Param("hook", {"type": "string"}, "Hook name."),
              Param("limit", {"type": "integer", "minimum": 1, "maximum": 500}, "At most this many, default 100.")),
       response="DeliveryList"),
    Op("POST", "/webhooks/deliveries/{notice_id}/{hook}/retry", retry_delivery, "admin",
       "Send a dead delivery again.", body={}, errors=(404, 409)),
    Op("GET", "/users", list_users, "admin", "The users.", response="UserList"),
    Op("POST", "/users", add_user, "admin", "Add a user.",
       body={"name": {"type": "string", "maxLength": 64}, "role": {"type": "string", "enum": list(ROLES)},
             "password": {"type": "string", "minLength": 8}}, required=("name", "role", "password"),
       ok=201, errors=(409,), response="User"),
    Op("POST", "/users/{name}/role", set_user_role, "admin", "Change a user's role.",
       body={"role": {"type": "string", "enum": list(ROLES)}}, required=("role",), errors=(404,),
       response="User"),
    Op("POST", "/users/{name}/disable", disable_user, "admin", "Disable a user and revoke their sessions and tokens.",
       body={}, errors=(404,), response="User"),
    Op("GET", "/openapi.json", get_openapi, None, "This document."),
)  # fmt: skip
