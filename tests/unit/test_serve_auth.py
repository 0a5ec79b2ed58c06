"""Passwords, tokens, CSRF and the sign-in throttle of fundflow serve."""

from __future__ import annotations

import pytest

from fundflow.serve.auth import (
    LoginThrottle,
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
