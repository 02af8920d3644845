#!/usr/bin/env bash
# Tests the Helm chart: lint and render offline, then dry-run and really install it on
# the Kubernetes API server of the local test platform (or whatever KUBECONFIG names).
#
#   tests/platform/up.sh        # once, writes .platform/platform.env
#   tests/chart/test.sh
#
# Tools come from the platform env file: PRODACCESS_HELM, PRODACCESS_KUBECTL, KUBECONFIG.
# Set PRODACCESS_CHART_OFFLINE=1 to run only the checks that need no API server.
# The rendered operator arguments are fed to the real binary, which must be built first
# (`make chart-test` does): cargo build -p prodaccess-operator --bins, found in
# $CARGO_TARGET_DIR/debug (default /var/cache/prodaccess/target) or PRODACCESS_OPERATOR_BIN.
# Prints one line per check and "N passed, N failed" last; exits non-zero on a failure.
set -uo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$HERE/../.." && pwd)"
CHART="$REPO/charts/prodaccess-operator"
ALL_VALUES="$HERE/values-all.yaml"
ENV_FILE="${PRODACCESS_PLATFORM_DIR:-$REPO/.platform}/platform.env"
OFFLINE="${PRODACCESS_CHART_OFFLINE:-0}"

if [ -f "$ENV_FILE" ]; then
    # shellcheck disable=SC1090
    . "$ENV_FILE"
fi
HELM="${PRODACCESS_HELM:-}"
KUBECTL="${PRODACCESS_KUBECTL:-}"
if [ -z "$HELM" ] || [ ! -x "$HELM" ]; then
    echo "FAIL - helm not found: run tests/platform/up.sh (writes $ENV_FILE) or set PRODACCESS_HELM" >&2
    exit 2
fi
if [ "$OFFLINE" != 1 ] && { [ -z "$KUBECTL" ] || [ -z "${KUBECONFIG:-}" ]; }; then
    echo "FAIL - no API server: run tests/platform/up.sh or set PRODACCESS_CHART_OFFLINE=1" >&2
    exit 2
fi

WORK="$(mktemp -d)"
PASSED=0
FAILED=0
pass() { PASSED=$((PASSED + 1)); echo "ok - $*"; }
fail() { FAILED=$((FAILED + 1)); echo "FAIL - $*"; }

# check DESCRIPTION CMD...: runs CMD with output to a log, shows the log on failure.
check() {
    local desc="$1"; shift
    local logf="$WORK/check-$((PASSED + FAILED)).log"
    if "$@" >"$logf" 2>&1; then
        pass "$desc"
    else
        fail "$desc"
        sed 's/^/    | /' "$logf" | tail -n 30
    fi
}

# refute DESCRIPTION CMD...: passes when CMD fails.
refute() {
    local desc="$1"; shift
    if "$@" >"$WORK/refute.log" 2>&1; then
        fail "$desc"
        sed 's/^/    | /' "$WORK/refute.log" | tail -n 10
    else
        pass "$desc"
    fi
}

to_file() { # to_file FILE CMD...: runs CMD with its output to FILE
    local out="$1"; shift
    "$@" >"$out"
}

renders_pdb_as() { # renders_pdb_as APIVERSION HELM-TEMPLATE-ARGS...
    local want="$1"; shift
    "$HELM" template pa "$CHART" "$@" | grep -q "^apiVersion: $want\$"
}

has_args() { # has_args FILE ARG...: every ARG appears as a quoted argument in FILE
    local file="$1" a; shift
    for a in "$@"; do
        grep -qF -- "\"$a\"" "$file" || { echo "missing argument $a"; return 1; }
    done
}

has_doc() { # has_doc FILE KIND [APIVERSION]
    grep -q "^kind: $2\$" "$1" && { [ -z "${3:-}" ] || grep -q "^apiVersion: $3\$" "$1"; }
}

