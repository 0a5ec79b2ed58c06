"""Every file the documentation names exists in the repository.

Read: README.md, deploy/**/README.md, streams/README.md, docs/*.md, the
output of ``fundflow config --defaults`` and schemas/json/*.json.

What counts as a reference:

* Markdown: the target of every link or image, inline (``[text](target)``)
  or by definition (``[label]: target``), unless it is a URL (``scheme:``);
  and every word of an inline code span that is a file path ending in
  .md, .py, .toml, .json, .yaml, .yml, .sh or .c (a pytest node id
  ``path::test`` counts by its path). Fenced code blocks are examples
  (commands and the files they write) and are not read, nor is prose.
* The TOML text and the JSON schema files (no markup; every string of the
  JSON): every word that is such a path, after URLs are taken out.

How a reference resolves:

* A path with a ``/`` is relative to the file that names it or to the
  repository root (the root for the ``--defaults`` text), must stay inside
  the repository (``../shared/...`` does not), and must be a file or folder
  of it. The repository is what git tracks plus untracked files it does
  not ignore.
* A bare file name (no ``/``) must be the name of a file in the repository,
  wherever it is (README lists tests by file name, under tests/unit/).
* Names of files the program writes (:data:`OUTPUTS`) are not repository
  files and are not looked up.
* A ``#anchor`` on a link to a Markdown file, or alone (the same file),
  must be a heading of that file, as GitHub makes anchors of headings.

Not references: absolute paths (``/etc/...``), home and variable paths
(``~/.pgpass``, ``$FUNDFLOW_KAFKA_HOME/...``), globs (``*.json``).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from fundflow.cli import main

ROOT = Path(__file__).resolve().parents[2]

#: Files the program writes, named in the documentation as outputs.
OUTPUTS = frozenset({"truth.json"})

EXTENSIONS = ("md", "py", "toml", "json", "yaml", "yml", "sh", "c")
# A path word: starts with a letter, digit or underscore, not inside a longer
# word, an absolute path, a glob or a variable; ends in one of the extensions
# (a sentence's full stop after it is allowed, `msgspec.json.encode` is not a file).
PATH_WORD = re.compile(
    r"(?<![\w./$~*-])([\w][\w.-]*(?:/[\w.-]+)*\.(?:" + "|".join(EXTENSIONS) + r"))(?![\w/-]|\.\w)"
)
URL = re.compile(r"\b[a-zA-Z][a-zA-Z0-9+.-]*://\S+")
SCHEME = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*:")
FENCE = re.compile(r"^\s*(```|~~~)")
INLINE_LINK = re.compile(r"!?\[(?:[^\[\]]|\[[^\]]*\])*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
LINK_DEFINITION = re.compile(r"^\s{0,3}\[[^\]]+\]:\s*<?(\S+?)>?(?:\s+.*)?$")
CODE_SPAN = re.compile(r"(`+)(.+?)\1")
HEADING = re.compile(r"^\s{0,3}(#{1,6})\s+(.*?)\s*#*\s*$")
HTML_ANCHOR = re.compile(r"<a\s+(?:name|id)=\"([^\"]+)\"")


def repository_files(root: Path = ROOT) -> set[str]:
    """Repository-relative paths (``/``-separated) of every file git tracks
    or would track; a plain walk when git cannot tell."""
    try:
        out = subprocess.run(
            ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
            cwd=root,
            capture_output=True,
            check=True,
        ).stdout
    except (OSError, subprocess.CalledProcessError):
        files = set()
        for folder, dirs, names in os.walk(root):
            dirs[:] = [d for d in dirs if not d.startswith(".") and d != "__pycache__"]
            rel = Path(folder).relative_to(root)
            files.update((rel / n).as_posix() for n in names)
        return files
    return {p for p in out.decode().split("\0") if p and (root / p).exists()}


def folders_of(files: set[str]) -> set[str]:
    out = {""}
    for f in files:
        parts = f.split("/")[:-1]
        out.update("/".join(parts[: i + 1]) for i in range(len(parts)))
    return out


def slug(heading: str) -> str:
    """GitHub's anchor for a heading's text: lower case, punctuation
    dropped (letters of any script, digits, ``_`` and ``-`` stay), spaces
    to hyphens.

    >>> slug("`fund_pool` — 资金池"), slug("What the demo prints")
    ('fund_pool--资金池', 'what-the-demo-prints')
    """
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def anchors(markdown: str) -> set[str]:
    """The anchors of a Markdown text: its headings' slugs (a repeated
    heading gets ``-1``, ``-2``, ... as on GitHub) and explicit ``<a id>``."""
    seen: dict[str, int] = {}
    out: set[str] = set(HTML_ANCHOR.findall(markdown))
    for line in prose_lines(markdown):
        m = HEADING.match(line[1])
        if not m:
            continue
        base = slug(m.group(2))
        n = seen.get(base, 0)
        seen[base] = n + 1
        out.add(base if n == 0 else f"{base}-{n}")
    return out


def prose_lines(markdown: str) -> Iterator[tuple[int, str]]:
    """(line number, line) of a Markdown text outside fenced code blocks."""
    fenced = False
    for n, line in enumerate(markdown.splitlines(), start=1):
        if FENCE.match(line):
            fenced = not fenced
            continue
        if not fenced:
            yield n, line


def markdown_references(text: str) -> Iterator[tuple[int, str, bool]]:
    """(line, reference, is a link) for every link target and every path
    word of an inline code span."""
    for n, line in prose_lines(text):
        spans = list(CODE_SPAN.finditer(line))
        for span in spans:
            for word in PATH_WORD.findall(span.group(2)):
                yield n, word, False
        # Links: what is left once code spans are blanked (a span may show
        # link syntax without being one).
        bare = CODE_SPAN.sub(lambda m: " " * len(m.group(0)), line)
        for target in INLINE_LINK.findall(bare):
            yield n, target, True
        m = LINK_DEFINITION.match(bare)
        if m:
            yield n, m.group(1), True


def plain_references(text: str) -> Iterator[tuple[int, str, bool]]:
    for n, line in enumerate(text.splitlines(), start=1):
        for word in PATH_WORD.findall(URL.sub(" ", line)):
            yield n, word, False


def json_strings(value: object) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for k, v in value.items():
            yield k
            yield from json_strings(v)
    elif isinstance(value, list):
        for v in value:
            yield from json_strings(v)


class Checker:
    """Resolves references against one repository's files."""

    def __init__(self, root: Path = ROOT, files: set[str] | None = None) -> None:
        self.root = root
        self.files = repository_files(root) if files is None else files
        self.folders = folders_of(self.files)
        self.names = {f.rsplit("/", 1)[-1] for f in self.files}
        self._anchors: dict[str, set[str]] = {}

    def exists(self, rel: str) -> bool:
        return rel in self.files or rel in self.folders

    def anchors_of(self, rel: str) -> set[str]:
        if rel not in self._anchors:
            self._anchors[rel] = anchors((self.root / rel).read_text(encoding="utf-8"))
        return self._anchors[rel]

    def problem(self, ref: str, folder: str, document: str | None, link: bool) -> str | None:
        """Why ``ref``, named in a file in ``folder`` (repository-relative;
        ``document`` is that file, when it is Markdown), does not resolve;
        ``None`` when it does."""
        if link and SCHEME.match(ref):
            return None  # a URL (http:, https:, mailto:)
        path, _, anchor = ref.partition("#") if link else (ref, "", "")
        path = path.split("::", 1)[0]
        if not path:
            target = document  # an anchor in the same file
        elif "/" not in path.rstrip("/") and not link:
            if path in OUTPUTS or path in self.names:
                return None
            return f"{ref}: no file of that name in the repository"
        else:
            target = None
            for base in (folder, ""):
                rel = os.path.normpath(os.path.join(base, path)).replace(os.sep, "/")
                if rel == ".":
                    rel = ""
                if rel == ".." or rel.startswith("../"):
                    continue
                if self.exists(rel):
                    target = rel
                    break
            if target is None:
                return f"{ref}: not a file or folder of the repository"
        if (
            anchor
            and target is not None
            and target.endswith(".md")
            and anchor not in self.anchors_of(target)
        ):
            return f"{ref}: no heading #{anchor} in {target}"
        return None


