{{/*
Falco comes from the official falco chart (a dependency, `falco:` in values). These helpers name what
that chart renders, computed the way it computes it, and carry what teflon computes over to it.

The official chart renders `falco.extra.env` through `tpl` in its own context (its own .Values and
.Chart, the shared .Release), and Falco expands `${VAR}` in its configuration. teflon's values.yaml
therefore points `falco.falco.http_output` at `${TEFLON_FALCO_*}` variables, whose values come from
the wiring ConfigMap rendered here with teflon's full context (templates/falco/wiring.yaml).
*/}}

{{/*
teflon.falco.wiringName: name of the wiring ConfigMap. Called from both charts' contexts, so it
may only use .Release (the same in both), never .Values or .Chart.
Usage: {{ include "teflon.falco.wiringName" . }}
*/}}
{{- define "teflon.falco.wiringName" -}}
{{- if contains "teflon" .Release.Name -}}
{{- printf "%s-falco-wiring" (.Release.Name | trunc 50 | trimSuffix "-") -}}
{{- else -}}
{{- printf "%s-teflon-falco-wiring" (.Release.Name | trunc 43 | trimSuffix "-") -}}
{{- end -}}
{{- end -}}

{{/*
teflon.falco.wiringEnv: the variables the wiring ConfigMap carries; values.yaml lists each of them in
falco.extra.env. One transport is active at a time (falcoOutput.transport): a second transport adds
its own variables here, its entries in falco.extra.env and the falco.yaml keys that use them.
Usage: {{ include "teflon.falco.wiringEnv" . | fromYaml }}
*/}}
{{- define "teflon.falco.wiringEnv" -}}
TEFLON_FALCO_HTTP_ENABLED: {{ eq .Values.falcoOutput.transport "http" | quote }}
TEFLON_FALCO_HTTP_URL: {{ include "teflon.webhook.ingestURL" . | quote }}
TEFLON_FALCO_HTTP_MTLS: {{ .Values.webhook.tls.enabled | quote }}
{{- end -}}

{{/*
teflon.falco.fullname: the official chart's name for its DaemonSet, ConfigMaps and ServiceAccount
(falco.fullname there, from falco.fullnameOverride / falco.nameOverride).
Usage: {{ include "teflon.falco.fullname" . }}
*/}}
{{- define "teflon.falco.fullname" -}}
{{- $v := .Values.falco -}}
{{- if $v.fullnameOverride -}}
{{- $v.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default "falco" $v.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/*
teflon.falco.selectorLabels: the labels of the release's own Falco pods (the official chart's
falco.selectorLabels). The webhook's NetworkPolicy admits exactly these pods to the ingest port.
Usage: {{ include "teflon.falco.selectorLabels" . | nindent 4 }}
*/}}
{{- define "teflon.falco.selectorLabels" -}}
app.kubernetes.io/name: {{ default "falco" .Values.falco.nameOverride | trunc 63 | trimSuffix "-" }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{/*
teflon.falco.clientCertDir: where the official chart mounts `falco.certs.existingClientSecret` in
the Falco container; values.yaml points http_output's client_cert, client_key and ca_cert into it.
Usage: {{ include "teflon.falco.clientCertDir" . }}
*/}}
{{- define "teflon.falco.clientCertDir" -}}/etc/falco/certs/client{{- end -}}
