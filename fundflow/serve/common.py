"""What the API's handlers share: the known values of its parameters, the
:class:`Param` of a query parameter, and the small checks every handler makes of a request."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from fundflow.detectors.engine import DETECTORS, TYPOLOGIES

from .auth import Principal
from .http import ApiError
from .state import ServeState

Handler = Callable[[ServeState, Request, Principal | None], Awaitable[Response]]

DETECTOR_NAMES: tuple[str, ...] = (*DETECTORS, *TYPOLOGIES)
CASE_STATUSES = ("open", "closed")
DELIVERY_STATES = ("pending", "delivered", "dead")
MAX_NOTE = 4000
MAX_TITLE = 200


@dataclass(frozen=True)
class Param:
    """A query parameter: its OpenAPI schema and description."""

    name: str
    schema: dict[str, Any]
    description: str


def actor(principal: Principal | None) -> str:
    assert principal is not None
    return principal.name


def path_param(request: Request, name: str) -> str:
    return str(request.path_params[name])


def case_id_param(request: Request) -> int:
    raw = path_param(request, "case_id")
    if not raw.isdigit() or int(raw) >= 2**63:
        raise ApiError(404, "not_found", f"no case {raw}")
    return int(raw)


async def check_known_user(state: ServeState, name: str | None, field: str) -> None:
    if name is None:
        return
    user = await state.run(lambda s: s.get_user(name))
    if user is None or user.disabled:
        raise ApiError(400, "unknown_user", f"{field} {name!r} is no enabled user")
