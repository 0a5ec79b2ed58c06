"""End to end: the wheel, installed the way the image installs it.

The package's build inputs (pyproject.toml, setup.py, the readme and the
folders pyproject.toml maps into the package) are copied out of the
checkout, so that the build starts clean and leaves nothing behind, and
built into a wheel with this environment's setuptools (``pip wheel --no-deps
--no-build-isolation``, the Dockerfile's build step). A fresh venv outside
the checkout gets the lock (``requirements/runtime.txt``, ``--require-hashes``)
and then exactly that wheel (``--no-deps``), and its console script runs
``fundflow --help``, ``fundflow demo`` and ``fundflow worker --help`` from a
folder outside the checkout. Python's verbose import log shows where every
fundflow module came from: the venv's site-packages, never the checkout.

Needs the package index (or pip's cache) for the lock's files, like the
README's install; a failed install fails the test.
"""

from __future__ import annotations

import importlib.machinery
import json
import os
import re
import shutil
import subprocess
import sys
import tomllib
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
LOCK = REPO / "requirements" / "runtime.txt"
PROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())
PACKAGE_DIRS: dict[str, str] = PROJECT["tool"]["setuptools"]["package-dir"]
PACKAGES: list[str] = PROJECT["tool"]["setuptools"]["packages"]
PACKAGE_DATA: dict[str, list[str]] = PROJECT["tool"]["setuptools"]["package-data"]


def _folder(package: str) -> str:
    """The checkout folder of ``package``: its package-dir entry, or its
    parent's folder and its own name (``fundflow.serve`` is ``fundflow/serve``)."""
    if package in PACKAGE_DIRS:
        return PACKAGE_DIRS[package]
    parent, _, name = package.rpartition(".")
    return f"{_folder(parent)}/{name}"


TRUTH = "16/16 labelled violations found, 0 false alarms"
INSTALL_TIMEOUT = 900  # seconds; the lock from the index on a slow link


@dataclass(frozen=True)
class Installed:
    wheel: Path
    venv: Path
    site_packages: tuple[Path, ...]
    cwd: Path  # outside the checkout
    env: dict[str, str]


def run(argv: list[str], *, cwd: Path, env: dict[str, str], timeout: float = 300):
    result = subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True,
                            timeout=timeout)  # fmt: skip
    assert result.returncode == 0, f"{argv}: exit {result.returncode}\n{result.stdout}\n{result.stderr}"  # fmt: skip
    return result


def build_inputs(dest: Path) -> Path:
    """A copy of what building the wheel reads, without local build output."""
    src = dest / "src"
    src.mkdir()
    for name in ("pyproject.toml", "setup.py", PROJECT["project"]["readme"]):
        shutil.copy2(REPO / name, src / name)
    skip = shutil.ignore_patterns("__pycache__", "*.py[cod]", "*.so")
    for folder in sorted(set(PACKAGE_DIRS.values())):
        shutil.copytree(REPO / folder, src / folder, ignore=skip)
    # The Rust crate that setup.py builds into fundflow._core, without cargo's output.
    shutil.copytree(REPO / "core", src / "core", ignore=shutil.ignore_patterns("target"))
    return src


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Installed]:
    root = tmp_path_factory.mktemp("wheel")
    assert REPO not in root.parents and root != REPO
    env = {k: v for k, v in os.environ.items()
           if k not in ("PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP", "VIRTUAL_ENV")}  # fmt: skip
    env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"

    src = build_inputs(root)
    run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation",
         "-w", str(root / "wheels"), str(src)], cwd=root, env=env)  # fmt: skip
    (wheel,) = (root / "wheels").glob("fundflow-*.whl")

    venv = root / "venv"
    run([sys.executable, "-m", "venv", str(venv)], cwd=root, env=env)
    python = str(venv / "bin" / "python")
    run([python, "-m", "pip", "install", "-q", "--require-hashes", "-r", str(LOCK)],
        cwd=root, env=env, timeout=INSTALL_TIMEOUT)  # fmt: skip
    run([python, "-m", "pip", "install", "-q", "--no-deps", str(wheel)], cwd=root, env=env)
    paths = run([python, "-c", "import json, sysconfig; print(json.dumps("
                 "[sysconfig.get_path('purelib'), sysconfig.get_path('platlib')]))"],
                cwd=root, env=env).stdout  # fmt: skip
    site = tuple(Path(p).resolve() for p in json.loads(paths))

    cwd = root / "elsewhere"
    cwd.mkdir()
    yield Installed(wheel, venv, site, cwd, env)


def fundflow(inst: Installed, *args: str) -> tuple[str, dict[str, Path]]:
    """Run the venv's console script; its stdout, and the file each fundflow
    module was loaded from (Python's verbose import log)."""
    env = {**inst.env, "PYTHONVERBOSE": "1"}
    result = run([str(inst.venv / "bin" / "fundflow"), *args], cwd=inst.cwd, env=env)
    return result.stdout, loaded_from(result.stderr, inst.site_packages)


_READ = re.compile(
    r"^# code object from '?(.+?)'?$|^# extension module '[\w.]+' loaded from '(.+)'$"
)
_IMPORTED = re.compile(r"^import '(fundflow(?:\.[\w.]+)?)' #")


