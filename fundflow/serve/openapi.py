"""The OpenAPI 3.1 document of the triage API, built from
:data:`fundflow.serve.api.OPS` (served at ``/api/v1/openapi.json``, checked
in at ``docs/openapi.json``; ``python -m fundflow.serve.openapi`` prints it).
"""

from __future__ import annotations

import json
import re
from typing import Any

from .auth import CSRF_HEADER, SESSION_COOKIE

PREFIX = "/api/v1"

_ERROR = {"$ref": "#/components/schemas/Error"}
_REASONS = {
    400: "Bad input: unknown or bad query parameter, cursor or body field.",
    401: "Not signed in, or the session or token is unknown, expired or revoked.",
    403: "The role does not allow it, or the CSRF token is missing or wrong.",
    404: "No such alert, case, notice, user or route.",
    409: "Not allowed in the current status.",
    413: "The body is over 64 KiB.",
    415: "The body is not application/json.",
    422: "The graph cannot be built from the dumps.",
    429: "Too many failed sign-ins: see Retry-After.",
    503: "The store cannot be read or written, or every store connection stayed busy (Retry-After).",
}

_OBJ: dict[str, Any] = {"type": "object"}
_SCHEMAS: dict[str, Any] = {
    "Error": {
        "type": "object",
        "required": ["error", "detail"],
        "properties": {"error": {"type": "string"}, "detail": {"type": "string"}},
    },
    "Object": _OBJ,
    "Alert": {
        "type": "object",
        "description": "An alert as docs/wire-format.md describes it.",
        "required": ["alert_id", "detector", "severity", "subject_id", "accounts", "first_ts",
                     "last_ts", "amount", "summary", "evidence", "detector_version", "revision"],
        "properties": {
            "alert_id": {"type": "string"}, "detector": {"type": "string"},
            "severity": {"type": "string", "enum": ["low", "medium", "high", "critical"]},
            "subject_id": {"type": "string"},
            "accounts": {"type": "array", "items": {"type": "string"}},
            "first_ts": {"type": "string"}, "last_ts": {"type": "string"},
            "amount": {"type": "string", "description": "yuan, exact decimal text"},
            "summary": {"type": "string"}, "evidence": _OBJ,
            "detector_version": {"type": "string"}, "revision": {"type": "integer"},
        },
    },
    "AlertRow": {
        "type": "object",
        "properties": {
            "alert": {"$ref": "#/components/schemas/Alert"},
            "status": {"type": "string", "enum": ["open", "acknowledged", "closed"]},
            "assignee": {"type": ["string", "null"]},
            "cases": {"type": "array", "items": {"type": "integer"}},
        },
    },
    "AlertPage": {
        "type": "object",
        "properties": {
            "items": {"type": "array", "items": {"$ref": "#/components/schemas/AlertRow"}},
            "next_cursor": {"type": ["string", "null"]},
            "counts": {"type": "object", "additionalProperties": {"type": "integer"}},
        },
    },
    "Event": {
        "type": "object",
        "description": "One audit event; actor is the signed-in user.",
        "properties": {"id": {"type": "integer"}, "action": {"type": "string"},
                       "actor": {"type": "string"}, "note": {"type": ["string", "null"]},
                       "at": {"type": "string", "format": "date-time"}},
    },
    "AlertDetail": {
        "type": "object",
        "properties": {
            "alert": {"$ref": "#/components/schemas/Alert"},
            "status": {"type": "string"}, "assignee": {"type": ["string", "null"]},
            "cases": {"type": "array", "items": _OBJ},
            "revisions": {"type": "array", "items": {"$ref": "#/components/schemas/Alert"}},
            "events": {"type": "array", "items": {"$ref": "#/components/schemas/Event"}},
        },
    },
    "NodeLink": {
        "type": "object",
        "description": "networkx node-link data (what `fundflow graph --out FILE.json` writes); "
        "graph.source is 'dumps' or 'alert', graph.note says what is missing.",
        "properties": {"directed": {"type": "boolean"}, "multigraph": {"type": "boolean"},
                       "graph": _OBJ, "nodes": {"type": "array", "items": _OBJ},
                       "edges": {"type": "array", "items": _OBJ}},
    },
    "Case": {
        "type": "object",
        "properties": {
            "case_id": {"type": "integer"}, "title": {"type": "string"},
            "status": {"type": "string", "enum": ["open", "closed"]},
            "owner": {"type": ["string", "null"]}, "created_by": {"type": "string"},
            "created_at": {"type": "string"}, "updated_at": {"type": "string"},
            "alert_ids": {"type": "array", "items": {"type": "string"}},
        },
    },
    "CasePage": {
        "type": "object",
        "properties": {"items": {"type": "array", "items": {"$ref": "#/components/schemas/Case"}},
                       "next_cursor": {"type": ["string", "null"]}},
    },
    "CaseDetail": {
        "type": "object",
        "properties": {
            "case": {"$ref": "#/components/schemas/Case"},
            "alerts": {"type": "array", "items": {"$ref": "#/components/schemas/AlertRow"}},
            "events": {"type": "array", "items": {"$ref": "#/components/schemas/Event"}},
        },
    },
    "DeliveryList": {
        "type": "object",
        "properties": {"items": {"type": "array", "items": _OBJ},
                       "hooks": {"type": "array", "items": {"type": "string"}}},
    },
    "User": {
        "type": "object",
        "properties": {"name": {"type": "string"}, "role": {"type": "string"},
                       "disabled": {"type": "boolean"}, "created_at": {"type": "string"}},
    },
    "UserList": {
        "type": "object",
        "properties": {"items": {"type": "array", "items": {"$ref": "#/components/schemas/User"}}},
    },
    "Session": {
        "type": "object",
        "properties": {"name": {"type": "string"}, "role": {"type": "string"},
                       "csrf_token": {"type": "string"}},
    },
    "Me": {
        "type": "object",
        "properties": {"name": {"type": "string"}, "role": {"type": "string"},
                       "via": {"type": "string", "enum": ["session", "api", "anonymous"]},
                       "csrf_token": {"type": "string"}},
    },
    "Export": {"type": "string", "description": "JSON lines (one alert each) or CSV."},
}  # fmt: skip