# ------------------------------------------------------------------ offline checks
check "helm lint with default values" "$HELM" lint "$CHART"
check "helm lint with every optional feature on" "$HELM" lint "$CHART" -f "$ALL_VALUES"
refute "values schema rejects an unknown key" "$HELM" lint "$CHART" --set notAValue=1
refute "values schema rejects a bad log format" "$HELM" lint "$CHART" --set logging.format=xml
refute "values schema rejects a privileged metrics port" "$HELM" lint "$CHART" \
    --set metrics.port=80

check "helm template with default values" to_file "$WORK/default.yaml" \
    "$HELM" template pa "$CHART" -n prodaccess-system --include-crds
check "helm template with every optional feature on" to_file "$WORK/all.yaml" \
    "$HELM" template pa "$CHART" -n prodaccess-system --include-crds -f "$ALL_VALUES"

for kind in Deployment ServiceAccount ClusterRole ClusterRoleBinding Role RoleBinding \
    Service PodDisruptionBudget; do
    check "default render has a $kind" has_doc "$WORK/default.yaml" "$kind"
done
refute "default render has no ServiceMonitor" has_doc "$WORK/default.yaml" ServiceMonitor
refute "default render has no NetworkPolicy" has_doc "$WORK/default.yaml" NetworkPolicy
check "full render has a ServiceMonitor" \
    has_doc "$WORK/all.yaml" ServiceMonitor monitoring.coreos.com/v1
check "full render has a NetworkPolicy" has_doc "$WORK/all.yaml" NetworkPolicy
check "offline render for Kubernetes 1.35 uses policy/v1 for the PDB" renders_pdb_as policy/v1
check "offline render for Kubernetes 1.20 uses policy/v1beta1 for the PDB" \
    renders_pdb_as policy/v1beta1 --kube-version 1.20.2
check "full render maps values to operator arguments" has_args "$WORK/all.yaml" \
    --namespaces=team-a,team-b "--selector=prodaccess.io/shard in (a,b)" --log-format=text \
    --grant-resync=15s --route-resync=120s --add-margin=20s --leader-election=true \
    --aws-budget=iam:write=2.5,iam:write=5/10,ec2:read=50,elasticloadbalancing:write=2.5 \
    --lease-name=prodaccess-operator-shard-a --metrics-addr=0.0.0.0:9090 --account-resync=15m
check "default render passes the documented resync periods with their unit" \
    has_args "$WORK/default.yaml" --grant-resync=30s --route-resync=300s
refute "default render keeps optional arguments out" \
    grep -qE -- '--(namespaces|selector|add-margin|aws-budget)=' "$WORK/default.yaml"
printf 'resync:\n  grantSeconds: 1000000\n  routeSeconds: 86400\n' >"$WORK/long.yaml"
check "helm template with a grant resync of a million seconds" to_file \
    "$WORK/long-render.yaml" "$HELM" template pa "$CHART" -f "$WORK/long.yaml"
check "second counts from a values file render as whole numbers, not 1e+06" has_args \
    "$WORK/long-render.yaml" --grant-resync=1000000s --route-resync=86400s
check "helm template with only rateLimits.iamWritesPerSecond set" to_file "$WORK/iam-rate.yaml" \
    "$HELM" template pa "$CHART" --set rateLimits.iamWritesPerSecond=3
check "rateLimits.iamWritesPerSecond alone maps to --aws-budget" has_args "$WORK/iam-rate.yaml" \
    --aws-budget=iam:write=3
# Budgets go through a values file: --set would split them at their commas.
budget_lint() { # budget_lint TEXT: helm lint with awsBudget set to TEXT
    printf 'awsBudget: "%s"\n' "$1" >"$WORK/budget.yaml"
    "$HELM" lint "$CHART" -f "$WORK/budget.yaml"
}
check "values schema accepts awsBudget \"ssm:read=0.5/1,sts:write=100/200\"" \
    budget_lint "ssm:read=0.5/1,sts:write=100/200"
