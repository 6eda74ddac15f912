{{/*
teflon.metrics.sysdigSecretName: Secret with the Sysdig API token.
Usage: {{ include "teflon.metrics.sysdigSecretName" . }}
*/}}
{{- define "teflon.metrics.sysdigSecretName" -}}
{{- default (printf "%s-sysdig" (include "teflon.metrics.fullname" .)) .Values.metrics.backends.sysdig.existingSecret -}}
{{- end -}}

{{/*
teflon.metrics.config: the metrics server's config file (format: docs/design.md).
Usage: {{ include "teflon.metrics.config" . }}
*/}}
{{- define "teflon.metrics.config" -}}
{{- $b := .Values.metrics.backends -}}
{{- $backends := dict -}}
{{- if .Values.webhook.enabled -}}
{{- $_ := set $backends "teflon" (dict "service" (include "teflon.webhook.headlessName" .) "namespace" .Release.Namespace "portName" "ops" "timeoutSeconds" $b.teflon.timeoutSeconds) -}}
{{- end -}}
{{- if $b.prometheus.enabled -}}
{{- $_ := set $backends "prometheus" (dict "url" $b.prometheus.url "bearerTokenFile" $b.prometheus.bearerTokenFile "caFile" $b.prometheus.caFile "headers" $b.prometheus.headers "timeoutSeconds" $b.prometheus.timeoutSeconds) -}}
{{- end -}}
{{- if $b.sysdig.enabled -}}
{{- $sysdig := dict "tokenFile" "/etc/teflon/sysdig/token" "timeoutSeconds" $b.sysdig.timeoutSeconds -}}
{{- if $b.sysdig.caFile -}}
{{- $_ := set $sysdig "caFile" $b.sysdig.caFile -}}
{{- end -}}
{{- if $b.sysdig.url -}}
{{- $_ := set $sysdig "url" $b.sysdig.url -}}
{{- else -}}
{{- $_ := set $sysdig "region" $b.sysdig.region -}}
{{- end -}}
{{- $_ := set $backends "sysdig" $sysdig -}}
{{- end -}}
{{- toYaml (dict "backends" $backends "metrics" .Values.metrics.definitions) -}}
{{- end -}}
