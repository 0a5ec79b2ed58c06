"""``pip install`` commands as written in the Dockerfile and the docs, and
the rule they follow: the dependency tree comes from the lock
(``requirements/runtime.txt`` with ``--require-hashes``), the package on its
own (``--no-deps``); no requirement or version is written out by hand.
"""

from __future__ import annotations

import re
import shlex

LOCK = "requirements/runtime.txt"


def pip_install_calls(command: str) -> list[tuple[str, list[str]]]:
    """``(pip executable, arguments)`` of each ``pip install`` in a shell
    command line."""
    out = []
    for part in re.split(r"&&|;|\|\|", command):
        words = shlex.split(part, comments=True)
        for i, word in enumerate(words[:-1]):
            if (word == "pip" or word.endswith("/pip")) and words[i + 1] == "install":
                out.append((word, words[i + 2 :]))
    return out


def pip_installs(command: str) -> list[list[str]]:
    """The arguments of each ``pip install`` in a shell command line."""
    return [args for _, args in pip_install_calls(command)]


def locked(args: list[str]) -> bool:
    """The lock with hashes, or one package target (``.`` or a wheel) with
    ``--no-deps``."""
    if "--require-hashes" in args and "-r" in args:
        rest = [a for a in args if a not in ("-q", "--require-hashes")]
        return len(rest) == 2 and rest[0] == "-r" and rest[1].endswith(LOCK)
    if "--no-deps" in args:
        targets = [a for a in args if not a.startswith("-")]
        return len(targets) == 1 and (targets[0] == "." or targets[0].endswith(".whl"))
    return False
