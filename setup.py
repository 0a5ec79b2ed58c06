"""The compiled part of the package (everything else is in pyproject.toml):
the reference data's compact record table, ``fundflow.detectors._table``.
It needs a C compiler and Python's headers at install time."""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "fundflow.detectors._table",
            ["detectors/_table.c"],
            extra_compile_args=["-O2", "-std=c11", "-Wall", "-Wextra", "-Wno-unused-parameter"],
        )
    ]
)
