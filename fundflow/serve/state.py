"""What one ``fundflow serve`` process holds: its settings, the store
connections (:class:`StorePool`), the sign-in throttle and the graph
cache; and :meth:`ServeState.principal`, who a request acts as.

Store calls block (sqlite3, psycopg), so handlers run them through
:meth:`ServeState.run`, in Starlette's thread pool, on a store borrowed
from the pool for that call. Store errors become API errors there: unknown
id 404, a move the status forbids 409, a bad value or cursor 400, a store
that cannot be read (or no connection free in time) 503.
"""

from __future__ import annotations

import contextlib
import ipaddress
import queue
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, TypeVar

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request

from fundflow import store as store_mod
from fundflow.detectors import Config, load_config

from .auth import SESSION_COOKIE, LoginThrottle, Principal, PrincipalCache, token_hash
from .http import ApiError

T = TypeVar("T")

#: Graphs kept per (alert id, revision): building one reads the dumps.
GRAPH_CACHE = 32
#: Store connections ``fundflow serve`` opens by default, and the most.
POOL_DEFAULT = 10
POOL_MAX = 100
#: How long a call waits for a free connection before it is a 503.
POOL_WAIT_S = 10.0


@dataclass(frozen=True)
class ServeSettings:
    """``fundflow serve``'s settings, from its flags (read once, passed down).

    ``data``: dumps the alert graphs are built from (none: from the alert
    alone). ``anonymous_loopback_viewer``: a request with no credentials
    from a loopback address acts as a viewer named ``anonymous``; otherwise
    nothing but the sign-in page and its assets is served without sign-in.
    ``secure_cookie``: set when serving TLS. ``session_hours``: how long a
    session lasts. ``pool``: how many store connections are opened (at
    start-up, by :meth:`ServeState.open`) and shared by the requests.
    """

    db: str
    host: str = "127.0.0.1"
    port: int = 8700
    config_path: str | None = None
    data: tuple[str, ...] = ()
    anonymous_loopback_viewer: bool = False
    secure_cookie: bool = False
    session_hours: float = 12.0
    hooks: tuple[str, ...] = field(default_factory=tuple)
    pool: int = POOL_DEFAULT

    def __post_init__(self) -> None:
        if not 0 < self.session_hours <= 24 * 30:
            raise ValueError(f"session hours must be in (0, 720], got {self.session_hours}")
        if not 1 <= self.pool <= POOL_MAX:
            raise ValueError(f"pool must be 1 to {POOL_MAX} connections, got {self.pool}")


def _status_of(exc: Exception) -> ApiError:
    not_found = getattr(store_mod, "StoreNotFound", None)
    conflict = getattr(store_mod, "StoreConflict", None)
    bad_cursor = getattr(store_mod, "BadCursor", None)
    if not_found is not None and isinstance(exc, not_found):
        return ApiError(404, "not_found", str(exc))
    if conflict is not None and isinstance(exc, conflict):
        return ApiError(409, "conflict", str(exc))
    if bad_cursor is not None and isinstance(exc, bad_cursor):
        return ApiError(400, "bad_cursor", str(exc))
    if isinstance(exc, store_mod.StoreError):
        return ApiError(503, "store_unavailable", str(exc))
    return ApiError(400, "bad_request", str(exc))


class StorePool:
    """``size`` stores over one ``db``, each used by one call at a time.

    :meth:`open` opens them all (``fundflow serve`` does so before it
    listens, so no request pays for a connection); a pool not opened opens
    one when a call finds none free, up to ``size``. :meth:`borrow` hands
    out the most recently returned store (LIFO: its caches are the warmest)
    and waits up to ``wait_s`` for one when all are in use, then raises
    :class:`~fundflow.serve.http.ApiError` 503. A store whose call failed
    with :class:`~fundflow.store.StoreError` (a dropped connection, say) is
    closed, not returned, and the next borrower opens a fresh one.
    """

    def __init__(self, db: str, size: int, wait_s: float = POOL_WAIT_S) -> None:
        self.db = db
        self.size = size
        self.wait_s = wait_s
        self._idle: queue.LifoQueue[Any] = queue.LifoQueue()
        self._lock = threading.Lock()
        self._opened = 0
        self._closed = False

    @property
    def opened(self) -> int:
        """How many stores are open (idle or lent)."""
        with self._lock:
            return self._opened

    def open(self) -> None:
        """Open the stores not yet open; :class:`~fundflow.store.StoreError`
        (nothing left open) when one cannot be."""
        while True:
            with self._lock:
                if self._opened >= self.size:
                    return
                self._opened += 1
            try:
                self._idle.put(store_mod.open_store(self.db))
            except BaseException:
                with self._lock:
                    self._opened -= 1
                self.close()
                raise

    @contextlib.contextmanager
    def borrow(self) -> Iterator[Any]:
        """A store for the duration of the ``with`` block."""
        st = self._take()
        broken = False
        try:
            yield st
        except store_mod.StoreError:
            broken = True
            raise
        finally:
            self._give_back(st, broken)

    def _take(self) -> Any:
        try:
            return self._idle.get_nowait()
        except queue.Empty:
            pass
        with self._lock:
            if self._closed:
                raise ApiError(503, "store_unavailable", "the server is stopping")
            grow = self._opened < self.size
            if grow:
                self._opened += 1
        if grow:
            try:
                return store_mod.open_store(self.db)
            except BaseException:
                with self._lock:
                    self._opened -= 1
                raise
        try:
            return self._idle.get(timeout=self.wait_s)
        except queue.Empty:
            raise ApiError(
                503,
                "store_busy",
                f"all {self.size} store connections stayed busy for {self.wait_s:g} s",
                {"Retry-After": "1"},
            ) from None

    def _give_back(self, st: Any, broken: bool) -> None:
        with self._lock:
            keep = not broken and not self._closed
            if not keep:
                self._opened -= 1
        if keep:
            self._idle.put(st)
        else:
            with contextlib.suppress(Exception):  # already failed or stopping
                st.close()

    def close(self) -> None:
        """Close the idle stores; stores lent out close when returned."""
        with self._lock:
            self._closed = True
        while True:
            try:
                st = self._idle.get_nowait()
            except queue.Empty:
                return
            with self._lock:
                self._opened -= 1
            with contextlib.suppress(Exception):  # closing at exit: nothing to tell
                st.close()


