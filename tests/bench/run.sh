#!/usr/bin/env bash
# make bench: measures prodaccess against a local platform of its own and writes
# target/bench/report.json (in the repository) plus a table on stdout.
#
# The benchmark starts a fresh platform (etcd, kube-apiserver, AWS emulator) for each phase in
# target/bench/platform, so no other test's objects or AWS calls mix into its figures, and stops
# it at the end (KEEP=1 leaves it running). It builds the operator and the benchmark with the
# release profile (BENCH_PROFILE=debug to skip that build), because memory and CPU figures of a
# debug build say little about what users run.
#
# Sizes and settings (defaults finish in about ten minutes on two cores):
#   BENCH_GRANTS=1000 BENCH_GROUPS=10 BENCH_ROUTES=10 BENCH_STEADY_SECONDS=120
# The full run of issue 7:
#   BENCH_GRANTS=10000 BENCH_GROUPS=100 BENCH_ROUTES=200 BENCH_STEADY_SECONDS=300 make bench
# Every BENCH_* variable is listed in docs/performance.md.
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$REPO"
export PRODACCESS_CACHE="${PRODACCESS_CACHE:-/var/cache/prodaccess}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$PRODACCESS_CACHE/target}"
export PATH="$HOME/.cargo/bin:/root/.cargo/bin:$PATH"
# Not the shared .platform that make exports: the benchmark owns this one and restarts it.
export PRODACCESS_PLATFORM_DIR="${BENCH_PLATFORM_DIR:-$REPO/target/bench/platform}"
unset PRODACCESS_USE_EXISTING
PROFILE="${BENCH_PROFILE:-release}"
KEEP="${KEEP:-0}"

say() { printf '[bench] %s\n' "$*"; }

tests/platform/install.sh
stop_platform() {
    if [ "$KEEP" = 1 ]; then
        say "KEEP=1: platform left running (PRODACCESS_PLATFORM_DIR=$PRODACCESS_PLATFORM_DIR tests/platform/down.sh)"
    else
        tests/platform/down.sh
    fi
}
trap stop_platform EXIT

case "$PROFILE" in
    release) build=(--release) ;;
    debug) build=() ;;
    *) say "BENCH_PROFILE must be release or debug"; exit 2 ;;
esac
say "building the operator and the benchmark ($PROFILE)"
# What is built is what the report credits, whatever is committed while the run goes on.
BENCH_BUILD_COMMIT="$(git rev-parse HEAD 2>/dev/null || true)"
BENCH_BUILD_UNCOMMITTED="$(git status --porcelain --untracked-files=no 2>/dev/null | wc -l)"
export BENCH_BUILD_COMMIT BENCH_BUILD_UNCOMMITTED
cargo build "${build[@]}" -p prodaccess-operator --bin prodaccess-operator
cargo build "${build[@]}" -p prodaccess-e2e --bin prodaccess-bench
BIN="$CARGO_TARGET_DIR/$PROFILE"
export PRODACCESS_OPERATOR_BIN="$BIN/prodaccess-operator"

# Each phase gets a fresh platform (etcd, API server, emulator), so what one phase leaves
# behind (objects, Events, emulator state) cannot slow the next one down.
run_phases() {
    local rc=0 phase parts=()
    IFS=, read -ra phases <<<"${BENCH_PHASES:-revoke,approval,mass,population}"
    for phase in "${phases[@]}"; do
        say "phase $phase on a fresh platform"
        tests/platform/down.sh >/dev/null
        tests/platform/up.sh
        BENCH_PHASES="$phase" BENCH_PART=1 BENCH_REPORT="$REPO/target/bench/phase-$phase.json" \
            tests/platform/env.sh "$BIN/prodaccess-bench" || rc=1
        parts+=("$REPO/target/bench/phase-$phase.json")
    done
    "$BIN/prodaccess-bench" merge "${parts[@]}" || rc=1
    return "$rc"
}

mkdir -p target/bench
rm -f target/bench/phase-*.json
rc=0
run_phases 2>&1 | tee target/bench/bench.log || rc=$?
say "report: $REPO/target/bench/report.json (log: target/bench/bench.log)"
exit "$rc"
