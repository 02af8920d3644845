#!/usr/bin/env bash
# Starts the local test platform: etcd + kube-apiserver (a real, kubelet-less Kubernetes
# API) and the AWS emulator, all on 127.0.0.1 with free ports. Idempotent: components that
# are already running and healthy are left alone; dead or unhealthy ones are restarted.
#
# State (pids, logs, certs, kubeconfig, platform.env): ${PRODACCESS_PLATFORM_DIR:-<repo>/.platform}
# Tools come from tests/platform/install.sh (make platform).
set -euo pipefail
# shellcheck source=lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

if [ "${PRODACCESS_USE_EXISTING:-0}" = 1 ]; then
    log "up: skipped (PRODACCESS_USE_EXISTING=1: using KUBECONFIG=${KUBECONFIG:-?}, PRODACCESS_AWS_ENDPOINT=${PRODACCESS_AWS_ENDPOINT:-?})"
    exit 0
fi

T0=$(date +%s%N)

KUBE_APISERVER="$(find_kube_apiserver)"
ETCD="$(find_etcd)"
VENV="$(venv_dir)"
TOOLS="$(k8s_tools_dir)/bin"
[ -n "$KUBE_APISERVER" ] || die "no kube-apiserver under $PRODACCESS_CACHE: run tests/platform/install.sh (make platform) first"
[ -n "$ETCD" ] || die "etcd not found: run tests/platform/install.sh (make platform) first"
[ -f "$VENV/.complete" ] || die "python venv $VENV missing: run tests/platform/install.sh (make platform) first"
[ -x "$TOOLS/kubectl" ] && [ -x "$TOOLS/helm" ] || die "kubectl/helm missing in $TOOLS: run tests/platform/install.sh (make platform) first"

mkdir -p "$PLATFORM_DIR"/{pids,logs,certs,run}
STATE="$PLATFORM_DIR/run/ports.env"   # ETCD_CLIENT_PORT=... etc.
[ -f "$STATE" ] && . "$STATE"

save_state() {
    cat >"$STATE.tmp" <<S
ETCD_CLIENT_PORT=${ETCD_CLIENT_PORT:-}
ETCD_PEER_PORT=${ETCD_PEER_PORT:-}
APISERVER_PORT=${APISERVER_PORT:-}
EMULATOR_PORT=${EMULATOR_PORT:-}
EMULATOR_KIND=${EMULATOR_KIND:-}
S
    mv "$STATE.tmp" "$STATE"
}

# ------------------------------------------------------------------ secrets (once)
TOKEN_FILE="$PLATFORM_DIR/certs/tokens.csv"
ADMIN_TOKEN_FILE="$PLATFORM_DIR/certs/admin.token"
SA_KEY="$PLATFORM_DIR/certs/sa.key"
SA_PUB="$PLATFORM_DIR/certs/sa.pub"
if [ ! -s "$ADMIN_TOKEN_FILE" ]; then
    openssl rand -hex 32 >"$ADMIN_TOKEN_FILE"
fi
ADMIN_TOKEN="$(cat "$ADMIN_TOKEN_FILE")"
printf '%s,admin,admin-uid,"system:masters"\n' "$ADMIN_TOKEN" >"$TOKEN_FILE"
if [ ! -s "$SA_KEY" ] || [ ! -s "$SA_PUB" ]; then
    openssl genrsa -out "$SA_KEY" 2048 2>/dev/null
    openssl rsa -in "$SA_KEY" -pubout -out "$SA_PUB" 2>/dev/null
fi
chmod 600 "$ADMIN_TOKEN_FILE" "$TOKEN_FILE" "$SA_KEY"

