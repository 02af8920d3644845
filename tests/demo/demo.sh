#!/usr/bin/env bash
# make demo: runs the article's scenario on the local platform (the Makefile starts it before
# and stops it after, unless KEEP=1) and prints what a user sees at each step.
set -euo pipefail
repo=$(cd "$(dirname "$0")/../.." && pwd)
cd "$repo"
cargo build -q -p prodaccess-operator --bin prodaccess-operator
cargo build -q -p prodaccess-e2e --bin prodaccess-demo
"${CARGO_TARGET_DIR:-target}/debug/prodaccess-demo"
