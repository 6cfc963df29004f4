#!/usr/bin/env bash
# Container entrypoint: wait for the database, apply migrations, optionally prepare the demo, then run
# the given command (default: the CMD of the image).
set -euo pipefail

HELPLOOP="${HELPLOOP_BIN:-helploop}"
WAIT_SECONDS="${HELPLOOP_DB_WAIT_SECONDS:-60}"

wait_for_database() {
    local deadline=$((SECONDS + WAIT_SECONDS))
    until "$HELPLOOP" db current >/dev/null 2>&1; do
        if [ "$SECONDS" -ge "$deadline" ]; then
            echo "entrypoint: database not reachable after ${WAIT_SECONDS}s" >&2
            "$HELPLOOP" db current >&2 || true
            exit 1
        fi
        echo "entrypoint: waiting for the database..." >&2
        sleep 2
    done
}

wait_for_database
"$HELPLOOP" db upgrade
if [ "${HELPLOOP_DEMO:-0}" = "1" ]; then
    "$HELPLOOP" demo --no-chat
fi
exec "$@"
