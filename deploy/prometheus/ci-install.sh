#!/usr/bin/env bash
# Installs promtool (Debian's `prometheus` package) when it is not on PATH,
# non-interactively; CI calls it before the Prometheus integration tests.
# The package also installs a prometheus service: whether it starts (it
# does not in a container without systemd) does not matter here, only
# promtool is used. Needs root (or sudo) and apt-get; exits 0 when promtool
# is already there.
set -euo pipefail

if command -v promtool >/dev/null 2>&1; then
    echo "promtool present: $(promtool --version 2>&1 | head -n 1)"
    exit 0
fi

if ! command -v apt-get >/dev/null 2>&1; then
    echo "ci-install.sh: promtool is missing and apt-get is not available" >&2
    exit 1
fi

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
    SUDO="sudo"
fi

export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -q
$SUDO apt-get install -y -q --no-install-recommends prometheus

command -v promtool >/dev/null 2>&1 || {
    echo "ci-install.sh: prometheus installed but promtool is not on PATH" >&2
    exit 1
}
echo "promtool installed: $(promtool --version 2>&1 | head -n 1)"
