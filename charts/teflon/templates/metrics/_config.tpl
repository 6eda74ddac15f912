{{/*
teflon.metrics.backendSecretName: the Secret holding a backend's token (the backend-secret convention:
`metrics.backends.<name>.token` is stored in `<metrics fullname>-<name>`; `existingSecret` names one
the user manages instead).
Usage: {{ include "teflon.metrics.backendSecretName" (dict "ctx" $ "name" "sysdig") }}
*/}}
{{- define "teflon.metrics.backendSecretName" -}}
{{- $cfg := index .ctx.Values.metrics.backends .name -}}
{{- default (printf "%s-%s" (include "teflon.metrics.fullname" .ctx) .name) $cfg.existingSecret -}}
{{- end -}}

{{/*
teflon.metrics.tokenBackends: the enabled backends that take a token by the backend-secret convention
(their values have a `token` key), as a sorted, comma-separated list; "" when none.
Each is mounted at /etc/teflon/<name>/token and its config gets `tokenFile` pointing there.
Usage: {{ include "teflon.metrics.tokenBackends" . | splitList "," | compact }}
*/}}
{{- define "teflon.metrics.tokenBackends" -}}
{{- $names := list -}}
{{- range $name, $cfg := .Values.metrics.backends -}}
{{- if and (ne $name "teflon") $cfg.enabled (hasKey $cfg "token") -}}
{{- $names = append $names $name -}}
{{- end -}}
{{- end -}}
{{- $names | sortAlpha | join "," -}}
{{- end -}}

{{/*
teflon.metrics.config: the metrics server's config file (format: docs/design.md). The teflon backend
is derived from the webhook; every other enabled backend gets its values minus the chart's own keys
(enabled, token, existingSecret, existingSecretKey) and empty strings, plus `tokenFile` when it takes
a token. A new backend needs no change here.
Usage: {{ include "teflon.metrics.config" . }}
*/}}
{{- define "teflon.metrics.config" -}}
{{- $b := .Values.metrics.backends -}}
{{- $backends := dict -}}
{{- if .Values.webhook.enabled -}}
{{- $_ := set $backends "teflon" (dict "service" (include "teflon.webhook.headlessName" .) "namespace" .Release.Namespace "portName" "ops" "timeoutSeconds" $b.teflon.timeoutSeconds) -}}
{{- end -}}
{{- range $name, $cfg := $b -}}
{{- if and (ne $name "teflon") $cfg.enabled -}}
{{- $out := dict -}}
{{- range $key, $value := omit $cfg "enabled" "token" "existingSecret" "existingSecretKey" -}}
{{- if not (and (kindIs "string" $value) (eq $value "")) -}}
{{- $_ := set $out $key $value -}}
{{- end -}}
{{- end -}}
{{- if hasKey $cfg "token" -}}
{{- $_ := set $out "tokenFile" (printf "/etc/teflon/%s/token" $name) -}}
{{- end -}}
{{- $_ := set $backends $name $out -}}
{{- end -}}
{{- end -}}
{{- toYaml (dict "backends" $backends "metrics" .Values.metrics.definitions) -}}
{{- end -}}