# ------------------------------------------------------------------ health checks
etcd_healthy() {
    pid_alive "$(read_pid etcd)" && [ -n "${ETCD_CLIENT_PORT:-}" ] &&
        curl -s -m 2 "http://127.0.0.1:$ETCD_CLIENT_PORT/health" 2>/dev/null | grep -q '"health":"true"'
}
apiserver_healthy() {
    pid_alive "$(read_pid kube-apiserver)" && [ -n "${APISERVER_PORT:-}" ] &&
        [ "$(curl -sk -m 3 -H "Authorization: Bearer $ADMIN_TOKEN" "https://127.0.0.1:$APISERVER_PORT/readyz" 2>/dev/null)" = ok ]
}
emulator_healthy() {
    local code
    pid_alive "$(read_pid emulator)" && [ -n "${EMULATOR_PORT:-}" ] || return 1
    code="$(curl -s -m 3 -o /dev/null -w '%{http_code}' "http://127.0.0.1:$EMULATOR_PORT/moto-api/" 2>/dev/null || true)"
    [ -n "$code" ] && [ "$code" != 000 ]
}

# stop_component NAME: TERM, wait up to 10 s, then KILL (only if the pid is still ours)
stop_component() {
    local name="$1" pid
    pid="$(read_pid "$name")"
    if pid_alive "$pid"; then
        kill "$pid" 2>/dev/null || true
        for _ in $(seq 1 100); do pid_alive "$pid" || break; sleep 0.1; done
        pid_alive "$pid" && kill -9 "$pid" 2>/dev/null || true
    fi
    rm -f "$PLATFORM_DIR/pids/$name.pid"
}

# start_component NAME LOGFILE CMD... : detached (own session), stdin closed
start_component() {
    local name="$1" logf="$2"; shift 2
    printf '===== %s starting %s =====\n' "$(date -Is)" "$name" >>"$logf"
    setsid "$@" >>"$logf" 2>&1 </dev/null &
    echo $! >"$PLATFORM_DIR/pids/$name.pid"
}

fail_with_log() { # fail_with_log NAME LOGFILE MESSAGE
    echo "----- last 30 lines of $2 -----" >&2
    tail -n 30 "$2" >&2
    die "$1: $3"
}

# wait_for NAME LOGFILE TIMEOUT_S CHECK_FUNCTION
wait_for() {
    local name="$1" logf="$2" timeout="$3" check="$4" i
    for i in $(seq 1 $((timeout * 10))); do
        "$check" && return 0
        pid_alive "$(read_pid "$name")" || fail_with_log "$name" "$logf" "process exited during start-up"
        sleep 0.1
    done
    fail_with_log "$name" "$logf" "not ready after ${timeout}s"
}

STARTED=()
since() { echo "$(( ($(date +%s%N) - $1) / 1000000 ))ms"; }

# ------------------------------------------------------------------ etcd
ETCD_LOG="$PLATFORM_DIR/logs/etcd.log"
if etcd_healthy; then
    :
else
    # a new etcd means empty storage: the apiserver must start again too
    stop_component kube-apiserver
    stop_component etcd
    rm -rf "$PLATFORM_DIR/etcd-data"
    TC=$(date +%s%N)
    ETCD_CLIENT_PORT="$(free_port)"
    ETCD_PEER_PORT="$(free_port)"
    while [ "$ETCD_PEER_PORT" = "$ETCD_CLIENT_PORT" ]; do ETCD_PEER_PORT="$(free_port)"; done
    save_state
    start_component etcd "$ETCD_LOG" "$ETCD" \
        --name prodaccess \
        --data-dir "$PLATFORM_DIR/etcd-data" \
        --listen-client-urls "http://127.0.0.1:$ETCD_CLIENT_PORT" \
        --advertise-client-urls "http://127.0.0.1:$ETCD_CLIENT_PORT" \
        --listen-peer-urls "http://127.0.0.1:$ETCD_PEER_PORT" \
        --initial-advertise-peer-urls "http://127.0.0.1:$ETCD_PEER_PORT" \
        --initial-cluster "prodaccess=http://127.0.0.1:$ETCD_PEER_PORT" \
        --initial-cluster-state new \
        --log-level warn
    wait_for etcd "$ETCD_LOG" 30 etcd_healthy
    STARTED+=("etcd $(since "$TC")")
fi

# ------------------------------------------------------------------ kube-apiserver
APISERVER_LOG="$PLATFORM_DIR/logs/kube-apiserver.log"
if apiserver_healthy; then
    :
else
    stop_component kube-apiserver
    TC=$(date +%s%N)
    APISERVER_PORT="$(free_port)"
    save_state
    start_component kube-apiserver "$APISERVER_LOG" "$KUBE_APISERVER" \
        --bind-address=127.0.0.1 \
        --advertise-address=127.0.0.1 \
        --secure-port="$APISERVER_PORT" \
        --insecure-port=0 \
        --etcd-servers="http://127.0.0.1:$ETCD_CLIENT_PORT" \
        --token-auth-file="$TOKEN_FILE" \
        --authorization-mode=RBAC \
        --service-account-issuer=https://kubernetes.default.svc.cluster.local \
        --service-account-key-file="$SA_PUB" \
        --service-account-signing-key-file="$SA_KEY" \
        --service-cluster-ip-range=10.0.0.0/24 \
        --endpoint-reconciler-type=none \
        --cert-dir="$PLATFORM_DIR/certs/apiserver" \
        --profiling=false \
        --v=1
    wait_for kube-apiserver "$APISERVER_LOG" 60 apiserver_healthy
    # /readyz can be ok a moment before the "default" namespace exists
    for _ in $(seq 1 100); do
        [ "$(curl -sk -m 3 -o /dev/null -w '%{http_code}' -H "Authorization: Bearer $ADMIN_TOKEN" \
            "https://127.0.0.1:$APISERVER_PORT/api/v1/namespaces/default")" = 200 ] && break
        sleep 0.1
    done
    STARTED+=("kube-apiserver $(since "$TC")")
fi

# CA for the kubeconfig: the last certificate of the apiserver's self-signed chain
CA_FILE="$PLATFORM_DIR/certs/ca.crt"
awk '/BEGIN CERTIFICATE/{buf=""} {buf=buf $0 "\n"} /END CERTIFICATE/{last=buf} END{printf "%s", last}' \
    "$PLATFORM_DIR/certs/apiserver/apiserver.crt" >"$CA_FILE"

# ------------------------------------------------------------------ AWS emulator
EMULATOR_LOG="$PLATFORM_DIR/logs/emulator.log"
if [ -f "$REPO_ROOT/tests/emulator/prodemu/__main__.py" ]; then
    WANT_KIND=prodemu
else
    WANT_KIND=moto
fi
if emulator_healthy && [ "${EMULATOR_KIND:-}" = "$WANT_KIND" ]; then
    :
else
    stop_component emulator
    TC=$(date +%s%N)
    EMULATOR_PORT="$(free_port)"
    EMULATOR_KIND="$WANT_KIND"
    save_state
    if [ "$WANT_KIND" = prodemu ]; then
        start_component emulator "$EMULATOR_LOG" env PYTHONPATH="$REPO_ROOT/tests/emulator" \
            "$VENV/bin/python" -m prodemu --host 127.0.0.1 --port "$EMULATOR_PORT"
    else
        start_component emulator "$EMULATOR_LOG" "$VENV/bin/moto_server" -H 127.0.0.1 -p "$EMULATOR_PORT"
    fi
    wait_for emulator "$EMULATOR_LOG" 30 emulator_healthy
    STARTED+=("emulator/$WANT_KIND $(since "$TC")")
fi

# ------------------------------------------------------------------ kubeconfig + env
KUBECONFIG_FILE="$PLATFORM_DIR/kubeconfig"
cat >"$KUBECONFIG_FILE.tmp" <<K
apiVersion: v1
kind: Config
clusters:
- name: prodaccess-local
  cluster:
    server: https://127.0.0.1:$APISERVER_PORT
    certificate-authority-data: $(base64 -w0 "$CA_FILE")
users:
- name: admin
  user:
    token: $ADMIN_TOKEN
contexts:
- name: prodaccess-local
  context:
    cluster: prodaccess-local
    user: admin
    namespace: default
current-context: prodaccess-local
K
chmod 600 "$KUBECONFIG_FILE.tmp"
mv "$KUBECONFIG_FILE.tmp" "$KUBECONFIG_FILE"

cat >"$PLATFORM_DIR/platform.env.tmp" <<E
# Generated by tests/platform/up.sh; source it: . $PLATFORM_DIR/platform.env
export PRODACCESS_PLATFORM_DIR=$PLATFORM_DIR
export KUBECONFIG=$KUBECONFIG_FILE
export PRODACCESS_KUBE_SERVER=https://127.0.0.1:$APISERVER_PORT
export PRODACCESS_KUBE_TOKEN_FILE=$ADMIN_TOKEN_FILE
export PRODACCESS_AWS_ENDPOINT=http://127.0.0.1:$EMULATOR_PORT
export PRODACCESS_EMULATOR_KIND=$EMULATOR_KIND
export PRODACCESS_KUBECTL=$TOOLS/kubectl
export PRODACCESS_HELM=$TOOLS/helm
export PRODACCESS_PYTHON=$VENV/bin/python
export PRODACCESS_ETCD_ENDPOINT=http://127.0.0.1:$ETCD_CLIENT_PORT
E
mv "$PLATFORM_DIR/platform.env.tmp" "$PLATFORM_DIR/platform.env"

MS=$(( ($(date +%s%N) - T0) / 1000000 ))
if [ "${#STARTED[@]}" = 0 ]; then
    log "up: already running (apiserver https://127.0.0.1:$APISERVER_PORT, emulator http://127.0.0.1:$EMULATOR_PORT) [${MS} ms]"
else
    log "up: started $(IFS=,; echo "${STARTED[*]}") (apiserver https://127.0.0.1:$APISERVER_PORT, emulator $EMULATOR_KIND http://127.0.0.1:$EMULATOR_PORT) [${MS} ms]"
fi
log "env: . $PLATFORM_DIR/platform.env"
