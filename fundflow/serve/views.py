"""How the API writes store objects as JSON: plain dicts, times as ISO 8601
text, tuples as lists, password hashes never."""

from __future__ import annotations

import dataclasses
from datetime import datetime
from typing import Any

import msgspec

from fundflow.schemas.records import Alert

_HIDDEN = frozenset({"password_hash", "token_hash", "csrf_hash"})


def plain(value: Any) -> Any:
    """``value`` as JSON-ready data: dataclasses and msgspec structs become
    dicts (secret fields dropped), datetimes ISO text, tuples lists; an
    :class:`Alert` stays as it is (msgspec writes it with the same bytes)."""
    if isinstance(value, Alert):
        return value  # json_response encodes it as to_builtins would, without the copy
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {
            f.name: plain(getattr(value, f.name))
            for f in dataclasses.fields(value)
            if f.name not in _HIDDEN
        }
    if isinstance(value, msgspec.Struct):
        return msgspec.to_builtins(value)
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    return value


def row_json(row: Any) -> dict[str, Any]:
    """An ``AlertRow``: ``{alert, status, assignee, cases}``."""
    return {
        "alert": plain(row.alert),
        "status": row.status,
        "assignee": row.assignee,
        "cases": list(row.case_ids),
    }


def user_json(user: Any) -> dict[str, Any]:
    return {
        "name": user.name,
        "role": user.role,
        "disabled": bool(user.disabled),
        "created_at": plain(user.created_at),
    }