CHECKER = Checker()


def _markdown_sources() -> list[str]:
    found = ["README.md", "streams/README.md"]
    found += sorted(f for f in CHECKER.files if re.fullmatch(r"deploy/(.+/)?README\.md", f))
    found += sorted(f for f in CHECKER.files if re.fullmatch(r"docs/[^/]+\.md", f))
    return found


MARKDOWN = _markdown_sources()
SCHEMA_FILES = sorted(f for f in CHECKER.files if re.fullmatch(r"schemas/json/[^/]+\.json", f))


def _broken(
    refs: Iterator[tuple[int, str, bool]], name: str, folder: str, document: str | None
) -> list[str]:
    """``name:line: why`` for every reference that does not resolve."""
    out = []
    for line, ref, link in refs:
        why = CHECKER.problem(ref, folder, document, link)
        if why is not None:
            out.append(f"{name}:{line}: {why}")
    return out


def test_the_documentation_is_there() -> None:
    assert {"docs/wire-format.md", "docs/detectors.md", "docs/architecture.md"} <= set(MARKDOWN)
    assert "deploy/README.md" in MARKDOWN and "deploy/postgres/README.md" in MARKDOWN
    assert "schemas/json/alert.schema.json" in SCHEMA_FILES


@pytest.mark.parametrize("document", MARKDOWN)
def test_markdown_names_only_files_that_exist(document: str) -> None:
    text = (ROOT / document).read_text(encoding="utf-8")
    broken = _broken(markdown_references(text), document, os.path.dirname(document), document)
    assert not broken, "\n".join(broken)


