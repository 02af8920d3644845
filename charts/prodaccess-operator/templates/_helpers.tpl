{{/*
Names and labels shared by every template of the chart.
*/}}

{{- define "prodaccess-operator.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/*
Full name: the release name when it already contains the chart name, else both joined.
Truncated to 63 characters because some name fields are DNS labels.
*/}}
{{- define "prodaccess-operator.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/*
Cluster-scoped objects (ClusterRole, ClusterRoleBinding) are shared by every release in
the cluster, so their names carry the release namespace to keep two releases apart.
*/}}
{{- define "prodaccess-operator.clusterName" -}}
{{- printf "%s-%s" (include "prodaccess-operator.fullname" .) .Release.Namespace | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "prodaccess-operator.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "prodaccess-operator.selectorLabels" -}}
app.kubernetes.io/name: {{ include "prodaccess-operator.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "prodaccess-operator.labels" -}}
helm.sh/chart: {{ include "prodaccess-operator.chart" . }}
{{ include "prodaccess-operator.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/component: operator
app.kubernetes.io/part-of: prodaccess
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end -}}

{{- define "prodaccess-operator.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "prodaccess-operator.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "prodaccess-operator.image" -}}
{{- $tag := default .Chart.AppVersion .Values.image.tag -}}
{{- if .Values.image.digest -}}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest -}}
{{- else -}}
{{- printf "%s:%s" .Values.image.repository $tag -}}
{{- end -}}
{{- end -}}

{{/*
PodDisruptionBudget API: policy/v1 where the cluster serves it (1.21+), else
policy/v1beta1 (1.20, which the local test API server runs). Against a live cluster
Helm knows every group/version/kind; an offline `helm template` knows only group
versions, so there the Kubernetes version (--kube-version) decides.
*/}}
{{- define "prodaccess-operator.pdbApiVersion" -}}
{{- if .Capabilities.APIVersions.Has "policy/v1/PodDisruptionBudget" -}}
policy/v1
{{- else if .Capabilities.APIVersions.Has "policy/v1beta1/PodDisruptionBudget" -}}
policy/v1beta1
{{- else if semverCompare ">=1.21-0" .Capabilities.KubeVersion.Version -}}
policy/v1
{{- else -}}
policy/v1beta1
{{- end -}}
{{- end -}}

{{/*
Operator arguments, mapped from values. Booleans are passed as --flag=true|false so that
turning a default-on flag off is expressible. Durations are kept in seconds in values and
passed with their unit ("30s"): the operator refuses a bare number. Seconds go through int64
because a number read from a values file is a float, which printf writes as 1e+06 once it
reaches a million. Both budget values become one --aws-budget; awsBudget comes last, so its
entries win over rateLimits.iamWritesPerSecond for the same service.
tests/chart/test.sh runs the real binary with what this renders.
*/}}
{{- define "prodaccess-operator.args" -}}
- run
- {{ printf "--metrics-addr=0.0.0.0:%v" .Values.metrics.port | quote }}
- {{ printf "--log-format=%s" .Values.logging.format | quote }}
- {{ printf "--leader-election=%t" .Values.leaderElection.enabled | quote }}
- {{ printf "--lease-name=%s" .Values.leaderElection.leaseName | quote }}
- {{ printf "--grant-resync=%ds" (int64 .Values.resync.grantSeconds) | quote }}
- {{ printf "--route-resync=%ds" (int64 .Values.resync.routeSeconds) | quote }}
{{- with .Values.watch.namespaces }}
- {{ printf "--namespaces=%s" (join "," .) | quote }}
{{- end }}
{{- with .Values.watch.selector }}
- {{ printf "--selector=%s" . | quote }}
{{- end }}
{{- if not (kindIs "invalid" .Values.grants.addMarginSeconds) }}
- {{ printf "--add-margin=%ds" (int64 .Values.grants.addMarginSeconds) | quote }}
{{- end }}
{{- $budget := list }}
{{- if not (kindIs "invalid" .Values.rateLimits.iamWritesPerSecond) }}
{{- $budget = append $budget (printf "iam:write=%v" .Values.rateLimits.iamWritesPerSecond) }}
{{- end }}
{{- with .Values.awsBudget }}
{{- $budget = append $budget . }}
{{- end }}
{{- with $budget }}
- {{ printf "--aws-budget=%s" (join "," .) | quote }}
{{- end }}
{{- range .Values.extraArgs }}
- {{ . | quote }}
{{- end }}
{{- end -}}
