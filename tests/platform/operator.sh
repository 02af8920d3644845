#!/usr/bin/env bash
# make operator: runs prodaccess-operator in the foreground against the local platform, for
# trying manifests by hand after `make demo KEEP=1` (or `make platform-up`). The AWS side is the
# emulator, reached with its bootstrap credentials; nothing leaves 127.0.0.1. Extra arguments
# go to `prodaccess-operator run`, e.g. `make operator ARGS=--log-format=json`. Ctrl-C stops it.
set -euo pipefail
repo=$(cd "$(dirname "$0")/../.." && pwd)
cd "$repo"
: "${PRODACCESS_AWS_ENDPOINT:?run through tests/platform/env.sh (make operator does)}"
cargo build -q -p prodaccess-operator --bins
bin="${CARGO_TARGET_DIR:-target}/debug"
echo "[operator] $bin/prodaccess-operator run (the plugin is $bin/kubectl-prodaccess)"
# The same fixed test credentials and region as the end-to-end tests and the demo.
# Metrics and health on loopback, on a free port (the binary's default, 0.0.0.0:8080, is for
# pods), unless the arguments say otherwise.
. "$repo/tests/platform/lib.sh"
listen=()
case " $* " in
    *" --metrics-addr"*) ;;
    *) listen=(--metrics-addr "127.0.0.1:$(free_port)") ;;
esac
echo "[operator] metrics and health on ${listen[1]:-the address given}"
exec env AWS_ENDPOINT_URL="$PRODACCESS_AWS_ENDPOINT" \
    AWS_ACCESS_KEY_ID=AKIAPRODACCESSTEST01 AWS_SECRET_ACCESS_KEY=prodaccess-bootstrap-secret \
    AWS_REGION=ap-northeast-1 AWS_EC2_METADATA_DISABLED=true \
    "$bin/prodaccess-operator" run --leader-election=false "${listen[@]}" "$@"
