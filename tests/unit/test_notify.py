"""The webhook deliverer's pure parts (fundflow/notify.py): the [[webhooks]]
settings, the signature and its check, the backoff, which notices a hook
takes. Delivery itself, against a real receiver and the real stores, is in
tests/integration/test_notify_delivery.py."""

from __future__ import annotations

import doctest
import hashlib
import hmac
import re
from datetime import timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner

from fundflow import notify
from fundflow.cli import main
from fundflow.detectors import load_config
from fundflow.notify import Hook, load_hooks, signature, verify

KEY = b"k" * 24


def write(tmp_path: Path, text: str, key: bytes | None = KEY) -> Path:
    if key is not None:
        (tmp_path / "hook.key").write_bytes(key + b"\n")
    path = tmp_path / "fundflow.toml"
    path.write_text(text, encoding="utf-8")
    return path


MINIMAL = """
[[webhooks]]
name = "cases"
url = "https://cases.example.org/fundflow"
secret_file = "hook.key"
"""


# --- settings -------------------------------------------------------------------------


def test_a_minimal_hook_takes_the_defaults(tmp_path: Path) -> None:
    (hook,) = load_hooks(write(tmp_path, MINIMAL))
    assert hook == Hook(
        name="cases",
        url="https://cases.example.org/fundflow",
        key=KEY,  # the file's trailing newline is not part of the key
        events=("new", "severity_rise"),
        min_severity="low",
        timeout_seconds=10.0,
        max_attempts=10,
        first_retry_seconds=30.0,
        max_retry_seconds=3600.0,
    )
    assert "kkkk" not in repr(hook)


def test_every_setting_is_read(tmp_path: Path) -> None:
    text = (
        MINIMAL
        + """events = ["severity_rise"]
min_severity = "high"
timeout_seconds = 2.5
max_attempts = 3
first_retry_seconds = 1
max_retry_seconds = 8

[[webhooks]]
name = "chat.ops-2"
url = "http://127.0.0.1:9000/in"
secret_file = "%s"
"""
        % (tmp_path / "hook.key")
    )
    first, second = load_hooks(write(tmp_path, text))
    assert (first.events, first.min_severity, first.timeout_seconds, first.max_attempts,
            first.first_retry_seconds, first.max_retry_seconds) == (
        ("severity_rise",), "high", 2.5, 3, 1.0, 8.0)  # fmt: skip
    assert (second.name, second.key) == ("chat.ops-2", KEY)


def test_the_detector_loader_accepts_a_file_with_webhooks(tmp_path: Path) -> None:
    cfg = load_config(write(tmp_path, MINIMAL + "\n[fund_pool]\nmin_sources = 25\n"))
    assert cfg.fund_pool.min_sources == 25


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ('colour = "red"\n', "webhooks[0]: unknown setting colour; known: events, "),
        ('events = ["new", "closed"]\n', "webhooks.cases.events must list some of new, severity_rise"),
        ("events = []\n", "webhooks.cases.events must list some of"),
        ('events = ["new", "new"]\n', "webhooks.cases.events must list some of"),
        ('min_severity = "urgent"\n', "webhooks.cases.min_severity must be one of low, medium, high, critical"),
        ("timeout_seconds = 0\n", "webhooks.cases.timeout_seconds must be a number in 0.001..300, got 0"),
        ("timeout_seconds = true\n", "webhooks.cases.timeout_seconds must be a number"),
        ("max_attempts = 2.5\n", "webhooks.cases.max_attempts must be a whole number in 1..1000, got 2.5"),
        ("max_attempts = 0\n", "webhooks.cases.max_attempts must be a whole number in 1..1000, got 0"),
        ("first_retry_seconds = 60\nmax_retry_seconds = 30\n",
         "webhooks.cases.max_retry_seconds (30) is below first_retry_seconds (60)"),
    ],
)  # fmt: skip
def test_a_bad_setting_is_one_line_naming_it(tmp_path: Path, extra: str, message: str) -> None:
    path = write(tmp_path, MINIMAL + extra)
    with pytest.raises(ValueError, match="^" + re.escape(f"{path}: {message}")):
        load_hooks(path)


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("ftp://cases.example.org/x", "must be an http:// or https:// URL with a host"),
        ("https:///x", "must be an http:// or https:// URL with a host"),
        ("https://user:pw@cases.example.org/x", "must not carry credentials"),
    ],
)
def test_a_bad_url_is_refused(tmp_path: Path, url: str, message: str) -> None:
    text = MINIMAL.replace("https://cases.example.org/fundflow", url)
    with pytest.raises(ValueError, match=message):
        load_hooks(write(tmp_path, text))


def test_the_key_comes_from_its_file_only(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="unknown setting secret;"):
        load_hooks(write(tmp_path, MINIMAL + 'secret = "inline-key-0123456789"\n'))
    (tmp_path / "hook.key").unlink()
    path = write(tmp_path, MINIMAL, key=None)
    where = r"\(webhooks\.cases\.secret_file\): No such file or directory$"
    with pytest.raises(ValueError, match=r"^cannot read the secret file .*/hook\.key " + where):
        load_hooks(path)


def test_a_short_key_is_refused_without_showing_it(tmp_path: Path) -> None:
    with pytest.raises(ValueError) as raised:
        load_hooks(write(tmp_path, MINIMAL, key=b"short-secret"))
    message = str(raised.value)
    assert message.endswith("holds 12 bytes; an HMAC key needs at least 16")
    assert "short-secret" not in message


