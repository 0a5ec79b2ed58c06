"""Sign-in for ``fundflow serve``: passwords, sessions, CSRF, API tokens, roles.

* Passwords are hashed with argon2id (argon2-cffi's defaults); the store
  keeps only the hash. A failed sign-in costs the same whether the name
  exists or not (an unknown name is checked against a dummy hash), and
  :class:`LoginThrottle` refuses a name (per client address) for a while
  after repeated failures.
* A **session** is a random token in the ``fundflow_session`` cookie
  (HttpOnly, SameSite=Strict, Secure under TLS); the store keeps its
  SHA-256 with an expiry. Its **CSRF token** is derived from the session
  token (HMAC-SHA256 keyed by it), so ``GET /api/v1/me`` can give the page
  the same token again after a reload without the store keeping it in
  clear; the store keeps its SHA-256 (``csrf_hash``). Every state-changing
  request made with the cookie must carry it in ``X-CSRF-Token``, compared
  with :func:`hmac.compare_digest`.
* An **API token** (``Authorization: Bearer ffk_...``) is printed once by
  ``fundflow users token``; the store keeps its SHA-256. Requests made with
  it need no CSRF token: a browser never sends it by itself.
* Roles are ordered ``viewer`` < ``analyst`` < ``admin``: a viewer reads,
  an analyst also acts on alerts and cases, an admin also manages users
  and webhooks.
* A verified token is kept for :data:`PRINCIPAL_TTL` seconds by
  :class:`PrincipalCache` (one per process, at most
  :data:`PRINCIPAL_CACHE` tokens), so a page of the queue costs no store
  lookup of who asks. A sign-out, a role change or a disabled user made
  through the same process takes effect at the next request; made
  elsewhere (``fundflow users``, another process over the same store),
  within :data:`PRINCIPAL_TTL` seconds. A token's own expiry is checked at
  every request.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

ROLES: tuple[str, ...] = ("viewer", "analyst", "admin")
ROLE_RANK = {r: i for i, r in enumerate(ROLES)}

SESSION_COOKIE = "fundflow_session"
CSRF_HEADER = "x-csrf-token"
API_TOKEN_PREFIX = "ffk_"
#: Least and most characters of a password ``fundflow users`` accepts.
MIN_PASSWORD = 8
MAX_PASSWORD = 1024
#: Seconds a verified token is believed without asking the store again.
PRINCIPAL_TTL = 5.0
#: Tokens a process keeps verified at most (the least recently used go first).
PRINCIPAL_CACHE = 10_000

_hasher = PasswordHasher()
# Verified against when the name is unknown, so that case costs the same.
_DUMMY_HASH = _hasher.hash(secrets.token_urlsafe(16))


def hash_password(password: str) -> str:
    """The argon2id hash of ``password`` (what the store keeps)."""
    return _hasher.hash(password)


def check_password_rules(password: str) -> None:
    """``ValueError`` naming the rule a new password breaks."""
    if len(password) < MIN_PASSWORD:
        raise ValueError(f"a password needs at least {MIN_PASSWORD} characters")
    if len(password) > MAX_PASSWORD:
        raise ValueError(f"a password has at most {MAX_PASSWORD} characters")


_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,63}$")


def check_user_name(name: str) -> None:
    """``ValueError`` unless ``name`` is 1..64 letters, digits, ``._@-``
    (starting with a letter or digit)."""
    if not _NAME.match(name):
        raise ValueError(
            f"a user name is 1..64 letters, digits, '.', '_', '@' or '-', got {name!r}"
        )


def verify_password(password_hash: str | None, password: str) -> bool:
    """Whether ``password`` matches ``password_hash``; ``None`` (no such
    user) is checked against a dummy hash and is always false."""
    try:
        ok = _hasher.verify(password_hash or _DUMMY_HASH, password)
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False
    return ok and password_hash is not None


def token_hash(token: str) -> str:
    """SHA-256 hex of a session or API token: what the store keeps."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def new_session_token() -> str:
    return secrets.token_urlsafe(32)


def new_api_token() -> str:
    return API_TOKEN_PREFIX + secrets.token_urlsafe(32)


def csrf_for(session_token: str) -> str:
    """The CSRF token of a session, derived from its (secret) token."""
    mac = hmac.new(session_token.encode("utf-8"), b"fundflow csrf", hashlib.sha256)
    return mac.hexdigest()


def csrf_matches(expected_hash: str | None, sent: str | None) -> bool:
    """Whether the ``X-CSRF-Token`` sent hashes to the session's
    ``csrf_hash`` (constant-time comparison)."""
    if not expected_hash or not sent:
        return False
    return hmac.compare_digest(token_hash(sent), expected_hash)