for budget in "iam:write" "iam:write=0" "iam:write=0.0/2" "iam:write=5/0.5" "iam:delete=5" \
    "IAM:write=5" "iam:write=5," "iam:write=5 ,ec2:read=2" "iam:write=-1" "iam:write=1e3"; do
    refute "values schema rejects awsBudget \"$budget\"" budget_lint "$budget"
done
refute "values schema rejects a resync period of 0 seconds" "$HELM" lint "$CHART" \
    --set resync.grantSeconds=0
refute "values schema rejects a duration string for resync seconds" "$HELM" lint "$CHART" \
    --set-string resync.routeSeconds=5m
refute "values schema rejects an add margin of 0 seconds" "$HELM" lint "$CHART" \
    --set grants.addMarginSeconds=0
check "full render carries the IRSA role annotation" \
    grep -q 'eks.amazonaws.com/role-arn: arn:aws:iam::333333333333:role/prodaccess-operator' \
    "$WORK/all.yaml"
refute "serviceMonitor without the metrics Service is refused" "$HELM" template pa "$CHART" \
    --set serviceMonitor.enabled=true --set metrics.service.enabled=false

# ---------------------------------------------------------- rendered arguments vs the binary
# Only the binary knows which flags and values it takes, and the chart and the binary change
# separately. So run the real binary with exactly the arguments and environment the
# Deployment gives the container, against a cluster that is not there (nothing listens on
# 127.0.0.1:1): it must get past argument parsing and stop at its start-up check of the
# cluster, with exit status 1 and the one-line "cannot reach the Kubernetes API" error,
# never clap's usage error (exit status 2). `make chart-test` builds the binary first.
TARGET_DIR="${CARGO_TARGET_DIR:-${PRODACCESS_CACHE:-/var/cache/prodaccess}/target}"
OPERATOR="${PRODACCESS_OPERATOR_BIN:-$TARGET_DIR/debug/prodaccess-operator}"
PYTHON="${PRODACCESS_PYTHON:-python3}"
NOWHERE=https://127.0.0.1:1
newer_source() { find "$REPO/operator" -name '*.rs' -newer "$OPERATOR" | head -n 1; }
if [ -x "$OPERATOR" ] && [ -n "$(newer_source)" ]; then
    echo "note - the operator binary is older than operator/ sources; rebuild it with" \
        "cargo build -p prodaccess-operator --bins"
fi
cat >"$WORK/nowhere.kubeconfig" <<EOF
apiVersion: v1
kind: Config
clusters:
  - name: nowhere
    cluster:
      server: $NOWHERE
      insecure-skip-tls-verify: true
users:
  - name: nobody
    user:
      token: not-a-token
contexts:
  - name: nowhere
    context: {cluster: nowhere, user: nobody}
current-context: nowhere
EOF

# container_invocation RENDER BASE: writes the operator container's arguments to BASE.args and
# its environment (NAME=VALUE) to BASE.env, NUL-separated. Variables set from the pod
# (valueFrom) get stand-in values, as the kubelet would give them real ones.
container_invocation() {
    "$PYTHON" - "$1" "$2" <<'PY'
import sys, yaml
render, base = sys.argv[1], sys.argv[2]
deps = [d for d in yaml.safe_load_all(open(render)) if d and d.get("kind") == "Deployment"]
if len(deps) != 1:
    sys.exit(f"expected one Deployment in {render}, found {len(deps)}")
dep = deps[0]
container = next(c for c in dep["spec"]["template"]["spec"]["containers"]
                 if c["name"] == "operator")
if "command" in container:
    sys.exit("the container overrides the image's entrypoint; this check assumes it does not")
stand_ins = {"metadata.namespace": dep["metadata"].get("namespace", "default"),
             "metadata.name": dep["metadata"]["name"] + "-0"}
env = []
for var in container.get("env", []):
    if "value" in var:
        value = var["value"]
    else:
        field = var.get("valueFrom", {}).get("fieldRef", {}).get("fieldPath", "")
        value = stand_ins.get(field, "stand-in")
    env.append(f"{var['name']}={value}")
with open(base + ".args", "w") as out:
    out.write("".join(str(a) + "\0" for a in container.get("args", [])))
with open(base + ".env", "w") as out:
    out.write("".join(e + "\0" for e in env))
PY
}