def test_the_default_configuration_names_only_files_that_exist() -> None:
    result = CliRunner().invoke(main, ["config", "--defaults"])
    assert result.exit_code == 0, result.output
    broken = _broken(plain_references(result.output), "fundflow config --defaults", "", None)
    assert not broken, "\n".join(broken)


@pytest.mark.parametrize("schema", SCHEMA_FILES)
def test_schema_files_name_only_files_that_exist(schema: str) -> None:
    text = "\n".join(json_strings(json.loads((ROOT / schema).read_text(encoding="utf-8"))))
    broken = _broken(plain_references(text), schema, os.path.dirname(schema), None)
    assert not broken, "\n".join(broken)


# -- the checker itself ------------------------------------------------------------------


def test_the_checker_finds_what_is_missing() -> None:
    files = {"README.md", "docs/a.md", "tests/unit/test_x.py", "deploy/compose.yaml"}
    checker = Checker(ROOT, files)
    checker._anchors["docs/a.md"] = anchors("# Title\n\n## Not a pool\n\n## Not a pool\n")
    md = (
        "See [design](../shared/design/wire-format.md), [a](docs/a.md#not-a-pool),\n"
        "[b](docs/a.md#not-a-pool-1), [c](docs/a.md#pools), [web](https://example.com/x.md),\n"
        "`test_x.py::test_y`, `test_gone.py`, `docker compose -f deploy/compose.yaml up`,\n"
        "`truth.json`, `/etc/fundflow/ca.pem`, `*.json`, `msgspec.json.encode`, `docs/b.md`.\n"
        "```sh\nfundflow graph --out c.json\n```\n"
    )
    found = [
        checker.problem(ref, "", "README.md", link) for _, ref, link in markdown_references(md)
    ]
    assert sorted(p for p in found if p) == [
        "../shared/design/wire-format.md: not a file or folder of the repository",
        "docs/a.md#pools: no heading #pools in docs/a.md",
        "docs/b.md: not a file or folder of the repository",
        "test_gone.py: no file of that name in the repository",
    ]
    toml = '# the rule of detectors.md "Not a pool" (docs/a.md, https://x.example/y.json).\n'
    assert [w for _, w, _ in plain_references(toml)] == ["detectors.md", "docs/a.md"]
