#!/usr/bin/env bash
# Stops the local test platform started by up.sh: kills each recorded PID (TERM, then
# KILL after 10 s), removes the pid files and platform.env. Logs and certs are kept.
set -euo pipefail
# shellcheck source=lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

if [ "${PRODACCESS_USE_EXISTING:-0}" = 1 ]; then
    log "down: skipped (PRODACCESS_USE_EXISTING=1: using KUBECONFIG=${KUBECONFIG:-?}, PRODACCESS_AWS_ENDPOINT=${PRODACCESS_AWS_ENDPOINT:-?})"
    exit 0
fi

stopped=()
for name in emulator kube-apiserver etcd; do
    pidf="$PLATFORM_DIR/pids/$name.pid"
    [ -f "$pidf" ] || continue
    pid="$(read_pid "$name")"
    if [ -n "$pid" ]; then
        kill "$pid" 2>/dev/null || true
        for _ in $(seq 1 100); do pid_alive "$pid" || break; sleep 0.1; done
        if pid_alive "$pid"; then
            kill -9 "$pid" 2>/dev/null || true
            for _ in $(seq 1 50); do pid_alive "$pid" || break; sleep 0.1; done
        fi
        stopped+=("$name($pid)")
    fi
    rm -f "$pidf"
done
# platform.env would point at dead ports now: remove it so nothing picks it up by mistake
rm -f "$PLATFORM_DIR/platform.env"
if [ "${#stopped[@]}" = 0 ]; then
    log "down: nothing running (state dir $PLATFORM_DIR)"
else
    log "down: stopped ${stopped[*]}; logs kept in $PLATFORM_DIR/logs"
fi
