#!/usr/bin/env bash
# Browser tests drive Debian's chromium (never a browser that a tool downloads). Install it when missing;
# if that is impossible here (not root, no apt), the browser tests skip and say why.
set -uo pipefail
if command -v chromium >/dev/null 2>&1; then
    exit 0
fi
if [ "$(id -u)" != "0" ] || ! command -v apt-get >/dev/null 2>&1; then
    echo "warning: chromium is missing and cannot be installed here (need root and apt-get); browser tests will skip" >&2
    exit 0
fi
echo "installing Debian's chromium for the browser tests (once)"
export DEBIAN_FRONTEND=noninteractive
if ! { apt-get update -qq && apt-get install -y -qq --no-install-recommends chromium; } >/tmp/helploop-apt.log 2>&1; then
    tail -20 /tmp/helploop-apt.log >&2
    echo "warning: could not install chromium; browser tests will skip" >&2
fi
exit 0
