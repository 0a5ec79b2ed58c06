"""Signed webhooks for new alerts and severity rises, delivered at least once.

The alert store keeps an outbox: the sink writes a notice (``new``,
``severity_rise``) in the transaction that stores the alert, and a delivery
per notice and hook (:meth:`~fundflow.store.AlertStore.due_deliveries`). The
deliverer here reads the due deliveries, POSTs each to its hook and records
the outcome in the store, so a crash or restart at any point loses nothing:
what was not recorded delivered is sent again, with the same body and the
same delivery id.

One delivery, one request::

    POST <url>
    Content-Type: application/json
    X-Fundflow-Delivery: <notice_id>          receivers deduplicate on it
    X-Fundflow-Event: new | severity_rise
    X-Fundflow-Signature: sha256=<hex HMAC-SHA256 of the body under the hook's key>

    {"alert": <the alert as of the noticed revision>, "event": "new", "notice_id": 12}

The body is the same bytes on every attempt (the alert as the store kept it
at that revision, :func:`fundflow.store.alert_json`). A 2xx answer is
delivered; any other status, a redirect, a timeout or a refused connection
is a failure, retried after a backoff that doubles from
``first_retry_seconds`` up to ``max_retry_seconds``, shortened by up to a
quarter by a jitter drawn from the notice id, hook and attempt (the same
every time, so tests are exact); after ``max_attempts`` failures the
delivery is ``dead`` until an admin retries it.

Hooks are ``[[webhooks]]`` tables of the configuration file
(:func:`load_hooks`); the HMAC key is read from ``secret_file``, never from
the configuration itself. Receivers check the signature with
:func:`verify`:

>>> key = b"0123456789abcdef0123"
>>> body = b'{"alert": {}, "event": "new", "notice_id": 1}'
>>> verify(body, signature(body, key), key)
True
>>> verify(body + b" ", signature(body, key), key)
False

Run it with ``fundflow notify`` (:mod:`fundflow.notify_cli`), or as a
background task of an asyncio program: ``await run(store, hooks, stop)``.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import http.client
import logging
import re
import socket
import tomllib
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import msgspec

from fundflow.redact import read_secret_file
from fundflow.schemas.records import SEVERITIES, SEVERITY_RANK

log = logging.getLogger("fundflow.notify")

EVENTS: tuple[str, ...] = ("new", "severity_rise")
SIGNATURE_HEADER = "X-Fundflow-Signature"
DELIVERY_HEADER = "X-Fundflow-Delivery"
EVENT_HEADER = "X-Fundflow-Event"
#: Shortest HMAC key accepted, in bytes.
MIN_KEY_BYTES = 16
#: How often the loop looks for due deliveries when there were none.
POLL_SECONDS = 2.0
#: Deliveries read from the store at a time.
BATCH = 100
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
_RESPONSE_READ = 64 * 1024  # what is read of an answer (and thrown away)


# --- hooks ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Hook:
    """One ``[[webhooks]]`` table, checked (see :func:`load_hooks`)."""

    name: str
    url: str
    key: bytes = field(repr=False)
    events: tuple[str, ...] = EVENTS
    min_severity: str = "low"
    timeout_seconds: float = 10.0
    max_attempts: int = 10
    first_retry_seconds: float = 30.0
    max_retry_seconds: float = 3600.0

    def wants(self, kind: str, severity: str) -> bool:
        """Whether a notice of ``kind`` at ``severity`` is for this hook."""
        return kind in self.events and SEVERITY_RANK[severity] >= SEVERITY_RANK[self.min_severity]

    def retry_delay(self, notice_id: int, attempts: int) -> timedelta:
        """The wait after the ``attempts``-th failure (1, 2, ...): the first
        retry delay doubled ``attempts - 1`` times, capped, then shortened by
        a jitter of 0 to 25 % drawn from the notice id, the hook and the
        attempt, so hooks and notices failing together spread out."""
        base = min(self.max_retry_seconds, self.first_retry_seconds * 2.0 ** min(attempts - 1, 60))
        digest = hashlib.sha256(f"{notice_id}:{self.name}:{attempts}".encode()).digest()
        jitter = int.from_bytes(digest[:8], "big") / 2**64
        return timedelta(seconds=base * (1.0 - 0.25 * jitter))


# The numeric settings: (default, lowest, highest); an int default takes ints only.
_NUMBERS: dict[str, tuple[float | int, float, float]] = {
    "timeout_seconds": (10.0, 0.001, 300),
    "max_attempts": (10, 1, 1000),
    "first_retry_seconds": (30.0, 0.001, 86400),
    "max_retry_seconds": (3600.0, 0.001, 7 * 86400),
}
_KEYS = {"name", "url", "secret_file", "events", "min_severity", *_NUMBERS}


def _number(where: str, raw: dict[str, Any], key: str) -> Any:
    default, lo, hi = _NUMBERS[key]
    value = raw.get(key, default)
    kind = int if isinstance(default, int) else (int, float)
    if isinstance(value, bool) or not isinstance(value, kind) or not lo <= value <= hi:
        what = "a whole number" if kind is int else "a number"
        raise ValueError(f"{where}.{key} must be {what} in {lo:g}..{hi:g}, got {value!r}")
    return value if kind is int else float(value)


def _hook(path: Path, index: int, raw: dict[str, Any]) -> Hook:
    where = f"{path}: webhooks[{index}]"
    unknown = sorted(set(raw) - _KEYS)
    if unknown:
        known = ", ".join(sorted(_KEYS))
        raise ValueError(f"{where}: unknown setting {unknown[0]}; known: {known}")
    for key in ("name", "url", "secret_file"):
        if not isinstance(raw.get(key), str) or not raw[key]:
            raise ValueError(f"{where}.{key} is required (a string)")
    name = raw["name"]
    if not _NAME.fullmatch(name):
        raise ValueError(f"{where}.name {name!r}: letters, digits, '_', '.', '-', at most 64")
    where = f"{path}: webhooks.{name}"
    url = raw["url"]
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"{where}.url must be an http:// or https:// URL with a host, got {url!r}")
    if parts.username is not None or parts.password is not None:
        raise ValueError(f"{where}.url must not carry credentials (the HMAC key signs requests)")
    secret = Path(raw["secret_file"]).expanduser()
    secret = secret if secret.is_absolute() else path.parent / secret
    key = read_secret_file(str(secret), f"webhooks.{name}.secret_file").encode()
    if len(key) < MIN_KEY_BYTES:
        raise ValueError(
            f"the secret file {secret} (webhooks.{name}.secret_file) holds {len(key)} bytes; "
            f"an HMAC key needs at least {MIN_KEY_BYTES}"
        )
    events = raw.get("events", list(EVENTS))
    if (
        not isinstance(events, list)
        or not events
        or any(e not in EVENTS for e in events)
        or len(set(events)) != len(events)
    ):
        raise ValueError(f"{where}.events must list some of {', '.join(EVENTS)}, got {events!r}")
    severity = raw.get("min_severity", "low")
    if severity not in SEVERITIES:
        raise ValueError(
            f"{where}.min_severity must be one of {', '.join(SEVERITIES)}, got {severity!r}"
        )
    first = _number(where, raw, "first_retry_seconds")
    cap = _number(where, raw, "max_retry_seconds")
    if cap < first:
        raise ValueError(
            f"{where}.max_retry_seconds ({cap:g}) is below first_retry_seconds ({first:g})"
        )
    return Hook(
        name=name,
        url=url,
        key=key,
        events=tuple(e for e in EVENTS if e in events),
        min_severity=severity,
        timeout_seconds=_number(where, raw, "timeout_seconds"),
        max_attempts=_number(where, raw, "max_attempts"),
        first_retry_seconds=first,
        max_retry_seconds=cap,
    )


def load_hooks(path: str | Path, *, required: bool = True) -> tuple[Hook, ...]:
    """The ``[[webhooks]]`` of the TOML file at ``path`` (other tables are
    the detectors' and the other shells'), each checked: ``name`` (unique),
    ``url`` (http/https, no credentials), ``secret_file`` (the HMAC key,
    at least 16 bytes; a relative path is relative to the file's folder),
    ``events`` (``new``, ``severity_rise``; both by default),
    ``min_severity`` (``low``), ``timeout_seconds`` (10), ``max_attempts``
    (10), ``first_retry_seconds`` (30), ``max_retry_seconds`` (3600).
    Raises ``ValueError`` with one line naming the bad value or unknown key;
    a missing file is an error too, and so is a file without hooks unless
    ``required`` is false (then it gives ``()``: ``fundflow serve`` with no
    hooks delivers nothing)."""
    path = Path(path)
    try:
        doc = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as e:
        raise ValueError(f"cannot read config {path}: {e.strerror or e}") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
        raise ValueError(f"config {path} is not valid TOML: {e}") from None
    tables = doc.get("webhooks", [])
    if not isinstance(tables, list) or not all(isinstance(t, dict) for t in tables):
        raise ValueError(f"{path}: webhooks must be tables written [[webhooks]]")
    if not tables and not required:
        return ()
    if not tables:
        raise ValueError(f"{path}: no [[webhooks]] table, so there is nothing to deliver to")
    hooks = [_hook(path, i, t) for i, t in enumerate(tables)]
    names = [h.name for h in hooks]
    for name in names:
        if names.count(name) > 1:
            raise ValueError(f"{path}: webhook name {name!r} is used twice")
    return tuple(hooks)


# --- signing --------------------------------------------------------------------


def signature(body: bytes, key: bytes) -> str:
    """The ``X-Fundflow-Signature`` value of ``body`` under ``key``."""
    return "sha256=" + hmac.new(key, body, hashlib.sha256).hexdigest()


def verify(body: bytes, header: str | None, key: bytes | str) -> bool:
    """Whether ``header`` (the request's ``X-Fundflow-Signature``) signs
    ``body`` (the raw bytes received, before any JSON parsing) under
    ``key`` (the hook's secret, as in its ``secret_file`` without the
    trailing newline). Constant-time; a missing or malformed header is
    ``False``, never an exception."""
    if isinstance(key, str):
        key = key.encode()
    if not isinstance(header, str) or not header.startswith("sha256="):
        return False
    expected = signature(body, key).encode()
    return hmac.compare_digest(expected, header.strip().lower().encode("ascii", "replace"))


def body_of(delivery: Any) -> bytes:
    """The request body of a delivery: its alert as of the noticed revision
    (the store's canonical bytes), the event and the notice id. The same
    bytes for every attempt and every hook."""
    from fundflow.store import alert_json

    notice = delivery.notice
    return msgspec.json.encode(
        {
            "alert": msgspec.Raw(alert_json(delivery.alert)),
            "event": notice.kind,
            "notice_id": notice.notice_id,
        }
    )


def headers_of(hook: Hook, delivery: Any, body: bytes) -> dict[str, str]:
    return {
        "Content-Type": "application/json",
        "User-Agent": "fundflow-webhook",
        DELIVERY_HEADER: str(delivery.notice.notice_id),
        EVENT_HEADER: delivery.notice.kind,
        SIGNATURE_HEADER: signature(body, hook.key),
    }


# --- one request ----------------------------------------------------------------


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    # urllib turns a POST answered 301/302/303 into a GET without the body:
    # a redirect is a failure to deliver, reported as such.
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


_OPENER = urllib.request.build_opener(_NoRedirect)


def post(url: str, body: bytes, headers: dict[str, str], timeout: float) -> str | None:
    """POSTs ``body``; ``None`` when answered 2xx, else the reason in one
    line (``HTTP 500``, ``timed out after 10 s``, ``connection refused``)."""
    request = urllib.request.Request(url, data=body, headers=headers, method="POST")
    try:
        with _OPENER.open(request, timeout=timeout) as response:
            response.read(_RESPONSE_READ)
            status = response.status
    except urllib.error.HTTPError as e:
        with e:
            moved = " (redirects are not followed)" if 300 <= e.code < 400 else ""
            return f"HTTP {e.code}{moved}"
    except urllib.error.URLError as e:
        return _reason(e.reason, timeout)
    except (OSError, http.client.HTTPException) as e:
        return _reason(e, timeout)
    return None if 200 <= status < 300 else f"HTTP {status}"


def _reason(e: object, timeout: float) -> str:
    if isinstance(e, TimeoutError | socket.timeout):
        return f"timed out after {timeout:g} s"
    if isinstance(e, ConnectionRefusedError):
        return "connection refused"
    if isinstance(e, BaseException):
        return " ".join(str(e).split()) or type(e).__name__
    return " ".join(str(e).split())


# --- the loop -------------------------------------------------------------------


@dataclass(slots=True)
class Pass:
    """What one pass over the due deliveries did."""

    delivered: int = 0
    failed: int = 0
    dead: int = 0
    skipped: int = 0

    @property
    def attempts(self) -> int:
        return self.delivered + self.failed + self.dead


Poster = Callable[[str, bytes, dict[str, str], float], "str | None"]


async def deliver_due(
    store: Any,
    hooks: Sequence[Hook],
    now: datetime,
    *,
    clock: Callable[[], datetime] | None = None,
    poster: Poster = post,
    limit: int = BATCH,
) -> Pass:
    """One pass: the deliveries due at ``now`` (at most ``limit``), each hook's
    in order, the hooks side by side. Requests run in threads; the store is
    called from the caller's thread only. After a failure the rest of that
    hook's batch waits for the next pass (a receiver that is down costs one
    timeout a pass, not one a delivery). A notice the hook does not take
    (its ``events``, its ``min_severity``) is recorded delivered with no
    request, so it leaves the outbox."""
    clock = clock or (lambda: datetime.now(UTC))
    by_name = {h.name: h for h in hooks}
    due = store.due_deliveries(list(by_name), now, limit)
    queues: dict[str, list[Any]] = {}
    for d in due:
        queues.setdefault(d.hook, []).append(d)
    done = Pass()

    async def one_hook(hook: Hook, deliveries: list[Any]) -> None:
        for d in deliveries:
            if not hook.wants(d.notice.kind, d.notice.severity):
                store.mark_delivered(d.notice_id, hook.name, clock())
                done.skipped += 1
                continue
            body = body_of(d)
            error = await asyncio.to_thread(
                poster, hook.url, body, headers_of(hook, d, body), hook.timeout_seconds
            )
            if error is None:
                store.mark_delivered(d.notice_id, hook.name, clock())
                done.delivered += 1
                continue
            attempts = d.attempts + 1
            dead = attempts >= hook.max_attempts
            next_at = None if dead else clock() + hook.retry_delay(d.notice_id, attempts)
            store.mark_failed(d.notice_id, hook.name, error, next_at, dead)
            if dead:
                done.dead += 1
                log.error(
                    "webhook %s: notice %s dead after %d attempts: %s",
                    hook.name, d.notice_id, attempts, error,
                )  # fmt: skip
            else:
                done.failed += 1
                log.warning(
                    "webhook %s: notice %s attempt %d failed (%s), next at %s",
                    hook.name, d.notice_id, attempts, error, next_at.isoformat(),
                )  # fmt: skip
            return

    await asyncio.gather(*(one_hook(by_name[name], ds) for name, ds in queues.items()))
    return done


async def run(
    store: Any,
    hooks: Sequence[Hook],
    stop: asyncio.Event,
    *,
    poll_seconds: float = POLL_SECONDS,
    clock: Callable[[], datetime] | None = None,
    poster: Poster = post,
    once: bool = False,
) -> Pass:
    """Delivers until ``stop`` is set (or, with ``once``, until a pass finds
    nothing due): a pass, then the next at once while passes find work and
    every request succeeds, else after ``poll_seconds``. ``store`` is an open alert store
    (:func:`fundflow.store.open_store`) used from this task's thread only;
    ``hooks`` come from :func:`load_hooks`. A store error ends a pass, is
    logged and retried next poll; it does not end the loop. Returns the
    totals. This is what ``fundflow serve`` runs as a background task and
    ``fundflow notify`` runs alone."""
    from fundflow.store import StoreError

    clock = clock or (lambda: datetime.now(UTC))
    total = Pass()
    while not stop.is_set():
        try:
            done = await deliver_due(store, hooks, clock(), clock=clock, poster=poster)
        except StoreError as e:
            log.error("webhooks: the alert store failed: %s", " ".join(str(e).split()))
            done = Pass()
            if once:
                raise
        for name in ("delivered", "failed", "dead", "skipped"):
            setattr(total, name, getattr(total, name) + getattr(done, name))
        if once:
            if done.attempts or done.skipped:
                continue
            break
        if (done.delivered or done.skipped) and not (done.failed or done.dead):
            continue  # more may be due: no wait while every request succeeds
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=poll_seconds)
    return total


__all__ = [
    "DELIVERY_HEADER",
    "EVENT_HEADER",
    "EVENTS",
    "Hook",
    "Pass",
    "SIGNATURE_HEADER",
    "body_of",
    "deliver_due",
    "headers_of",
    "load_hooks",
    "post",
    "run",
    "signature",
    "verify",
]
