"""Account numbers in logs: hashed, shown or left out.

Logs are read by more people, and kept longer, than the alert store; an
account number in a log line is personal data outside the evidence that
needs it. :class:`AccountRedactor` rewrites the account fields of any
record, dead letter or alert that a log line quotes (JSON ``"debit_account":
"..."``, Python ``debit_account='...'``, and the ``accounts`` list of an
alert), in one of three modes:

* ``hash`` (the default): ``acct:`` and the first 16 hex digits of an
  HMAC-SHA256 under a key, so one account reads the same in every line and
  can be matched against the store by whoever holds the key, and by no one
  else;
* ``plain``: unchanged;
* ``omit``: ``acct:***``.

Settings come from the ``[logging]`` table of the configuration file, then
the environment: ``account_ids`` / ``FUNDFLOW_LOG_ACCOUNT_IDS``, and the key
from ``FUNDFLOW_LOG_KEY`` or the file named by ``FUNDFLOW_LOG_KEY_FILE``
(never from the file or a flag, which others may read). Without a key a
random one is drawn at start-up: hashes then match within one run only.

>>> r = AccountRedactor("hash", key=b"k")
>>> r.text('{"txn_id":"T1","debit_account":"6222020200112233","amount":"5.00"}')
'{"txn_id":"T1","debit_account":"acct:ff47d4f0d9168769","amount":"5.00"}'
>>> AccountRedactor("omit").text("Flow(src_account='6222020200112233', amount=5)")
"Flow(src_account='acct:***', amount=5)"
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
import re
import secrets
import tomllib
from collections.abc import Mapping
from pathlib import Path

MODES = ("hash", "plain", "omit")
ENV_MODE = "FUNDFLOW_LOG_ACCOUNT_IDS"
ENV_KEY = "FUNDFLOW_LOG_KEY"
ENV_KEY_FILE = "FUNDFLOW_LOG_KEY_FILE"

#: Field names that hold an account number, in records, flows and alerts.
ACCOUNT_FIELDS = (
    "account_id",
    "debit_account",
    "credit_account",
    "payer_account",
    "payee_account",
    "borrower_account",
    "src_account",
    "dst_account",
    "account",
)
_NAMES = "|".join(sorted(ACCOUNT_FIELDS, key=len, reverse=True))
# "field": "value" (JSON) and field='value' / field="value" (Python reprs, kwargs).
_JSON_FIELD = re.compile(r'("(?:' + _NAMES + r')"\s*:\s*")((?:[^"\\]|\\.)*)(")')
_REPR_FIELD = re.compile(
    r"(\b(?:" + _NAMES + r")=')([^']*)(')" + r"|(\b(?:" + _NAMES + r')=")([^"]*)(")'
)
# 'field': 'value' (a Python dict's repr).
_DICT_FIELD = re.compile(r"('(?:" + _NAMES + r")'\s*:\s*')([^']*)(')")
_ACCOUNT_LIST = re.compile(r'("accounts"\s*:\s*\[)([^\]]*)(\])|(\baccounts=\()([^)]*)(\))')
_STRING = re.compile(r'"((?:[^"\\]|\\.)*)"' + r"|'([^']*)'")


class AccountRedactor:
    """Rewrites account numbers in log text (see the module docstring)."""

    def __init__(self, mode: str = "hash", key: bytes | None = None) -> None:
        if mode not in MODES:
            raise ValueError(f"logging.account_ids must be one of {', '.join(MODES)}, got {mode!r}")
        self.mode = mode
        self._key = key if key else secrets.token_bytes(32)

    def account(self, account_id: str) -> str:
        """One account number as it may appear in a log."""
        if self.mode == "plain":
            return account_id
        if self.mode == "omit":
            return "acct:***"
        digest = hmac.new(self._key, account_id.encode("utf-8", "surrogatepass"), hashlib.sha256)
        return "acct:" + digest.hexdigest()[:16]

    def text(self, message: str) -> str:
        """``message`` with the value of every account field rewritten."""
        if self.mode == "plain":
            return message
        message = _JSON_FIELD.sub(lambda m: m[1] + self.account(m[2]) + m[3], message)
        message = _REPR_FIELD.sub(self._repr_field, message)
        message = _DICT_FIELD.sub(lambda m: m[1] + self.account(m[2]) + m[3], message)
        return _ACCOUNT_LIST.sub(self._account_list, message)

    def _repr_field(self, m: re.Match[str]) -> str:
        if m[1] is not None:
            return m[1] + self.account(m[2]) + m[3]
        return m[4] + self.account(m[5]) + m[6]

    def _account_list(self, m: re.Match[str]) -> str:
        head, body, tail = (m[1], m[2], m[3]) if m[1] is not None else (m[4], m[5], m[6])

        def one(s: re.Match[str]) -> str:
            if s[1] is not None:
                return '"' + self.account(s[1]) + '"'
            return "'" + self.account(s[2]) + "'"

        return head + _STRING.sub(one, body) + tail


class RedactingFilter(logging.Filter):
    """A handler filter: the message and the traceback of every record it
    passes have their account numbers rewritten by ``redactor``."""

    def __init__(self, redactor: AccountRedactor) -> None:
        super().__init__()
        self.redactor = redactor
        self._formatter = logging.Formatter()

    def filter(self, record: logging.LogRecord) -> bool:
        if self.redactor.mode == "plain":
            return True
        record.msg = self.redactor.text(record.getMessage())
        record.args = None
        if record.exc_info and not record.exc_text:
            record.exc_text = self._formatter.formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = self.redactor.text(record.exc_text)
        return True


def install(redactor: AccountRedactor, logger: logging.Logger | None = None) -> RedactingFilter:
    """Adds a :class:`RedactingFilter` to every handler of ``logger`` (the
    root logger by default, after ``logging.basicConfig``): records that
    propagate from any module pass through it."""
    target = logger if logger is not None else logging.getLogger()
    flt = RedactingFilter(redactor)
    for handler in target.handlers:
        handler.addFilter(flt)
    return flt


def load_redactor(
    path: str | Path | None = None, env: Mapping[str, str] | None = None
) -> AccountRedactor:
    """The redactor the settings ask for: ``[logging] account_ids`` of the
    TOML file at ``path``, overridden by ``FUNDFLOW_LOG_ACCOUNT_IDS``; the key
    from ``FUNDFLOW_LOG_KEY`` or ``FUNDFLOW_LOG_KEY_FILE``. Raises
    ``ValueError`` (one line, never the key) on a bad setting or an
    unreadable key file."""
    env = os.environ if env is None else env
    mode = "hash"
    if path is not None:
        try:
            table = tomllib.loads(Path(path).read_text(encoding="utf-8")).get("logging", {})
        except OSError as e:
            raise ValueError(f"cannot read {path}: {e.strerror or e}") from None
        except tomllib.TOMLDecodeError as e:
            raise ValueError(f"{path} is not valid TOML: {e}") from None
        if not isinstance(table, dict):
            raise ValueError(f"{path}: [logging] must be a table")
        unknown = sorted(set(table) - {"account_ids"})
        if unknown:
            raise ValueError(f"{path}: unknown setting logging.{unknown[0]}; known: account_ids")
        mode = table.get("account_ids", mode)
    mode = env.get(ENV_MODE) or mode
    key: bytes | None = None
    if env.get(ENV_KEY):
        key = env[ENV_KEY].encode()
    elif env.get(ENV_KEY_FILE):
        key = read_secret_file(env[ENV_KEY_FILE], ENV_KEY_FILE).encode()
    return AccountRedactor(mode, key)


def read_secret_file(path: str, what: str) -> str:
    """The secret held in the file at ``path`` (one trailing newline removed,
    as ``echo`` and editors leave one). ``ValueError`` names the file and
    ``what`` pointed at it, never the content."""
    try:
        with open(path, encoding="utf-8") as fh:
            value = fh.read()
    except (OSError, UnicodeDecodeError) as e:
        reason = getattr(e, "strerror", None) or "not UTF-8 text"
        raise ValueError(f"cannot read the secret file {path} ({what}): {reason}") from None
    value = value[:-1] if value.endswith("\n") else value
    value = value[:-1] if value.endswith("\r") else value
    if not value:
        raise ValueError(f"the secret file {path} ({what}) is empty")
    return value


__all__ = [
    "ACCOUNT_FIELDS",
    "MODES",
    "AccountRedactor",
    "RedactingFilter",
    "install",
    "load_redactor",
    "read_secret_file",
]
