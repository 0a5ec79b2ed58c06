"""The compiled parts of the package (everything else is in pyproject.toml):

- ``fundflow.detectors._table``, the reference data's compact record table,
  a C extension: it needs a C compiler and Python's headers at install time;
- ``fundflow._core``, the Rust crate in ``core/`` (the JSON-lines wire
  decoder), built in release mode by setuptools-rust: it needs a Rust
  toolchain (cargo) at install time.
"""

from setuptools import Extension, setup
from setuptools_rust import Binding, RustExtension

setup(
    ext_modules=[
        Extension(
            "fundflow.detectors._table",
            ["detectors/_table.c"],
            extra_compile_args=["-O2", "-std=c11", "-Wall", "-Wextra", "-Wno-unused-parameter"],
        )
    ],
    rust_extensions=[
        RustExtension(
            "fundflow._core",
            path="core/Cargo.toml",
            binding=Binding.PyO3,
            features=["python"],
            debug=False,
        )
    ],
)
