#!/usr/bin/env bash
# Create .venv if missing and install echopulse into it: torch first (the CPU wheel), then the project
# with its test extras (which include the service's). Re-running is cheap: it reinstalls only when
# pyproject.toml changed. As root on Debian it also adds the system Chromium the browser tests drive
# (Playwright's own browser download is never used).
set -euo pipefail
cd "$(dirname "$0")/.."

VENV=.venv
STAMP="$VENV/.echopulse-installed"
APT_UPDATED=

as_root_with_apt() {
    [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null
}

apt_install() {
    if [ -z "$APT_UPDATED" ]; then
        apt-get update -qq
        APT_UPDATED=1
    fi
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}

if [ ! -x "$VENV/bin/python" ]; then
    if ! python3 -m venv "$VENV" 2>/dev/null; then
        # Debian ships venv support separately; as root we can add it.
        if as_root_with_apt; then
            apt_install python3-venv
            rm -rf "$VENV" && python3 -m venv "$VENV"
        else
            echo "setup: python3 -m venv failed; install python3-venv" >&2
            exit 1
        fi
    fi
fi

if [ ! -f "$STAMP" ] || [ pyproject.toml -nt "$STAMP" ]; then
    "$VENV/bin/python" -m pip install -q --upgrade pip
    "$VENV/bin/python" -m pip install -q "torch==2.13.0"
    "$VENV/bin/python" -m pip install -q -e ".[test]"
    touch "$STAMP"
fi

# The browser tests use Debian's Chromium (/usr/bin/chromium; Ubuntu's package is only a snap stub);
# checked on every run, stamp or not.
if [ ! -x /usr/bin/chromium ]; then
    if as_root_with_apt && grep -qx 'ID=debian' /etc/os-release 2>/dev/null; then
        apt_install chromium
    else
        echo "setup: /usr/bin/chromium missing; the browser tests need Debian's chromium package" >&2
    fi
fi
