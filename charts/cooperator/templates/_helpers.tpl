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

{{- /* The Secret holding the webhook server's certificate. */ -}}
{{- define "cooperator.webhookSecret" -}}
{{- if .Values.webhook.certManager.enabled -}}
{{- printf "%s-tls" (include "cooperator.webhookName" .) -}}
{{- else -}}
{{- required "webhook.secretName is required when webhook.certManager.enabled is false" .Values.webhook.secretName -}}
{{- end -}}
{{- end -}}

{{- define "cooperator.metricsName" -}}
{{- printf "%s-metrics" (include "cooperator.fullname" .) | trunc 63 | trimSuffix "-" -}}
{{- end -}}
