"""Admin: webhook deliveries and users."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from .auth import (
    ROLES,
    Principal,
    check_password_rules,
    hash_password,
)
from .common import (
    DELIVERY_STATES,
    actor,
    path_param,
)
from .http import ApiError, Query, json_response, read_json, text_field
from .state import ServeState
from .views import plain, user_json


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
    raw, hook = path_param(request, "notice_id"), path_param(request, "hook")
    if not raw.isdigit() or int(raw) >= 2**63:
        raise ApiError(404, "not_found", f"no notice {raw}")
    await read_json(request, ())
    await state.run(lambda s: s.retry_delivery(int(raw), hook, actor(p)))
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
    name = path_param(request, "name")
    role = _role(await read_json(request, ("role",), ("role",)))
    await state.run(lambda s: s.set_role(name, role))
    state.principals.forget_user(name)
    return await _user_after(state, name)


async def disable_user(state: ServeState, request: Request, _p: Principal | None) -> Response:
    name = path_param(request, "name")
    await read_json(request, ())

    def disable(store: Any) -> None:
        store.disable_user(name)
        store.revoke_tokens(name)

    await state.run(disable)
    state.principals.forget_user(name)
    return await _user_after(state, name)


async def _user_after(state: ServeState, name: str) -> Response:
    user = await state.run(lambda s: s.get_user(name))
    if user is None:
        raise ApiError(404, "not_found", f"no user {name}")
    return json_response(user_json(user))