def role_allows(role: str, needed: str) -> bool:
    """Whether ``role`` has at least the rights of ``needed``."""
    return ROLE_RANK.get(role, -1) >= ROLE_RANK[needed]


@dataclass(frozen=True, slots=True)
class Principal:
    """Who a request acts as. ``via`` is ``session``, ``api`` or
    ``anonymous`` (``--anonymous-loopback-viewer``); ``csrf_hash`` is the
    session's, checked on state-changing requests made with the cookie."""

    name: str
    role: str
    via: str
    token_hash: str | None = None
    csrf_hash: str | None = None


class LoginThrottle:
    """Refuses sign-in for a (client, name) pair after ``limit`` failures
    within ``window`` seconds, until the oldest of them leaves the window.
    In memory, per process; ``clock`` is injectable for tests."""

    def __init__(self, limit: int = 5, window: float = 300.0, clock=time.monotonic) -> None:  # type: ignore[no-untyped-def]
        if limit < 1 or window <= 0:
            raise ValueError(
                f"LoginThrottle needs limit >= 1 and window > 0, got {limit}, {window}"
            )
        self.limit = limit
        self.window = window
        self._clock = clock
        self._failures: dict[tuple[str, str], deque[float]] = {}
        self._lock = threading.Lock()

    def retry_after(self, client: str, name: str) -> int:
        """Seconds to wait before trying again (0: go ahead)."""
        now = self._clock()
        with self._lock:
            q = self._prune((client, name), now)
            if q is None or len(q) < self.limit:
                return 0
            return max(1, int(q[0] + self.window - now) + 1)

    def failed(self, client: str, name: str) -> None:
        now = self._clock()
        with self._lock:
            if len(self._failures) > 10_000:  # bounded memory under a name-spraying client
                self._failures.clear()
            self._failures.setdefault((client, name), deque()).append(now)

    def succeeded(self, client: str, name: str) -> None:
        with self._lock:
            self._failures.pop((client, name), None)

    def _prune(self, key: tuple[str, str], now: float) -> deque[float] | None:
        q = self._failures.get(key)
        if q is None:
            return None
        while q and q[0] <= now - self.window:
            q.popleft()
        if not q:
            del self._failures[key]
            return None
        return q


class PrincipalCache:
    """Verified tokens by their SHA-256: who they act as, until when the
    token is valid, and when it was checked. :meth:`get` answers a token
    checked less than ``ttl`` seconds ago (by ``clock``) and not expired;
    :meth:`forget_token` and :meth:`forget_user` drop what a sign-out, a
    role change or a disabled user makes stale. Bounded: past ``size``
    tokens the least recently used is dropped. Thread-safe."""

    def __init__(
        self,
        ttl: float = PRINCIPAL_TTL,
        size: int = PRINCIPAL_CACHE,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if ttl < 0 or size < 1:
            raise ValueError(f"PrincipalCache needs ttl >= 0 and size >= 1, got {ttl}, {size}")
        self.ttl = ttl
        self.size = size
        self._clock = clock
        self._kept: OrderedDict[str, tuple[Principal, datetime | None, float]] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, digest: str, via: str) -> Principal | None:
        """The principal of token ``digest`` used as ``via``, if checked
        within ``ttl`` and not expired; ``None``: ask the store."""
        now = self._clock()
        with self._lock:
            kept = self._kept.get(digest)
            if kept is None:
                return None
            principal, expires_at, checked = kept
            if now - checked >= self.ttl or principal.via != via:
                del self._kept[digest]
                return None
            self._kept.move_to_end(digest)
        if expires_at is not None and expires_at <= datetime.now(UTC):
            self.forget_token(digest)
            return None
        return principal

    def keep(self, digest: str, principal: Principal, expires_at: datetime | None) -> None:
        """Remember ``principal``, just verified from the store."""
        if self.ttl == 0:
            return
        now = self._clock()
        with self._lock:
            self._kept[digest] = (principal, expires_at, now)
            self._kept.move_to_end(digest)
            while len(self._kept) > self.size:
                self._kept.popitem(last=False)

    def forget_token(self, digest: str) -> None:
        with self._lock:
            self._kept.pop(digest, None)

    def forget_user(self, name: str) -> None:
        """Drop every token of user ``name`` (role changed, disabled)."""
        with self._lock:
            for digest in [d for d, (p, _, _) in self._kept.items() if p.name == name]:
                del self._kept[digest]
