"""Passwords, tokens, CSRF and the sign-in throttle of fundflow serve."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from fundflow.serve.auth import (
    LoginThrottle,
    Principal,
    PrincipalCache,
    check_password_rules,
    check_user_name,
    csrf_for,
    csrf_matches,
    hash_password,
    new_api_token,
    role_allows,
    token_hash,
    verify_password,
)


def test_password_hash_is_argon2id_and_verifies() -> None:
    h = hash_password("correct horse battery")
    assert h.startswith("$argon2id$")
    assert verify_password(h, "correct horse battery")
    assert not verify_password(h, "correct horse batterY")
    assert not verify_password(None, "correct horse battery")
    assert not verify_password("not a hash", "x")


def test_password_rules() -> None:
    check_password_rules("12345678")
    with pytest.raises(ValueError, match="at least 8"):
        check_password_rules("1234567")
    with pytest.raises(ValueError, match="at most 1024"):
        check_password_rules("x" * 1025)


@pytest.mark.parametrize("name", ["wang", "li.ming", "a@b-c_d", "x" * 64])
def test_good_names(name: str) -> None:
    check_user_name(name)


@pytest.mark.parametrize("name", ["", " wang", "-x", "x" * 65, "a b", "<b>", "' OR 1=1", "王"])
def test_bad_names(name: str) -> None:
    with pytest.raises(ValueError, match="user name"):
        check_user_name(name)


def test_tokens_and_csrf() -> None:
    t = new_api_token()
    assert t.startswith("ffk_") and len(t) > 40 and new_api_token() != t
    assert len(token_hash(t)) == 64 and token_hash(t) == token_hash(t)
    csrf = csrf_for("session-token")
    assert csrf == csrf_for("session-token") != csrf_for("other-session")
    assert csrf_matches(token_hash(csrf), csrf)
    assert not csrf_matches(token_hash(csrf), csrf + "x")
    assert not csrf_matches(token_hash(csrf), None)
    assert not csrf_matches(None, csrf)


def test_roles_are_ordered() -> None:
    assert role_allows("admin", "analyst") and role_allows("analyst", "viewer")
    assert not role_allows("viewer", "analyst") and not role_allows("analyst", "admin")
    assert not role_allows("guest", "viewer")


def test_throttle_refuses_after_the_limit_and_forgets_after_the_window() -> None:
    now = [1000.0]
    th = LoginThrottle(limit=3, window=60, clock=lambda: now[0])
    for _ in range(3):
        assert th.retry_after("1.2.3.4", "wang") == 0
        th.failed("1.2.3.4", "wang")
    assert th.retry_after("1.2.3.4", "wang") == 61
    assert th.retry_after("1.2.3.4", "li") == 0  # another name
    assert th.retry_after("5.6.7.8", "wang") == 0  # another client
    now[0] += 30
    assert th.retry_after("1.2.3.4", "wang") == 31
    now[0] += 31
    assert th.retry_after("1.2.3.4", "wang") == 0
    th.failed("1.2.3.4", "wang")
    th.succeeded("1.2.3.4", "wang")
    assert th.retry_after("1.2.3.4", "wang") == 0


def test_throttle_checks_its_settings() -> None:
    with pytest.raises(ValueError, match="limit"):
        LoginThrottle(limit=0)


class _Clock:
    def __init__(self) -> None:
        self.now = 50.0

    def __call__(self) -> float:
        return self.now


def _principal(name: str, via: str = "api") -> Principal:
    return Principal(name=name, role="viewer", via=via, token_hash="h-" + name)


def test_principal_cache_believes_a_token_for_its_ttl() -> None:
    clock = _Clock()
    cache = PrincipalCache(ttl=5.0, size=10, clock=clock)
    ana = _principal("ana")
    assert cache.get("d1", "api") is None
    cache.keep("d1", ana, None)
    clock.now += 4.9
    assert cache.get("d1", "api") is ana
    assert cache.get("d1", "session") is None  # an API token is no session
    cache.keep("d1", ana, None)
    clock.now += 5.0
    assert cache.get("d1", "api") is None
    assert PrincipalCache(ttl=0).get("d1", "api") is None


def test_principal_cache_checks_the_token_expiry_at_every_get() -> None:
    cache = PrincipalCache(clock=_Clock())
    cache.keep("gone", _principal("ana"), datetime.now(UTC) - timedelta(seconds=1))
    cache.keep("later", _principal("vic"), datetime.now(UTC) + timedelta(hours=1))
    assert cache.get("gone", "api") is None
    assert cache.get("later", "api") == _principal("vic")


def test_principal_cache_forgets_tokens_and_users_and_stays_bounded() -> None:
    cache = PrincipalCache(size=3, clock=_Clock())
    for digest, name in [("a1", "ana"), ("a2", "ana"), ("v1", "vic")]:
        cache.keep(digest, _principal(name), None)
    cache.forget_user("ana")
    assert [cache.get(d, "api") for d in ("a1", "a2")] == [None, None]
    cache.forget_token("v1")
    assert cache.get("v1", "api") is None
    for i in range(5):
        cache.keep(f"t{i}", _principal(f"u{i}"), None)
        cache.get("t0", "api")  # the most recently used stays
    kept = [cache.get(f"t{i}", "api") is not None for i in range(5)]
    assert kept == [True, False, False, True, True]


def test_principal_cache_checks_its_settings() -> None:
    with pytest.raises(ValueError, match="ttl >= 0 and size >= 1, got -1"):
        PrincipalCache(ttl=-1)
    with pytest.raises(ValueError, match="got 5.0, 0"):
        PrincipalCache(size=0)