# operator_accepts RENDER: the binary takes the rendered container's arguments and environment.
operator_accepts() {
    local base rc=0 last
    local -a args envs
    base="$WORK/invocation-$(basename "$1" .yaml)"
    if [ ! -x "$OPERATOR" ]; then
        echo "no operator binary at $OPERATOR: cargo build -p prodaccess-operator --bins"
        return 1
    fi
    container_invocation "$1" "$base" || return 1
    mapfile -d '' args <"$base.args"
    mapfile -d '' envs <"$base.env"
    echo "prodaccess-operator ${args[*]}"
    # A clean environment, the rendered variables, then ours last so that nothing rendered
    # can aim the binary at a real cluster, real AWS or an instance metadata service.
    env -i PATH="$PATH" HOME="$WORK" AWS_REGION=us-east-1 "${envs[@]}" \
        KUBECONFIG="$WORK/nowhere.kubeconfig" \
        AWS_ACCESS_KEY_ID=AKIDNOTREAL AWS_SECRET_ACCESS_KEY=not-a-secret \
        AWS_ENDPOINT_URL=http://127.0.0.1:1 AWS_EC2_METADATA_DISABLED=true \
        AWS_CONFIG_FILE=/dev/null AWS_SHARED_CREDENTIALS_FILE=/dev/null \
        timeout 60 "$OPERATOR" "${args[@]}" >"$base.out" 2>"$base.err" || rc=$?
    sed 's/^/stderr: /' "$base.err" | tail -n 8
    last="$(tail -n 1 "$base.err")"
    if [ "$rc" != 1 ]; then
        echo "exit status $rc, want 1 (2 is a usage error, 124 a hang)"
        return 1
    fi
    if grep -qE "^Usage:|try '--help'" "$base.err"; then
        echo "the binary printed a usage error"
        return 1
    fi
    case "$last" in
        "error: cannot reach the Kubernetes API at $NOWHERE/"*) ;;
        *) echo "last line is not the cluster-unreachable start-up error"; return 1 ;;
    esac
}

check "operator binary accepts the default render's arguments and environment" \
    operator_accepts "$WORK/default.yaml"
check "operator binary accepts the full render's arguments and environment" \
    operator_accepts "$WORK/all.yaml"

if [ "$OFFLINE" = 1 ]; then
    echo "$PASSED passed, $FAILED failed"
    rm -rf "$WORK"
    [ "$FAILED" = 0 ]
    exit
fi

# ------------------------------------------------------------------ API server checks
K() { "$KUBECTL" "$@"; }
NS="chart-test-$(date +%s)-$$"
REL="pa-$$"
SM_CRD=servicemonitors.monitoring.coreos.com
CREATED_SM_CRD=0
INSTALLED=0

cleanup() {
    if [ "$INSTALLED" = 1 ]; then
        "$HELM" uninstall "$REL" -n "$NS" >/dev/null 2>&1 || true
    fi
    K delete namespace "$NS" --wait=false --ignore-not-found >/dev/null 2>&1 || true
    if [ "$CREATED_SM_CRD" = 1 ]; then
        K delete crd "$SM_CRD" --wait=false --ignore-not-found >/dev/null 2>&1 || true
    fi
    rm -rf "$WORK"
}
trap cleanup EXIT

check "API server is reachable" K get --raw /readyz
if ! K get crd "$SM_CRD" >/dev/null 2>&1; then
    if K apply -f "$HERE/fixtures/servicemonitor-crd.yaml" >"$WORK/sm.log" 2>&1; then
        CREATED_SM_CRD=1
        K wait --for condition=Established --timeout=30s crd "$SM_CRD" >/dev/null 2>&1
    fi
fi
check "ServiceMonitor CRD stand-in is present" K get crd "$SM_CRD"
check "fresh namespace $NS created" K create namespace "$NS"

