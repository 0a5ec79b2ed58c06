"""The alert queue, one alert, its graph, the actions on it, the export."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from typing import Any

from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from fundflow import store as store_mod
from fundflow.alerts_cli import CSV_HEADER, csv_row
from fundflow.schemas.records import SEVERITIES
from fundflow.store import ORDERS

from .auth import Principal
from .common import (
    DETECTOR_NAMES,
    MAX_NOTE,
    Param,
    actor,
    check_known_user,
    path_param,
)
from .http import ApiError, Query, json_response, read_json, text_field
from .state import ServeState
from .views import plain, row_json

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

    page, counts = await state.run(
        lambda s: s.page_with_counts(filters, order=order, cursor=cursor, limit=limit)
    )
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
    alert_id = path_param(request, "alert_id")
    view = await state.run(lambda s: s.alert_view(alert_id))
    if view is None:
        raise ApiError(404, "not_found", f"no alert {alert_id}")
    return json_response(
        {
            **row_json(view.row),
            "cases": [plain(c) for c in view.cases],
            "revisions": [plain(a) for a in view.revisions],
            "events": [plain(e) for e in view.events],
        }
    )


async def get_alert_graph(state: ServeState, request: Request, _p: Principal | None) -> Response:
    from fundflow.graph import Centre, GraphError, alert_graph, build_graph, node_link
    from fundflow.replay import ReplayError

    Query(request, ())
    row = await _row_or_404(state, path_param(request, "alert_id"))
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
        except OSError as e:  # a dump moved or unreadable since start-up
            raise ApiError(
                422, "graph_unavailable", f"cannot read {e.filename}: {e.strerror}"
            ) from None
        graph.attrs |= {"source": "dumps", "note": "; ".join(graph.stats["notes"])}
        return node_link(graph)

    from starlette.concurrency import run_in_threadpool

    body = await run_in_threadpool(build)
    state.keep_graph(key, body)
    return json_response(body)


async def _note_action(
    state: ServeState, request: Request, p: Principal | None, method: str
) -> Response:
    alert_id = path_param(request, "alert_id")
    data = await read_json(request, ("note",))
    note = text_field(data, "note", max_len=MAX_NOTE)
    event = await state.run(lambda s: getattr(s, method)(alert_id, actor(p), note=note))
    return json_response(plain(event))


async def ack_alert(state: ServeState, request: Request, p: Principal | None) -> Response:
    return await _note_action(state, request, p, "ack")


async def close_alert(state: ServeState, request: Request, p: Principal | None) -> Response:
    return await _note_action(state, request, p, "close_alert")


async def reopen_alert(state: ServeState, request: Request, p: Principal | None) -> Response:
    return await _note_action(state, request, p, "reopen")


async def assign_alert(state: ServeState, request: Request, p: Principal | None) -> Response:
    alert_id = path_param(request, "alert_id")
    data = await read_json(request, ("assignee",), ("assignee",))
    assignee = text_field(data, "assignee", max_len=64)
    await check_known_user(state, assignee, "assignee")
    event = await state.run(lambda s: s.assign(alert_id, actor(p), assignee))
    return json_response(plain(event))


async def comment_alert(state: ServeState, request: Request, p: Principal | None) -> Response:
    alert_id = path_param(request, "alert_id")
    data = await read_json(request, ("text",), ("text",))
    text = text_field(data, "text", required=True, max_len=MAX_NOTE)
    event = await state.run(lambda s: s.comment(alert_id, actor(p), text))
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
            page = state.call(_next_page, filters, page.next_cursor)

    media = "text/csv; charset=utf-8" if fmt == "csv" else "application/x-ndjson"
    name = f"fundflow-alerts.{fmt}"
    return StreamingResponse(
        rows(), media_type=media, headers={"Content-Disposition": f'attachment; filename="{name}"'}
    )


def _next_page(store: Any, filters: Any, cursor: str) -> Any:
    return store.page(filters, order="last_ts", cursor=cursor, limit=500)


def _csv_line(values: Any) -> bytes:
    buf = io.StringIO()
    csv.writer(buf, lineterminator="\n").writerow(values)
    return buf.getvalue().encode("utf-8")
