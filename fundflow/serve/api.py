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

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from .auth import (
    CSRF_HEADER,
    ROLES,
    csrf_matches,
    role_allows,
)
from .common import CASE_STATUSES, DELIVERY_STATES, MAX_NOTE, MAX_TITLE, Handler, Param
from .http import ApiError
from .ops_admin import (
    add_user,
    disable_user,
    list_deliveries,
    list_users,
    retry_delivery,
    set_user_role,
)
from .ops_alerts import (
    FILTER_PARAMS,
    PAGE_PARAMS,
    ack_alert,
    assign_alert,
    close_alert,
    comment_alert,
    export_alerts,
    get_alert,
    get_alert_graph,
    list_alerts,
    reopen_alert,
)
from .ops_cases import (
    add_case_alerts,
    assign_case,
    comment_case,
    create_case,
    get_case,
    list_cases,
    set_case_status,
)
from .ops_session import create_session, delete_session, get_health, get_me, get_openapi
from .state import ServeState

_SAFE = frozenset({"GET", "HEAD", "OPTIONS"})


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