def test_names_are_checked_and_unique(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="webhook name 'cases' is used twice"):
        load_hooks(write(tmp_path, MINIMAL + MINIMAL))
    with pytest.raises(ValueError, match=r"webhooks\[0\]\.name 'a b'"):
        load_hooks(write(tmp_path, MINIMAL.replace('"cases"', '"a b"')))
    with pytest.raises(ValueError, match=r"webhooks\[0\]\.url is required"):
        no_url = MINIMAL.replace('url = "https://cases.example.org/fundflow"\n', "")
        load_hooks(write(tmp_path, no_url))


def test_no_hooks_or_no_file_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="no \\[\\[webhooks\\]\\] table"):
        load_hooks(write(tmp_path, "[fund_pool]\nmin_sources = 25\n"))
    with pytest.raises(ValueError, match="webhooks must be tables written"):
        load_hooks(write(tmp_path, "[webhooks]\nname = 'x'\n"))
    with pytest.raises(ValueError, match="cannot read config"):
        load_hooks(tmp_path / "missing.toml")
    # where hooks are optional (fundflow serve), none is no deliverer
    assert load_hooks(write(tmp_path, "[fund_pool]\nmin_sources = 25\n"), required=False) == ()
    with pytest.raises(ValueError, match="cannot read config"):
        load_hooks(tmp_path / "missing.toml", required=False)
    (hook,) = load_hooks(write(tmp_path, MINIMAL), required=False)
    assert hook.name == "cases"


def test_the_command_says_a_bad_config_in_one_line(tmp_path: Path) -> None:
    path = write(tmp_path, MINIMAL + "max_attempts = 0\n")
    result = CliRunner().invoke(
        main, ["notify", "--config", str(path), "--db", str(tmp_path / "x.db")]
    )
    assert result.exit_code == 2
    assert result.output.strip().splitlines() == [
        f"fundflow: {path}: webhooks.cases.max_attempts must be a whole number in 1..1000, got 0"
    ]


# --- signature ------------------------------------------------------------------------


def test_the_signature_is_hmac_sha256_of_the_body() -> None:
    body = b'{"alert":{},"event":"new","notice_id":7}'
    expected = hmac.new(KEY, body, hashlib.sha256).hexdigest()
    assert signature(body, KEY) == f"sha256={expected}"
    # a fixed vector, so a change of algorithm or encoding cannot pass unseen
    # (openssl dgst -sha256 -hmac 0123456789abcdef of "{}")
    assert signature(b"{}", b"0123456789abcdef") == (
        "sha256=f91e3e9f05cc2df64ac1c26f8adccdffda8d1e4a7a8c50a1a08eeadac6ddfec5"
    )


def test_the_module_example_runs() -> None:
    assert doctest.testmod(notify) == (0, 4)  # (failed, attempted)


@pytest.mark.parametrize(
    "header",
    [None, "", "sha256=", "sha1=abc", "sha256=zz", "sha256=" + "0" * 64, "0" * 64],
)
def test_verify_refuses_a_bad_header(header: str | None) -> None:
    assert verify(b"{}", header, KEY) is False


def test_verify_takes_the_key_as_text_or_bytes_and_an_upper_case_digest() -> None:
    body = b'{"a": 1}'
    sig = signature(body, KEY)
    assert verify(body, sig, KEY) and verify(body, sig, KEY.decode())
    assert verify(body, "sha256=" + sig[7:].upper(), KEY)
    assert not verify(body, sig, KEY + b"x")
    assert not verify(body[:-1], sig, KEY)


# --- backoff and subscription -----------------------------------------------------------


def hook(**kw: object) -> Hook:
    return Hook(name="h", url="http://127.0.0.1:1/", key=KEY, **kw)  # type: ignore[arg-type]


def test_the_backoff_doubles_to_the_cap_with_a_jitter_of_up_to_a_quarter() -> None:
    h = hook(first_retry_seconds=10.0, max_retry_seconds=60.0)
    delays = [h.retry_delay(42, n).total_seconds() for n in range(1, 7)]
    bases = [10, 20, 40, 60, 60, 60]
    for delay, base in zip(delays, bases, strict=True):
        assert 0.75 * base < delay <= base
    # deterministic, from the notice id, the hook and the attempt
    assert delays == [h.retry_delay(42, n).total_seconds() for n in range(1, 7)]
    assert h.retry_delay(43, 1) != h.retry_delay(42, 1)
    assert hook(first_retry_seconds=10.0).retry_delay(42, 1) == h.retry_delay(42, 1)
    digest = hashlib.sha256(b"42:h:1").digest()
    assert h.retry_delay(42, 1) == timedelta(
        seconds=10.0 * (1 - 0.25 * int.from_bytes(digest[:8], "big") / 2**64)
    )


def test_a_huge_attempt_count_stays_at_the_cap() -> None:
    assert hook(max_retry_seconds=60.0).retry_delay(1, 10_000) <= timedelta(seconds=60)


def test_a_hook_takes_its_events_at_or_above_its_severity() -> None:
    h = hook(events=("severity_rise",), min_severity="high")
    assert h.wants("severity_rise", "high") and h.wants("severity_rise", "critical")
    assert not h.wants("severity_rise", "medium")
    assert not h.wants("new", "critical")
    assert hook().wants("new", "low")