def _operation(op: Any) -> dict[str, Any]:
    params: list[dict[str, Any]] = [
        {"name": name, "in": "path", "required": True, "schema": {"type": "string"}}
        for name in re.findall(r"{(\w+)}", op.path)
    ]
    params += [
        {"name": p.name, "in": "query", "required": False, "schema": p.schema,
         "description": p.description}
        for p in op.query
    ]  # fmt: skip
    statuses = set(op.errors)
    if op.query or op.body is not None or params:
        statuses.add(400)
    if op.body is not None:
        statuses |= {413, 415}
    if op.role is not None:
        statuses |= {401, 403, 503}
    media = op.produces
    ok_schema = {"$ref": f"#/components/schemas/{op.response}"}
    if op.response == "Export":
        content = {m: {"schema": ok_schema} for m in ("application/x-ndjson", "text/csv")}
    else:
        content = {media: {"schema": ok_schema}}
    responses: dict[str, Any] = {str(op.ok): {"description": "OK", "content": content}}
    for status in sorted(statuses):
        responses[str(status)] = {
            "description": _REASONS[status],
            "content": {"application/json": {"schema": _ERROR}},
        }
    out: dict[str, Any] = {
        "operationId": op.operation_id,
        "summary": op.summary,
        "responses": responses,
    }
    if params:
        out["parameters"] = params
    if op.body is not None:
        out["requestBody"] = {
            "required": True,
            "content": {"application/json": {"schema": {
                "type": "object", "additionalProperties": False,
                "properties": op.body, "required": list(op.required),
            }}},
        }  # fmt: skip
    if op.role is None:
        out["security"] = []
    else:
        out["x-role"] = op.role
    return out


def openapi_document() -> dict[str, Any]:
    """The document, the same bytes on every call (keys in a fixed order)."""
    from .api import OPS

    paths: dict[str, dict[str, Any]] = {}
    for op in OPS:
        paths.setdefault(PREFIX + op.path, {})[op.method.lower()] = _operation(op)
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "fundflow triage API",
            "version": "1",
            "description": (
                "Work fundflow's alerts: the queue, an alert's evidence and graph, "
                "acknowledge / assign / comment / close / reopen, cases, exports, webhook "
                "deliveries. Roles: viewer reads; analyst also acts on alerts and cases; "
                "admin also manages users and webhooks. Sign in with POST /api/v1/session "
                f"(cookie {SESSION_COOKIE}; send the returned csrf_token in {CSRF_HEADER} on "
                "every state-changing request) or use a bearer token from "
                '`fundflow users token`. Errors are {"error", "detail"}.'
            ),
        },
        "servers": [{"url": "/"}],
        "security": [{"session": []}, {"bearer": []}],
        "paths": paths,
        "components": {
            "schemas": _SCHEMAS,
            "securitySchemes": {
                "session": {"type": "apiKey", "in": "cookie", "name": SESSION_COOKIE},
                "bearer": {"type": "http", "scheme": "bearer"},
            },
        },
    }


def render() -> str:
    """The document as the text checked in at ``docs/openapi.json``."""
    return json.dumps(openapi_document(), indent=2, ensure_ascii=False) + "\n"


if __name__ == "__main__":
    print(render(), end="")
