#!/usr/bin/env bash
# Installs amtool (Debian's `prometheus-alertmanager` package) when it is not
# on PATH, non-interactively; CI calls it before the Alertmanager tests
# (tests/integration/test_alertmanager.py run `amtool check-config`). The
# package also installs an alertmanager service: whether it starts (it does
# not in a container without systemd) does not matter here, only amtool is
# used. Needs root (or sudo) and apt-get; exits 0 when amtool is already there.
set -euo pipefail

if command -v amtool >/dev/null 2>&1; then
    echo "amtool present: $(amtool --version 2>&1 | head -n 1)"
    exit 0
fi

if ! command -v apt-get >/dev/null 2>&1; then
    echo "ci-install.sh: amtool is missing and apt-get is not available" >&2
    exit 1
fi

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
    SUDO="sudo"
fi

$SUDO env DEBIAN_FRONTEND=noninteractive apt-get update -q
$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends prometheus-alertmanager

command -v amtool >/dev/null 2>&1 || {
    echo "ci-install.sh: prometheus-alertmanager installed but amtool is not on PATH" >&2
    exit 1
}
echo "amtool installed: $(amtool --version 2>&1 | head -n 1)"
