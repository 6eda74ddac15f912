{{/*
Names of every object. Component names are the full name plus a suffix; the full name is truncated so
the longest suffix ("-webhook-headless", 17 characters) still fits in a 63-character DNS label.
*/}}

{{/*
teflon.name: the chart name, or nameOverride.
Usage: {{ include "teflon.name" . }}
*/}}
{{- define "teflon.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/*
teflon.fullname: the prefix of every object name.
Usage: {{ include "teflon.fullname" . }}
*/}}
{{- define "teflon.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 46 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 46 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 46 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/*
teflon.chart: chart name and version for the helm.sh/chart label.
Usage: {{ include "teflon.chart" . }}
*/}}
{{- define "teflon.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" -}}
{{- end -}}


{{/*
teflon.webhook.fullname: name of the webhook Deployment and Service.
Usage: {{ include "teflon.webhook.fullname" . }}
*/}}
{{- define "teflon.webhook.fullname" -}}
{{- printf "%s-webhook" (include "teflon.fullname" .) -}}
{{- end -}}

{{/*
teflon.webhook.headlessName: name of the headless Service the metrics server resolves to reach every
webhook replica.
Usage: {{ include "teflon.webhook.headlessName" . }}
*/}}
{{- define "teflon.webhook.headlessName" -}}
{{- printf "%s-webhook-headless" (include "teflon.fullname" .) -}}
{{- end -}}

{{/*
teflon.metrics.fullname: name of the metrics Deployment and Service.
Usage: {{ include "teflon.metrics.fullname" . }}
*/}}
{{- define "teflon.metrics.fullname" -}}
{{- printf "%s-metrics" (include "teflon.fullname" .) -}}
{{- end -}}

{{/*
teflon.<component>.serviceAccountName: ServiceAccount names.
Usage: {{ include "teflon.webhook.serviceAccountName" . }}
*/}}
{{- define "teflon.webhook.serviceAccountName" -}}
{{- default (include "teflon.webhook.fullname" .) .Values.webhook.serviceAccount.name -}}
{{- end -}}
{{- define "teflon.metrics.serviceAccountName" -}}
{{- default (include "teflon.metrics.fullname" .) .Values.metrics.serviceAccount.name -}}
{{- end -}}

{{/*
teflon.webhook.host: cluster DNS name of the webhook Service (also the serving certificate's SAN).
Usage: {{ include "teflon.webhook.host" . }}
*/}}
{{- define "teflon.webhook.host" -}}
{{- printf "%s.%s.svc" (include "teflon.webhook.fullname" .) .Release.Namespace -}}
{{- end -}}

{{/*
teflon.webhook.ingestURL: the URL Falco's http_output posts alerts to.
Usage: {{ include "teflon.webhook.ingestURL" . }}
*/}}
{{- define "teflon.webhook.ingestURL" -}}
{{- printf "%s://%s:%d/v1/falco" (ternary "https" "http" .Values.webhook.tls.enabled) (include "teflon.webhook.host" .) (include "teflon.webhook.ingestPort" . | int) -}}
{{- end -}}

{{/*
teflon.webhook.streamURL: the URL Falco's program_output streams alerts to (one NDJSON request).
Usage: {{ include "teflon.webhook.streamURL" . }}
*/}}
{{- define "teflon.webhook.streamURL" -}}
{{- printf "%s/stream" (include "teflon.webhook.ingestURL" .) -}}
{{- end -}}

{{/*
Ports (docs/design.md). They are contracts between the parts, not settings.
Usage: {{ include "teflon.webhook.ingestPort" . }}
*/}}
{{- define "teflon.webhook.ingestPort" -}}2801{{- end -}}
{{- define "teflon.webhook.opsPort" -}}8081{{- end -}}
{{- define "teflon.metrics.httpsPort" -}}6443{{- end -}}
{{- define "teflon.metrics.opsPort" -}}8080{{- end -}}
