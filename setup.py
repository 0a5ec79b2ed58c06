"""The compiled part of the package (everything else is in pyproject.toml):
``fundflow._core``, the Rust crate in ``core/`` (the JSON-lines wire
decoder, the ordering stage, the deduplicator, the reference data's record
table and the alert book), built in release mode by setuptools-rust: it
needs a Rust toolchain (cargo, and the system linker ``cc``) at install
time.
"""

from setuptools import setup
from setuptools_rust import Binding, RustExtension

setup(
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