class ServeState:
    """Shared by every request of one app (``request.app.state.serve``)."""

    def __init__(
        self,
        settings: ServeSettings,
        config: Config | None = None,
        principals: PrincipalCache | None = None,
    ) -> None:
        self.settings = settings
        self.config = config or load_config(settings.config_path)
        self.throttle = LoginThrottle()
        self.principals = principals or PrincipalCache()
        self.pool = StorePool(settings.db, settings.pool)
        self._lock = threading.Lock()
        self._graphs: OrderedDict[tuple[str, int], dict[str, Any]] = OrderedDict()

    # -- the store -----------------------------------------------------------

    def open(self) -> None:
        """Open the store connections (:meth:`StorePool.open`)."""
        self.pool.open()

    def call(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """``fn(store, *args, **kwargs)`` on a borrowed store, in this
        thread, store errors and ``ValueError`` turned into
        :class:`ApiError`."""
        try:
            with self.pool.borrow() as st:
                return fn(st, *args, **kwargs)
        except ApiError:
            raise
        except (store_mod.StoreError, ValueError) as e:
            raise _status_of(e) from None

    async def run(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """:meth:`call` in the thread pool."""
        return await run_in_threadpool(self.call, fn, *args, **kwargs)

    def close(self) -> None:
        self.pool.close()

    # -- graphs --------------------------------------------------------------

    def cached_graph(self, key: tuple[str, int]) -> dict[str, Any] | None:
        with self._lock:
            graph = self._graphs.get(key)
            if graph is not None:
                self._graphs.move_to_end(key)
            return graph

    def keep_graph(self, key: tuple[str, int], graph: dict[str, Any]) -> None:
        with self._lock:
            self._graphs[key] = graph
            while len(self._graphs) > GRAPH_CACHE:
                self._graphs.popitem(last=False)

    # -- who is asking -------------------------------------------------------

    async def principal(self, request: Request) -> Principal | None:
        """The signed-in user of ``request``: a bearer token first, then the
        session cookie; ``None`` when neither is given (or, with
        ``anonymous_loopback_viewer``, the anonymous viewer for a loopback
        client). A token that is unknown, expired, revoked or whose user is
        disabled or gone is 401; a verified one is believed for a while
        (:class:`~fundflow.serve.auth.PrincipalCache`)."""
        auth = request.headers.get("authorization")
        if auth is not None:
            scheme, _, value = auth.partition(" ")
            if scheme.lower() != "bearer" or not value.strip():
                raise ApiError(401, "unauthenticated", "Authorization must be 'Bearer <token>'")
            return await self._from_token(value.strip(), "api")
        cookie = request.cookies.get(SESSION_COOKIE)
        if cookie:
            return await self._from_token(cookie, "session")
        if self.settings.anonymous_loopback_viewer and _loopback(request):
            return Principal(name="anonymous", role="viewer", via="anonymous")
        return None

    async def _from_token(self, token: str, kind: str) -> Principal:
        digest = token_hash(token)
        known = self.principals.get(digest, kind)
        if known is not None:
            return known

        def look(store: Any) -> tuple[Any, Any]:
            tok = store.get_token(digest)
            user = store.get_user(tok.user) if tok is not None else None
            return tok, user

        tok, user = await self.run(look)
        refused = ApiError(
            401, "unauthenticated", "the session or token is unknown, expired or revoked"
        )
        if tok is None or tok.kind != kind:
            raise refused
        if tok.expires_at is not None and tok.expires_at <= datetime.now(UTC):
            raise refused
        if user is None or user.disabled:
            raise refused
        principal = Principal(
            name=user.name, role=user.role, via=kind, token_hash=digest, csrf_hash=tok.csrf_hash
        )
        self.principals.keep(digest, principal, tok.expires_at)
        return principal


def _loopback(request: Request) -> bool:
    host = request.client.host if request.client is not None else ""
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
