#!/usr/bin/env bash
# Runs a command with the test platform's environment:
#   tests/platform/env.sh CMD [ARGS...]
# Normally sources <state dir>/platform.env written by up.sh. With PRODACCESS_USE_EXISTING=1
# the caller's KUBECONFIG and PRODACCESS_AWS_ENDPOINT are used as they are (your own
# cluster and AWS endpoint), and only tool paths are filled in from the cache.
set -euo pipefail
# shellcheck source=lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

if [ "${PRODACCESS_USE_EXISTING:-0}" = 1 ]; then
    [ -n "${KUBECONFIG:-}" ] || die "PRODACCESS_USE_EXISTING=1 needs KUBECONFIG"
    [ -n "${PRODACCESS_AWS_ENDPOINT:-}" ] || die "PRODACCESS_USE_EXISTING=1 needs PRODACCESS_AWS_ENDPOINT"
    export PRODACCESS_KUBECTL="${PRODACCESS_KUBECTL:-$(k8s_tools_dir)/bin/kubectl}"
    export PRODACCESS_HELM="${PRODACCESS_HELM:-$(k8s_tools_dir)/bin/helm}"
    export PRODACCESS_PYTHON="${PRODACCESS_PYTHON:-$(venv_dir)/bin/python}"
else
    [ -f "$PLATFORM_DIR/platform.env" ] || die "$PLATFORM_DIR/platform.env missing: run tests/platform/up.sh (make platform-up)"
    # shellcheck disable=SC1091
    . "$PLATFORM_DIR/platform.env"
fi
exec "$@"
