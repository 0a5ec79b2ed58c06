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
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import threading
import time
from collections import deque
from dataclasses import dataclass

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
