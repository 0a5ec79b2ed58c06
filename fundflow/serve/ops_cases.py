"""Cases: list, open, read, add alerts, close or reopen, owner, notes."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from .auth import Principal
from .common import (
    CASE_STATUSES,
    MAX_NOTE,
    MAX_TITLE,
    actor,
    case_id_param,
    check_known_user,
)
from .http import ApiError, Query, id_list, json_response, read_json, text_field
from .state import ServeState
from .views import plain, row_json


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
    await check_known_user(state, owner, "owner")
    case = await state.run(
        lambda s: s.create_case(title, actor(p), alert_ids=alert_ids, owner=owner, note=note)
    )
    return json_response(plain(case), 201, {"Location": f"/api/v1/cases/{case.case_id}"})


async def get_case(state: ServeState, request: Request, _p: Principal | None) -> Response:
    Query(request, ())
    case_id = case_id_param(request)

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
    case_id = case_id_param(request)
    data = await read_json(request, ("alert_ids",), ("alert_ids",))
    alert_ids = id_list(data, "alert_ids")
    if not alert_ids:
        raise ApiError(400, "bad_field", "alert_ids must name at least one alert")
    await state.run(lambda s: s.add_to_case(case_id, alert_ids, actor(p)))
    return await _case_after(state, case_id)


async def set_case_status(state: ServeState, request: Request, p: Principal | None) -> Response:
    case_id = case_id_param(request)
    data = await read_json(request, ("status", "note"), ("status",))
    status = text_field(data, "status", required=True, max_len=10)
    if status not in CASE_STATUSES:
        raise ApiError(400, "bad_field", "status must be open or closed")
    note = text_field(data, "note", max_len=MAX_NOTE)
    await state.run(lambda s: s.set_case_status(case_id, status, actor(p), note=note))
    return await _case_after(state, case_id)


async def assign_case(state: ServeState, request: Request, p: Principal | None) -> Response:
    case_id = case_id_param(request)
    data = await read_json(request, ("owner",), ("owner",))
    owner = text_field(data, "owner", max_len=64)
    await check_known_user(state, owner, "owner")
    await state.run(lambda s: s.assign_case(case_id, actor(p), owner))
    return await _case_after(state, case_id)


async def comment_case(state: ServeState, request: Request, p: Principal | None) -> Response:
    case_id = case_id_param(request)
    data = await read_json(request, ("text",), ("text",))
    text = text_field(data, "text", required=True, max_len=MAX_NOTE)
    event = await state.run(lambda s: s.comment_case(case_id, actor(p), text))
    return json_response(plain(event), 201)