# Render against the live server so Capabilities reflect it (policy/v1beta1 PDB on 1.20).
check "helm template --dry-run=server against the API server (default values)" \
    to_file "$WORK/live-default.yaml" "$HELM" template "$REL" "$CHART" -n "$NS" --dry-run=server
check "helm template --dry-run=server against the API server (all features)" \
    to_file "$WORK/live-all.yaml" \
    "$HELM" template "$REL" "$CHART" -n "$NS" --dry-run=server -f "$ALL_VALUES"

# Ask for policy/v1 itself: api-resources can fail for unrelated discovery errors on a busy
# server, which must not decide which API version the test expects.
if ! K get --raw /apis/policy/v1 >/dev/null 2>&1; then
    check "live render picks policy/v1beta1 for the PDB on a server without policy/v1" \
        grep -q '^apiVersion: policy/v1beta1$' "$WORK/live-all.yaml"
else
    check "live render picks policy/v1 for the PDB" \
        grep -q '^apiVersion: policy/v1$' "$WORK/live-all.yaml"
fi

CRD_FILES=("$CHART"/crds/*.yaml)
if [ -e "${CRD_FILES[0]}" ]; then
    check "server dry-run of the chart's CRDs" K apply --dry-run=server -f "$CHART/crds/"
else
    echo "skip - chart has no CRDs yet (make crds copies them into $CHART/crds)"
fi
check "server dry-run of the default render" \
    K apply --dry-run=server -f "$WORK/live-default.yaml"
check "server dry-run of the full render" to_file "$WORK/dry-all.json" \
    K apply --dry-run=server -f "$WORK/live-all.yaml" -o json

check "dry-run Deployment is hardened and wired as documented" python3 - "$WORK/dry-all.json" <<'PY'
import json, sys
doc = json.load(open(sys.argv[1]))
items = doc.get("items", [doc])
dep = next(i for i in items if i["kind"] == "Deployment")
pod = dep["spec"]["template"]["spec"]
c = pod["containers"][0]
sc = c["securityContext"]
problems = []
def want(cond, what):
    if not cond:
        problems.append(what)
want(pod["securityContext"].get("runAsNonRoot") is True, "pod runAsNonRoot")
want(sc.get("runAsUser") == 65532, "runAsUser 65532")
want(sc.get("readOnlyRootFilesystem") is True, "readOnlyRootFilesystem")
want(sc.get("allowPrivilegeEscalation") is False, "allowPrivilegeEscalation false")
want(sc.get("capabilities", {}).get("drop") == ["ALL"], "capabilities drop ALL")
want(sc.get("seccompProfile", {}).get("type") == "RuntimeDefault", "seccomp RuntimeDefault")
want("limits" in c.get("resources", {}), "resource limits")
want(c["livenessProbe"]["httpGet"]["path"] == "/live", "liveness /live")
want(c["readinessProbe"]["httpGet"]["path"] == "/ready", "readiness /ready")
want(c["livenessProbe"]["httpGet"]["port"] == "metrics", "probes on the metrics port")
env = {e["name"]: e for e in c.get("env", [])}
want(env.get("POD_NAMESPACE", {}).get("valueFrom", {}).get("fieldRef", {}).get("fieldPath")
     == "metadata.namespace", "POD_NAMESPACE from fieldRef")
want(env.get("AWS_REGION", {}).get("value") == "ap-northeast-1", "AWS_REGION")
want(c["args"][0] == "run", "first argument is run")
want("--leader-election=true" in c["args"], "leader election flag")
want(dep["spec"]["replicas"] == 3, "replicas from values")
if problems:
    print("missing: " + ", ".join(problems))
    sys.exit(1)
PY

# ------------------------------------------------------------------ real install
if "$HELM" install "$REL" "$CHART" -n "$NS" -f "$ALL_VALUES" --timeout 2m \
    >"$WORK/install.log" 2>&1; then
    INSTALLED=1
    pass "helm install into $NS"
else
    fail "helm install into $NS"
    sed 's/^/    | /' "$WORK/install.log" | tail -n 30
fi

FULL="$REL-prodaccess-operator"
SA=prodaccess-operator-sa
CLUSTER_NAME="$FULL-$NS"
check "Deployment exists" K -n "$NS" get deployment "$FULL"
irsa_role() { K -n "$NS" get sa "$SA" -o jsonpath='{.metadata.annotations.eks\.amazonaws\.com/role-arn}'; }
check "ServiceAccount exists with the IRSA annotation" \
    test "$(irsa_role 2>&1)" = arn:aws:iam::333333333333:role/prodaccess-operator
check "ClusterRole exists" K get clusterrole "$CLUSTER_NAME"
check "ClusterRoleBinding exists" K get clusterrolebinding "$CLUSTER_NAME"
check "leader-election Role exists" K -n "$NS" get role "$FULL-leader-election"
check "leader-election RoleBinding exists" K -n "$NS" get rolebinding "$FULL-leader-election"
check "metrics Service exists" K -n "$NS" get service "$FULL-metrics"
check "PodDisruptionBudget exists" K -n "$NS" get poddisruptionbudgets "$FULL"
check "NetworkPolicy exists" K -n "$NS" get networkpolicy "$FULL"
check "ServiceMonitor exists" K -n "$NS" get servicemonitors.monitoring.coreos.com "$FULL"

# RBAC: exactly what the operator needs, decided by the API server's own authorizer.
# SubjectAccessReviews rather than `kubectl auth can-i`, which cannot name resources of a
# CRD the server does not serve yet (the chart's CRDs may not be generated yet).
can() { # can VERB GROUP RESOURCE [SUBRESOURCE] [NAMESPACE]
    local review
    review="$(printf '{"apiVersion":"authorization.k8s.io/v1","kind":"SubjectAccessReview",
        "spec":{"user":"system:serviceaccount:%s:%s",
        "groups":["system:serviceaccounts","system:serviceaccounts:%s","system:authenticated"],
        "resourceAttributes":{"verb":"%s","group":"%s","resource":"%s","subresource":"%s",
        "namespace":"%s"}}}' "$NS" "$SA" "$NS" "$1" "$2" "$3" "${4:-}" "${5:-}")"
    [ "$(printf '%s' "$review" | K create -f - -o jsonpath='{.status.allowed}')" = true ]
}
P=prodaccess.io
check "operator can watch grants in every namespace" can watch $P productionaccessgrants
check "operator can patch grant status" can patch $P productionaccessgrants status team-a
check "operator can update route finalizers" can update $P privatelinkroutes finalizers team-a
check "operator can patch AwsAccounts" can patch $P awsaccounts
check "operator can patch AccessGroup status" can patch $P accessgroups status
check "operator can create events.k8s.io Events" can create events.k8s.io events "" team-a
check "operator can patch core Events" can patch "" events "" team-a
check "operator can list namespaces" can list "" namespaces
check "operator can create its Lease in $NS" can create coordination.k8s.io leases "" "$NS"
check "operator can update its Lease in $NS" can update coordination.k8s.io leases "" "$NS"
refute "operator cannot create Leases in another namespace" \
    can create coordination.k8s.io leases "" default
refute "operator cannot create grants" can create $P productionaccessgrants "" team-a
refute "operator cannot delete routes" can delete $P privatelinkroutes "" team-a
refute "operator cannot update grant status (patch only)" \
    can update $P productionaccessgrants status team-a
refute "operator cannot read Secrets" can get "" secrets "" "$NS"
refute "operator cannot delete namespaces" can delete "" namespaces

if [ "$INSTALLED" = 1 ]; then
    check "helm uninstall" "$HELM" uninstall "$REL" -n "$NS"
    INSTALLED=0
    refute "ClusterRole is gone after uninstall" K get clusterrole "$CLUSTER_NAME"
    refute "Deployment is gone after uninstall" K -n "$NS" get deployment "$FULL"
fi

echo "$PASSED passed, $FAILED failed"
[ "$FAILED" = 0 ]
