"""``fundflow users ...`` and the start-up checks of ``fundflow serve``."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from fundflow.cli import main
from fundflow.serve.auth import token_hash, verify_password
from fundflow.store import open_sink, open_store

PASSWORD = "correct horse battery"


@pytest.fixture
def db(tmp_path: Path) -> str:
    path = str(tmp_path / "alerts.db")
    with open_sink(path):
        pass
    return path


def run(*args: str, input: str | None = None):  # type: ignore[no-untyped-def]
    return CliRunner().invoke(main, list(args), input=input)


def test_add_from_stdin_and_file_then_list(db: str, tmp_path: Path) -> None:
    r = run("users", "add", "wang", "--role", "analyst", "--password-stdin", "--db", db,
            input=PASSWORD + "\n")  # fmt: skip
    assert r.exit_code == 0, r.output
    secret = tmp_path / "pw"
    secret.write_text("another good one\nignored\n")
    r = run("users", "add", "li", "--role", "viewer", "--password-file", str(secret), "--db", db)
    assert r.exit_code == 0, r.output
    with open_store(db) as st:
        wang, li = st.get_user("wang"), st.get_user("li")
    assert wang.role == "analyst" and verify_password(wang.password_hash, PASSWORD)
    assert li.role == "viewer" and verify_password(li.password_hash, "another good one")
    assert PASSWORD not in wang.password_hash
    listed = run("users", "list", "--db", db).output.splitlines()
    assert listed[0].split() == ["name", "role", "state", "created_at"]
    assert [line.split()[:3] for line in listed[1:]] == [
        ["li", "viewer", "enabled"], ["wang", "analyst", "enabled"]
    ]  # fmt: skip


@pytest.mark.parametrize(
    "args, input, message",
    [
        (["users", "add", "wang", "--role", "analyst"], None, "no terminal"),
        (
            ["users", "add", "wang", "--role", "analyst", "--password-stdin"],
            "short\n",
            "at least 8",
        ),
        (
            ["users", "add", "bad name", "--role", "analyst", "--password-stdin"],
            PASSWORD,
            "user name",
        ),
        (["users", "passwd", "ghost", "--password-stdin"], PASSWORD, "no user ghost"),
        (["users", "role", "ghost", "admin"], None, "no user ghost"),
        (["users", "disable", "ghost"], None, "no user ghost"),
        (["users", "token", "ghost"], None, "no user ghost"),
    ],
)
def test_user_errors_are_one_line_exit_2(
    db: str, args: list[str], input: str | None, message: str
) -> None:
    r = run(*args, "--db", db, input=input)
    assert r.exit_code == 2, r.output
    assert message in r.output and "Traceback" not in r.output


def test_duplicate_user_is_refused(db: str) -> None:
    for expected in (0, 2):
        r = run("users", "add", "wang", "--role", "viewer", "--password-stdin", "--db", db,
                input=PASSWORD)  # fmt: skip
        assert r.exit_code == expected


def test_passwd_role_disable_and_token(db: str) -> None:
    run("users", "add", "wang", "--role", "viewer", "--password-stdin", "--db", db, input=PASSWORD)
    r = CliRunner().invoke(main, ["users", "token", "wang", "--expires-days", "30", "--db", db])
    assert r.exit_code == 0, r.output
    secret = r.stdout.strip()
    assert secret.startswith("ffk_") and "\n" not in secret
    with open_store(db) as st:
        tok = st.get_token(token_hash(secret))
        assert tok is not None and tok.kind == "api" and tok.user == "wang"
        assert tok.expires_at is not None
    assert run("users", "role", "wang", "analyst", "--db", db).exit_code == 0
    assert (
        run(
            "users", "passwd", "wang", "--password-stdin", "--db", db, input="a new password"
        ).exit_code
        == 0
    )
    with open_store(db) as st:
        user = st.get_user("wang")
        assert user.role == "analyst" and verify_password(user.password_hash, "a new password")
        assert st.get_token(token_hash(secret)) is None  # a new password revokes the old tokens
    assert run("users", "disable", "wang", "--db", db).exit_code == 0
    with open_store(db) as st:
        assert st.get_user("wang").disabled
    r = run("users", "token", "wang", "--db", db)
    assert r.exit_code == 2 and "disabled" in r.output


def test_serve_refuses_a_missing_store_and_half_tls(tmp_path: Path, db: str) -> None:
    r = run("serve", "--db", str(tmp_path / "none.db"))
    assert r.exit_code == 2 and "not found" in r.output
    cert = tmp_path / "c.pem"
    cert.write_text("x")
    r = run("serve", "--db", db, "--cert", str(cert))
    assert r.exit_code == 2 and "both --cert and --key" in r.output
    r = run("serve", "--db", db, "--data", str(tmp_path / "no-dump.jsonl"))
    assert r.exit_code == 2 and "no-dump.jsonl" in r.output
