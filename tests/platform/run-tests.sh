#!/usr/bin/env bash
# The whole test suite, as `make test` and CI run it:
#   platform install + up, fmt-check, clippy, unit, crds-check, emulator-test, e2e,
#   chart-test, argocd-test, then platform down (always, also on failure or interrupt).
# Every step runs even when an earlier one failed (except those that need the platform
# when it could not start); the exit code is non-zero when any step failed.
#
#   PRODACCESS_TEST_STEPS="fmt-check unit"  run only these make targets
#   KEEP=1                                   leave the platform running afterwards
set -uo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$HERE/../.." && pwd)"
cd "$REPO"
MAKE="${MAKE:-make}"

STEPS=(${PRODACCESS_TEST_STEPS:-fmt-check clippy unit crds-check emulator-test e2e chart-test argocd-test})
NEEDS_PLATFORM="emulator-test e2e chart-test"

RESULTS=()
FAILED=0
T_ALL=$(date +%s)

teardown() {
    if [ "${KEEP:-0}" = 1 ]; then
        echo "[test] KEEP=1: platform left running (tests/platform/status.sh)"
    else
        "$HERE/down.sh" || true
    fi
}
trap teardown EXIT
trap 'echo "[test] interrupted"; exit 130' INT TERM

run_step() { # run_step NAME CMD...
    local name="$1" t0 rc; shift
    t0=$(date +%s)
    echo
    echo "================================================================ $name"
    "$@"
    rc=$?
    local dt=$(( $(date +%s) - t0 ))
    if [ "$rc" = 0 ]; then
        RESULTS+=("PASS  $name (${dt}s)")
    else
        RESULTS+=("FAIL  $name (${dt}s, exit $rc)")
        FAILED=1
    fi
    return "$rc"
}

PLATFORM_OK=1
run_step platform "$MAKE" --no-print-directory platform || PLATFORM_OK=0
if [ "$PLATFORM_OK" = 1 ]; then
    run_step platform-up "$MAKE" --no-print-directory platform-up || PLATFORM_OK=0
fi

for step in "${STEPS[@]}"; do
    if [ "$PLATFORM_OK" = 0 ] && [[ " $NEEDS_PLATFORM " == *" $step "* ]]; then
        RESULTS+=("FAIL  $step (not run: the platform did not start)")
        FAILED=1
        continue
    fi
    run_step "$step" "$MAKE" --no-print-directory "$step" || true
done

echo
echo "================================================================ summary"
for r in "${RESULTS[@]}"; do echo "$r"; done
echo "total $(( $(date +%s) - T_ALL ))s"
if [ "$FAILED" = 0 ]; then
    echo "[test] all steps passed"
else
    echo "[test] SOME STEPS FAILED"
fi
exit "$FAILED"
