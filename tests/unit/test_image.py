"""The image recipe (Dockerfile, .dockerignore, deploy/compose.yaml's build)
checked without a container engine: every file the Dockerfile copies exists
and is in the build context, the build stage gets everything that
pyproject.toml and setup.py need to build the wheel, every install comes
from the lock, and the runtime stage has no compiler and runs as uid 10001.
tests/e2e/test_wheel.py builds and installs the wheel for real.
"""

from __future__ import annotations

import ast
import json
import re
import shlex
import subprocess
import tomllib
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

import pytest
import yaml
from pip_commands import LOCK, locked, pip_installs

REPO = Path(__file__).resolve().parents[2]
DOCKERFILE = REPO / "Dockerfile"
DOCKERIGNORE = REPO / ".dockerignore"
COMPOSE_FILE = REPO / "deploy" / "compose.yaml"
RUNTIME_UID = "10001"


# --- the Dockerfile ------------------------------------------------------------------


@dataclass(frozen=True)
class Copy:
    """One COPY/ADD: ``sources`` are context paths, or paths of stage ``stage``."""

    sources: tuple[str, ...]
    dest: str
    stage: str | None  # --from=STAGE, None for the build context


@dataclass
class Stage:
    name: str | None
    base: str
    workdir: str = "/"
    copies: list[tuple[Copy, str]] = field(default_factory=list)  # (copy, workdir then)
    runs: list[str] = field(default_factory=list)
    user: str | None = None


def instructions(text: str) -> list[tuple[str, str]]:
    """``(INSTRUCTION, arguments)`` in order: continuation lines joined,
    comments and blank lines dropped."""
    out: list[tuple[str, str]] = []
    pending = ""
    for line in text.splitlines():
        stripped = line.strip()
        if not pending and (not stripped or stripped.startswith("#")):
            continue
        if pending and stripped.startswith("#"):
            continue  # a comment inside a continued instruction
        if stripped.endswith("\\"):
            pending += stripped[:-1].rstrip() + " "
            continue
        full = pending + stripped
        pending = ""
        word, _, rest = full.partition(" ")
        out.append((word.upper(), rest.strip()))
    assert not pending, "the Dockerfile ends inside a continued line"
    return out


def parse_copy(args: str) -> Copy:
    flags = re.match(r"(?:--\S+\s+)*", args)
    assert flags is not None
    rest = args[flags.end() :]
    words = json.loads(rest) if rest.startswith("[") else shlex.split(rest)
    stage = next((f[len("--from=") :] for f in flags.group().split() if f.startswith("--from=")),
                 None)  # fmt: skip
    assert len(words) >= 2, f"COPY needs a source and a destination: {args}"
    return Copy(tuple(words[:-1]), words[-1], stage)


def stages(text: str) -> list[Stage]:
    args: dict[str, str] = {}
    out: list[Stage] = []
    for word, rest in instructions(text):
        if word == "ARG" and not out:
            name, _, default = rest.partition("=")
            args[name] = default
        elif word == "FROM":
            base, *name = re.split(r"\s+AS\s+", re.sub(r"--\S+\s+", "", rest), flags=re.I)
            base = re.sub(r"\$\{?(\w+)\}?", lambda m: args[m.group(1)], base.strip())
            out.append(Stage(name[0].strip() if name else None, base))
        elif word == "WORKDIR":
            out[-1].workdir = str(PurePosixPath(out[-1].workdir) / rest)
        elif word in ("COPY", "ADD"):
            out[-1].copies.append((parse_copy(rest), out[-1].workdir))
        elif word == "RUN":
            out[-1].runs.append(rest)
        elif word == "USER":
            out[-1].user = rest
    return out


STAGES = stages(DOCKERFILE.read_text())
BUILD = next(s for s in STAGES if any("pip wheel" in r for r in s.runs))
RUNTIME = STAGES[-1]


def context_sources() -> list[str]:
    """Every build-context path the Dockerfile copies, normalised."""
    return [
        str(PurePosixPath(s))
        for stage in STAGES
        for copy, _ in stage.copies
        if copy.stage is None
        for s in copy.sources
    ]


def copied_into(stage: Stage, source: str) -> str:
    """Where ``source`` (a context path) lands in ``stage``, absolute."""
    for copy, workdir in stage.copies:
        if copy.stage is None and source in [str(PurePosixPath(s)) for s in copy.sources]:
            dest = PurePosixPath(workdir) / copy.dest
            if copy.dest.endswith("/") or len(copy.sources) > 1:
                return str(dest / PurePosixPath(source).name)
            return str(dest)
    raise AssertionError(f"{source} is not copied into the {stage.name or 'last'} stage")


def covered(path: str, sources: list[str]) -> bool:
    return any(path == s or path.startswith(s + "/") for s in sources)


# --- .dockerignore ---------------------------------------------------------------------


