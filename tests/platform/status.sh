#!/usr/bin/env bash
# Shows the local test platform's components; exit 0 when all are running and healthy.
set -uo pipefail
# shellcheck source=lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

STATE="$PLATFORM_DIR/run/ports.env"
[ -f "$STATE" ] && . "$STATE"
TOKEN="$(cat "$PLATFORM_DIR/certs/admin.token" 2>/dev/null || true)"
rc=0

report() { # report NAME HEALTHY(0/1) DETAIL
    local pid mem=""
    pid="$(read_pid "$1")"
    if [ -n "$pid" ]; then
        mem="$(awk '/VmRSS/ {printf "%d MiB", $2/1024}' "/proc/$pid/status" 2>/dev/null)"
    fi
    if [ -z "$pid" ]; then
        printf '%-15s stopped\n' "$1"; rc=1
    elif [ "$2" = 0 ]; then
        printf '%-15s running  pid %-7s %-8s %s\n' "$1" "$pid" "$mem" "$3"
    else
        printf '%-15s UNHEALTHY pid %-7s %-8s %s\n' "$1" "$pid" "$mem" "$3"; rc=1
    fi
}

h=1; curl -s -m 2 "http://127.0.0.1:${ETCD_CLIENT_PORT:-0}/health" 2>/dev/null | grep -q '"health":"true"' && h=0
report etcd "$h" "http://127.0.0.1:${ETCD_CLIENT_PORT:-?}"
h=1; [ "$(curl -sk -m 3 -H "Authorization: Bearer $TOKEN" "https://127.0.0.1:${APISERVER_PORT:-0}/readyz" 2>/dev/null)" = ok ] && h=0
report kube-apiserver "$h" "https://127.0.0.1:${APISERVER_PORT:-?}"
code="$(curl -s -m 3 -o /dev/null -w '%{http_code}' "http://127.0.0.1:${EMULATOR_PORT:-0}/moto-api/" 2>/dev/null || true)"
h=1; [ -n "$code" ] && [ "$code" != 000 ] && h=0
report emulator "$h" "http://127.0.0.1:${EMULATOR_PORT:-?} (${EMULATOR_KIND:-?})"
[ -f "$PLATFORM_DIR/platform.env" ] && echo "env: . $PLATFORM_DIR/platform.env"
exit "$rc"
