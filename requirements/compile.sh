#!/bin/sh
# Regenerates the locks from pyproject.toml and build.in: every package of the
# dependency tree pinned to one version with the hashes of its files, for
# Python 3.11 and later on any platform (uv's universal resolution).
#   runtime.txt: the package with its `graph` extra and its build backend
#                (the README's demo command)
#   test.txt:    the same plus the `test` extra (the README's test command, CI)
# Needs uv (`pip install uv`); run from anywhere, then commit both files.
set -eu
cd "$(dirname "$0")/.."
for lock in runtime test; do
  extra="--extra graph"
  [ "$lock" = test ] && extra="--extra graph --extra test"
  # shellcheck disable=SC2086
  uv pip compile pyproject.toml requirements/build.in $extra --universal \
    --python-version 3.11 --generate-hashes --quiet -o "requirements/$lock.txt" "$@"
done