def _pattern_regex(pattern: str) -> re.Pattern[str]:
    """Docker's pattern syntax (moby/patternmatcher): ``**`` any number of
    directories, ``*`` and ``?`` within one path element, ``[...]`` a class."""
    out, i = "", 0
    while i < len(pattern):
        c = pattern[i]
        if pattern.startswith("**/", i):
            out, i = out + "(?:.*/)?", i + 3
            continue
        if pattern.startswith("**", i):
            out, i = out + ".*", i + 2
            continue
        if c == "*":
            out += "[^/]*"
        elif c == "?":
            out += "[^/]"
        elif c == "[":
            end = pattern.index("]", i)
            out += pattern[i : end + 1]
            i = end
        else:
            out += re.escape(c)
        i += 1
    return re.compile(out + r"\Z")


def ignore_rules(text: str) -> list[tuple[bool, re.Pattern[str]]]:
    """``(is_exception, pattern)`` of each line, in order."""
    rules = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        exception = line.startswith("!")
        cleaned = str(PurePosixPath(line.lstrip("!").strip().lstrip("/")))
        rules.append((exception, _pattern_regex(cleaned)))
    return rules


def excluded(path: str, rules: list[tuple[bool, re.Pattern[str]]]) -> bool:
    """Whether ``path`` (relative to the context) stays out of the build
    context: the last rule that matches it or one of its parent folders wins."""
    parts = PurePosixPath(path).parts
    prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    verdict = False
    for exception, regex in rules:
        if any(regex.match(p) for p in prefixes):
            verdict = not exception
    return verdict


RULES = ignore_rules(DOCKERIGNORE.read_text())


