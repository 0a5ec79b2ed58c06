"""Sign-in, sign-out, who am I, health and the OpenAPI document."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from .auth import (
    SESSION_COOKIE,
    Principal,
    csrf_for,
    new_session_token,
    token_hash,
    verify_password,
)
from .http import ApiError, Query, json_response, read_json, text_field
from .state import ServeState


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
        state.principals.forget_token(p.token_hash)
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


async def get_openapi(state: ServeState, request: Request, _p: Principal | None) -> Response:
    from .openapi import openapi_document

    Query(request, ())
    return json_response(openapi_document())