def loaded_from(log: str, site_packages: tuple[Path, ...]) -> dict[str, Path]:
    """``{module: file}`` of every ``fundflow`` module a ``-v`` log shows
    imported, each found among the files the log shows read (source,
    bytecode or extension) under ``site_packages``. An imported module with
    no such file, or any file read from the checkout, fails."""
    read = [Path(m.group(1) or m.group(2)) for m in map(_READ.match, log.splitlines()) if m]
    installed: dict[str, Path] = {}
    for path in read:
        assert REPO not in path.resolve().parents, f"read from the checkout: {path}"
        site = next((s for s in site_packages if s in path.resolve().parents), None)
        if site is None:
            continue
        parts = [x for x in path.resolve().relative_to(site).parts if x != "__pycache__"]
        parts[-1] = parts[-1].split(".")[0]
        installed[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    imported = {m.group(1) for m in map(_IMPORTED.match, log.splitlines()) if m}
    missing = sorted(imported - set(installed))
    assert not missing, f"imported, but not from {site_packages}: {missing}"
    return {name: installed[name] for name in imported}


def test_the_wheel_holds_the_package_the_extension_and_its_data(installed):
    names = set(zipfile.ZipFile(installed.wheel).namelist())
    ext = importlib.machinery.EXTENSION_SUFFIXES[0]  # this Python's, the one that built it
    expected = {"fundflow/detectors/defaults.toml",
                # the Rust crate core/, built by setuptools-rust (its sources stay out)
                "fundflow/_core" + ext}  # fmt: skip
    for package in PACKAGES:
        prefix, folder = package.replace(".", "/"), REPO / _folder(package)
        expected |= {f"{prefix}/{p.name}" for p in folder.glob("*.py")}
        for pattern in PACKAGE_DATA.get(package, ()):
            expected |= {
                f"{prefix}/{p.relative_to(folder).as_posix()}" for p in folder.glob(pattern)
            }
    schemas = sorted((REPO / PACKAGE_DIRS["fundflow.schemas"] / "json").glob("*.json"))
    assert len(schemas) >= 9
    expected |= {f"fundflow/schemas/json/{p.name}" for p in schemas}
    assert {n for n in names if ".dist-info/" not in n} == expected
    assert not installed.wheel.name.endswith("-none-any.whl"), "a wheel without its extension"


def test_help_runs_from_the_installed_wheel(installed):
    out, modules = fundflow(installed, "--help")
    assert out.startswith("Usage: fundflow [OPTIONS] COMMAND")
    assert re.search(r"^  worker\b", out, re.M) and re.search(r"^  demo\b", out, re.M)
    assert "fundflow.cli" in modules


def test_demo_runs_from_the_installed_wheel(installed):
    out, modules = fundflow(installed, "demo")
    (truth,) = [line for line in out.splitlines() if line.startswith("truth: ")]
    assert TRUTH in truth, truth
    # The demo decodes and reads reference data through the compiled core.
    ext = modules["fundflow._core"]
    assert ext.name.endswith(importlib.machinery.EXTENSION_SUFFIXES[0])
    assert {"fundflow.detectors.engine", "fundflow.schemas.records"} <= set(modules)
    assert (installed.cwd / "fundflow-demo" / "alerts.jsonl").exists()


def test_worker_help_runs_from_the_installed_wheel(installed):
    out, modules = fundflow(installed, "worker", "--help")
    assert out.startswith("Usage: fundflow worker [OPTIONS]")
    assert "--broker" in out


def test_the_import_log_is_read_right(tmp_path):
    site = tmp_path / "site"
    pkg = site / "fundflow"
    log = (
        f"# {pkg}/__pycache__/__init__.cpython-311.pyc matches {pkg}/__init__.py\n"
        f"# code object from '{pkg}/__pycache__/__init__.cpython-311.pyc'\n"
        f"# code object from {pkg}/cli.py\n"
        "import 'sys' # <class '_frozen_importlib.BuiltinImporter'>\n"
        f"# extension module 'fundflow._core' loaded from '{pkg}/t.cpython-311-x86_64-linux-gnu.so'\n"
        "import 'fundflow._core' # <_frozen_importlib_external.ExtensionFileLoader object at 0x1>\n"
        "# code object from '/usr/lib/python3.11/__pycache__/json.cpython-311.pyc'\n"
        "import 'json' # <_frozen_importlib_external.SourceFileLoader object at 0x2>\n"
        "import 'fundflow.cli' # <_frozen_importlib_external.SourceFileLoader object at 0x3>\n"
        "import 'fundflow' # <_frozen_importlib_external.SourceFileLoader object at 0x4>\n"
    ).replace("/t.", "/_core.")
    assert loaded_from(log, (site,)) == {
        "fundflow": pkg / "__pycache__" / "__init__.cpython-311.pyc",
        "fundflow.cli": pkg / "cli.py",
        "fundflow._core": pkg / "_core.cpython-311-x86_64-linux-gnu.so",
    }
    with pytest.raises(AssertionError, match="not from"):
        loaded_from(log + "import 'fundflow.graph' # <...SourceFileLoader object>\n", (site,))
    with pytest.raises(AssertionError, match="from the checkout"):
        loaded_from(f"# code object from '{REPO}/detectors/base.py'\n", (site,))
