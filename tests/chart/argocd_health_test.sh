#!/usr/bin/env bash
# Runs the Argo CD Lua health checks (docs/argocd/health-*.lua) against the samples in
# docs/argocd/samples/ with Debian's lua5.4, and again with lua5.1 when present: Argo CD
# runs gopher-lua, a Lua 5.1 dialect, so 5.1 catches syntax that Argo would reject.
# Installs lua5.4 with apt-get when it is missing (the machines run as root).
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"

if ! command -v lua5.4 >/dev/null 2>&1; then
    echo "lua5.4 missing: installing it with apt-get" >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends lua5.4 >/dev/null \
        || { apt-get update >/dev/null && DEBIAN_FRONTEND=noninteractive \
            apt-get install -y --no-install-recommends lua5.4 >/dev/null; }
fi

status=0
for lua in lua5.4 lua5.1; do
    if ! command -v "$lua" >/dev/null 2>&1; then
        echo "skip - $lua not installed"
        continue
    fi
    echo "# $lua"
    "$lua" "$REPO/docs/argocd/test.lua" "$REPO/docs/argocd" || status=1
done
exit "$status"
