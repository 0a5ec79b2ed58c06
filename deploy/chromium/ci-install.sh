#!/usr/bin/env bash
# Installs Debian's `chromium` when no Chromium is on PATH, non-interactively;
# CI calls it before the browser tests of the triage page, which drive the
# system's Chromium through Playwright (no browser download at test time).
# Needs root (or sudo) and apt-get; exits 0 when chromium is already there.
set -euo pipefail

found_chromium() {
    command -v chromium 2>/dev/null || command -v chromium-browser 2>/dev/null
}

if existing=$(found_chromium); then
    echo "chromium present: $existing ($("$existing" --version 2>/dev/null | head -n 1))"
    exit 0
fi

if ! command -v apt-get >/dev/null 2>&1; then
    echo "ci-install.sh: chromium is missing and apt-get is not available" >&2
    exit 1
fi

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
    SUDO="sudo"
fi

$SUDO env DEBIAN_FRONTEND=noninteractive apt-get update -q
$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends chromium

existing=$(found_chromium) || {
    echo "ci-install.sh: chromium installed but not on PATH" >&2
    exit 1
}
echo "chromium installed: $existing ($("$existing" --version 2>/dev/null | head -n 1))"
