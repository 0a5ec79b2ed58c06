"""Request and response plumbing shared by the API handlers: the error type,
JSON bodies read with their limits, query parameters checked one by one.

Every refusal is an :class:`ApiError` that the app turns into
``{"error": "<reason>", "detail": "..."}`` with its status; bad input never
reaches the store unchecked and never becomes a 500.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any

import msgspec
from starlette.requests import Request
from starlette.responses import Response

#: Largest request body accepted (bytes); more is 413.
MAX_BODY = 64 * 1024


class ApiError(Exception):
    """A refusal: ``status`` (4xx), a short machine ``error`` reason and a
    human ``detail``."""

    def __init__(
        self, status: int, error: str, detail: str, headers: Mapping[str, str] | None = None
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.error = error
        self.detail = detail
        self.headers = dict(headers or {})


def json_response(
    data: Any, status: int = 200, headers: Mapping[str, str] | None = None
) -> Response:
    """``data`` (plain values, msgspec structs, dataclasses) as UTF-8 JSON."""
    body = msgspec.json.encode(data, enc_hook=_enc_hook)
    return Response(body, status_code=status, media_type="application/json", headers=headers)


def error_response(exc: ApiError) -> Response:
    return json_response({"error": exc.error, "detail": exc.detail}, exc.status, exc.headers)


def _enc_hook(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    raise NotImplementedError(f"cannot encode {type(value).__name__}")


async def read_json(
    request: Request, allowed: Iterable[str], required: Iterable[str] = ()
) -> dict[str, Any]:
    """The request's JSON object body. 415 unless ``application/json``; 413
    past :data:`MAX_BODY`; 400 for bad JSON, a non-object, a key outside
    ``allowed`` or a missing ``required`` one."""
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if ctype != "application/json":
        raise ApiError(415, "unsupported_media_type", "send the body as application/json")
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > MAX_BODY:
        raise ApiError(413, "body_too_large", f"the body is limited to {MAX_BODY} bytes")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_BODY:
            raise ApiError(413, "body_too_large", f"the body is limited to {MAX_BODY} bytes")
        chunks.append(chunk)
    raw = b"".join(chunks)
    try:
        data = json.loads(raw.decode("utf-8")) if raw else None
    except (UnicodeDecodeError, ValueError) as e:
        raise ApiError(400, "bad_json", f"the body is not JSON: {e}") from None
    if not isinstance(data, dict):
        raise ApiError(400, "bad_body", "the body must be a JSON object")
    unknown = sorted(set(data) - set(allowed))
    if unknown:
        raise ApiError(400, "unknown_field", f"unknown field(s): {', '.join(unknown)}")
    missing = [k for k in required if k not in data]
    if missing:
        raise ApiError(400, "missing_field", f"missing field(s): {', '.join(missing)}")
    return data


def text_field(data: Mapping[str, Any], key: str, *, required: bool = False,
               max_len: int = 10_000, nullable: bool = True) -> str | None:  # fmt: skip
    """A string field of a body: 400 for a wrong type, an empty required
    value, one longer than ``max_len`` characters or one holding NUL."""
    value = data.get(key)
    if value is None:
        if required or (key in data and not nullable):
            raise ApiError(400, "bad_field", f"{key} is required")
        return None
    if not isinstance(value, str):
        raise ApiError(400, "bad_field", f"{key} must be a string")
    if required and not value.strip():
        raise ApiError(400, "bad_field", f"{key} must not be empty")
    if len(value) > max_len:
        raise ApiError(400, "bad_field", f"{key} is limited to {max_len} characters")
    if "\x00" in value:  # PostgreSQL text cannot hold it; the store refuses it everywhere
        raise ApiError(400, "bad_field", f"{key} must not contain NUL characters")
    return value


def id_list(data: Mapping[str, Any], key: str, *, max_items: int = 500) -> tuple[str, ...]:
    """A list of alert ids: 400 unless a list of non-empty strings."""
    value = data.get(key, [])
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise ApiError(400, "bad_field", f"{key} must be a list of alert ids")
    if len(value) > max_items:
        raise ApiError(400, "bad_field", f"{key} holds at most {max_items} ids")
    return tuple(dict.fromkeys(value))


class Query:
    """The query string of one request, checked: every parameter must be
    one the route declares (400 ``unknown_parameter`` otherwise), given
    once unless it is a list."""

    def __init__(self, request: Request, allowed: Iterable[str]) -> None:
        self._items = request.query_params.multi_items()
        names = {k for k, _ in self._items}
        unknown = sorted(names - set(allowed))
        if unknown:
            raise ApiError(
                400, "unknown_parameter", f"unknown query parameter(s): {', '.join(unknown)}"
            )

    def one(self, name: str, *, empty_ok: bool = False) -> str | None:
        """The parameter's one value (400 when repeated, or empty unless
        ``empty_ok``)."""
        values = [v for k, v in self._items if k == name]
        if len(values) > 1:
            raise ApiError(400, "bad_parameter", f"{name} is given more than once")
        if values and values[0] == "" and not empty_ok:
            raise ApiError(400, "bad_parameter", f"{name} is empty")
        return values[0] if values else None

    def choices(self, name: str, known: Iterable[str]) -> tuple[str, ...] | None:
        """Comma-separated and/or repeated values, each one of ``known``."""
        values = [p for k, v in self._items if k == name for p in v.split(",")]
        if not values:
            return None
        known = tuple(known)
        bad = [v for v in values if v not in known]
        if bad:
            raise ApiError(
                400, "bad_parameter", f"{name}={bad[0]!r} is none of: {', '.join(known)}"
            )
        return tuple(dict.fromkeys(values))

    def integer(self, name: str, low: int, high: int) -> int | None:
        raw = self.one(name)
        if raw is None:
            return None
        if not raw.isdigit() or not low <= int(raw) <= high:
            raise ApiError(400, "bad_parameter", f"{name} must be an integer {low}..{high}")
        return int(raw)

    def timestamp(self, name: str) -> datetime | None:
        """An ISO 8601 time with its UTC offset."""
        raw = self.one(name)
        if raw is None:
            return None
        try:
            at = datetime.fromisoformat(raw)
        except ValueError:
            at = None
        if at is None or at.tzinfo is None:
            raise ApiError(
                400,
                "bad_parameter",
                f"{name} must be an ISO 8601 time with its offset, got {raw!r}",
            )
        return at
