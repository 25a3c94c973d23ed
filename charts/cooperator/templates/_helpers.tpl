{{- define "cooperator.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "cooperator.labels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{- define "cooperator.selectorLabels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- /* Leader election: asked for, or needed by more than one replica. */ -}}
{{- define "cooperator.leaderElect" -}}
{{- if or .Values.leaderElection.enabled (gt (int .Values.replicaCount) 1) -}}true{{- end -}}
{{- end -}}

{{- define "cooperator.webhookName" -}}
{{- printf "%s-webhook" (include "cooperator.fullname" .) | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- /* The Secret holding the webhook server's certificate: cert-manager's or the operator's. */ -}}
{{- define "cooperator.webhookSecret" -}}
{{- printf "%s-tls" (include "cooperator.webhookName" .) -}}
{{- end -}}

{{- /* The webhook configurations, by kind. */ -}}
{{- define "cooperator.webhookConfiguration" -}}
{{- printf "%s-%s" (include "cooperator.fullname" .root) (ternary "validating" "mutating" (eq .kind "ValidatingWebhookConfiguration")) -}}
{{- end -}}

{{- define "cooperator.metricsName" -}}
{{- printf "%s-metrics" (include "cooperator.fullname" .) | trunc 63 | trimSuffix "-" -}}
{{- end -}}
