#!/usr/bin/env bash
# Create .venv with Python 3.11 and install the pinned requirements. Idempotent: a no-op (well under a
# second) when requirements.txt, constraints.txt and pyproject.toml have not changed since the last run.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON_BIN="${PYTHON:-python3.11}"
if ! command -v "$PYTHON_BIN" >/dev/null 2>&1; then
    echo "error: $PYTHON_BIN not found; HelpLoop needs Python 3.11 (set PYTHON=/path/to/python3.11)" >&2
    exit 1
fi

if [ -x .venv/bin/python ] && ! .venv/bin/python -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))'; then
    echo "existing .venv is not Python 3.11; recreating it"
    rm -rf .venv
fi
if [ ! -x .venv/bin/python ]; then
    echo "creating .venv with $("$PYTHON_BIN" --version)"
    "$PYTHON_BIN" -m venv .venv
fi

stamp=.venv/.helploop-requirements.sha256
wanted="$(cat requirements.txt constraints.txt pyproject.toml | sha256sum | cut -d' ' -f1)"
if [ "$(cat "$stamp" 2>/dev/null || true)" != "$wanted" ]; then
    echo "installing pinned requirements into .venv (first run: about a minute)"
    log=.venv/pip-install.log
    if ! .venv/bin/python -m pip install --disable-pip-version-check --progress-bar off -r requirements.txt >"$log" 2>&1; then
        grep -v "is ignored: it is neither a file nor a directory" "$log" | tail -40 >&2
        echo "error: pip install failed (full log: $log)" >&2
        exit 1
    fi
    echo "$wanted" > "$stamp"
fi