def tracked_files() -> list[str]:
    result = subprocess.run(
        ["git", "-C", str(REPO), "ls-files", "-z"], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, f"git ls-files: {result.stderr.strip()}"
    return [f for f in result.stdout.split("\0") if f]


# --- what the build needs ------------------------------------------------------------


def build_inputs() -> set[str]:
    """Paths that building the wheel reads: pyproject.toml and its readme,
    setup.py and its extensions' sources (a Rust extension's, its crate's
    folder), the package folders it maps."""
    project = tomllib.loads((REPO / "pyproject.toml").read_text())
    needed = {"pyproject.toml", "setup.py", project["project"]["readme"]}
    needed |= set(project["tool"]["setuptools"]["package-dir"].values())
    tree = ast.parse((REPO / "setup.py").read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "Extension":
            sources = node.args[1] if len(node.args) > 1 else None
            assert isinstance(sources, ast.List), "setup.py: Extension sources are a list"
            needed |= {ast.literal_eval(s) for s in sources.elts}
        if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "RustExtension":
            (path,) = [k.value for k in node.keywords if k.arg == "path"]
            needed.add(str(PurePosixPath(ast.literal_eval(path)).parent))
    return needed


# --- tests -----------------------------------------------------------------------------


def built_services() -> dict[str, dict]:
    services = yaml.safe_load(COMPOSE_FILE.read_text())["services"]
    return {name: s for name, s in services.items() if "build" in s}


def test_compose_builds_this_dockerfile():
    built = built_services()
    assert {"topics", "worker"} <= set(built)
    for name, service in built.items():
        build = service["build"]
        context = (COMPOSE_FILE.parent / build["context"]).resolve()
        assert context == REPO, name
        assert (context / build["dockerfile"]).resolve() == DOCKERFILE, name
        assert "dockerfile_inline" not in build, name
        # compose's hardening holds for every service that runs the image.
        assert service["read_only"] is True and service["cap_drop"] == ["ALL"], name


def test_every_copied_source_exists():
    sources = context_sources()
    assert sources
    for source in sources:
        assert (REPO / source).exists(), f"COPY {source}: not in the repository"


def test_copies_from_a_stage_name_an_earlier_stage_and_what_it_made():
    names = [s.name for s in STAGES]
    for i, stage in enumerate(STAGES):
        for copy, _ in stage.copies:
            if copy.stage is None:
                continue
            assert copy.stage in names[:i], f"COPY --from={copy.stage}: no such earlier stage"
            made = " ".join(STAGES[names.index(copy.stage)].runs)
            for source in copy.sources:
                assert source in made, f"stage {copy.stage} does not make {source}"


def test_the_build_stage_gets_everything_the_wheel_is_built_from():
    sources = [str(PurePosixPath(s)) for c, _ in BUILD.copies if c.stage is None for s in c.sources]
    needed = build_inputs()
    assert {"pyproject.toml", "setup.py", "README.md", "core"} <= needed
    assert {"fundflow", "schemas", "detectors", "streams"} <= needed
    for path in sorted(needed):
        assert covered(path, sources), f"the build stage does not copy {path}"
    # ... into one folder, the one `pip wheel` builds.
    (wheel_run,) = [r for r in BUILD.runs if "pip wheel" in r]
    target = shlex.split(wheel_run.split("pip wheel", 1)[1].split("&&")[0])[-1]
    root = PurePosixPath(BUILD.workdir) / target
    for path in sorted(needed):
        top = next(s for s in sources if covered(path, [s]))
        assert PurePosixPath(copied_into(BUILD, top)) == root / top, f"{top} not under {root}"


def test_every_install_in_the_image_comes_from_the_lock():
    installs = [a for s in STAGES for r in s.runs for a in pip_installs(r)]
    assert installs
    for args in installs:
        assert locked(args), f"pip install {' '.join(args)}: not the lock, not --no-deps"
    (lock_install,) = [a for r in BUILD.runs for a in pip_installs(r) if "--require-hashes" in a]
    lock_path = lock_install[lock_install.index("-r") + 1]
    assert PurePosixPath(BUILD.workdir) / lock_path == PurePosixPath(copied_into(BUILD, LOCK))
    # The lock goes in before the sources, so that editing code keeps its layer.
    order = [s for c, _ in BUILD.copies for s in c.sources]
    assert order.index(LOCK) == 0


def test_the_install_check_refuses_versions_written_by_hand():
    old = 'pip install --no-cache-dir . "kafka-python>=2.0.2" "crc32c>=2.3"'
    assert [locked(a) for a in pip_installs(old)] == [False]
    assert [locked(a) for a in pip_installs("pip install -r requirements/runtime.txt")] == [False]
    assert [locked(a) for a in pip_installs(f"x && /v/bin/pip install --require-hashes -r {LOCK}")] == [True]  # fmt: skip


def test_the_runtime_stage_has_no_compiler_and_runs_unprivileged():
    assert len(STAGES) >= 2 and RUNTIME is not BUILD
    assert RUNTIME.base == BUILD.base, "the venv copied across needs the same Python"
    assert RUNTIME.base.startswith("python:3.11") and RUNTIME.base.endswith("-slim")
    assert "build-essential" in " ".join(BUILD.runs)
    for run in RUNTIME.runs:
        assert not re.search(r"apt-get|apk |build-essential|gcc", run), run
    assert all(c.stage is not None for c, _ in RUNTIME.copies), "runtime copies no sources"
    assert RUNTIME.user not in (None, "root", "0")
    (useradd,) = [r for r in RUNTIME.runs if "useradd" in r]
    assert f"--uid {RUNTIME_UID}" in useradd and shlex.split(useradd)[-1] == RUNTIME.user


def test_dockerignore_keeps_every_copied_file_in_the_context():
    sources = context_sources()
    for source in sources:
        assert not excluded(source, RULES), f".dockerignore leaves out {source}, which is copied"
    files = tracked_files()
    copied = [f for f in files if covered(f, sources)]
    assert "core/src/table.rs" in copied and "schemas/json/alert.schema.json" in copied
    for path in copied:
        assert not excluded(path, RULES), f".dockerignore leaves out {path}, which is copied"


def test_dockerignore_leaves_out_what_is_not_copied():
    sources = context_sources()
    extra = [f for f in tracked_files() if not covered(f, sources) and not excluded(f, RULES)]
    assert extra == [], f"in the build context but never copied: {extra}"
    # What local builds and runs leave in the package folders stays out too.
    for artefact in ("fundflow/_core.cpython-311-x86_64-linux-gnu.so",
                     "fundflow/__pycache__/cli.cpython-311.pyc", "fundflow.egg-info/PKG-INFO",
                     ".venv/bin/python", "deploy/env/worker.env", "build/lib/x.py"):  # fmt: skip
        assert excluded(artefact, RULES), artefact


@pytest.mark.parametrize(
    ("patterns", "path", "out"),
    [
        ("*\n!fundflow/", "fundflow/cli.py", False),
        ("*\n!fundflow/", "tests/unit/test_cli.py", True),
        ("*\n!requirements/runtime.txt", "requirements/runtime.txt", False),
        ("*\n!requirements/runtime.txt", "requirements/test.txt", True),
        ("*\n!fundflow/\n**/__pycache__", "fundflow/__pycache__/cli.pyc", True),
        ("**/*.py[cod]", "a/b/c.pyc", True),
        ("**/*.py[cod]", "a/b/c.py", False),
        ("/deploy/env", "deploy/env/x", True),
        ("deploy/*", "deploy", False),
        ("?etup.py", "setup.py", True),
    ],
)
def test_the_dockerignore_matcher(patterns, path, out):
    assert excluded(path, ignore_rules(patterns)) is out


def test_the_parser_reads_copies_and_stages():
    parsed = stages(
        "ARG B=python:3.11-slim\nFROM --platform=x ${B} as build\nWORKDIR /src\n"
        "COPY --chown=1:1 a b ./\n# note\nRUN x \\\n  # inner\n  && y\n"
        'FROM ${B}\nCOPY --from=build ["/opt/v", "/opt/v"]\nUSER u\n'
    )
    assert [(s.name, s.base) for s in parsed] == [("build", "python:3.11-slim"),
                                                   (None, "python:3.11-slim")]  # fmt: skip
    assert parsed[0].copies == [(Copy(("a", "b"), "./", None), "/src")]
    assert parsed[0].runs == ["x && y"]
    assert parsed[1].copies == [(Copy(("/opt/v",), "/opt/v", "build"), "/")]
    assert parsed[1].user == "u"
