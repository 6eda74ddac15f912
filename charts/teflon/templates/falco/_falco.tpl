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
TEFLON_FALCO_PROGRAM_ENABLED: {{ eq .Values.falcoOutput.transport "program" | quote }}
TEFLON_FALCO_PROGRAM_KEEP_ALIVE: {{ .Values.falcoOutput.program.keepAlive | quote }}
TEFLON_FALCO_PROGRAM: {{ include "teflon.falco.program" . | quote }}
{{- end -}}

{{/*
teflon.falco.program: the shell command Falco's program_output runs (`/bin/sh -c`, alerts on its stdin,
one JSON line each). curl streams stdin as one chunked NDJSON request to the webhook's stream route,
with the same TLS and client certificate as http_output. Why each part:
- `-T .`: upload stdin as it arrives, without blocking on it, so curl sees the webhook's answer at
  once (a 503 when a replica shuts down) and exits before reading another line; with `-T -` curl would
  read the next alert and write it into the closed connection.
- the loop: Falco starts a keep_alive program once and never restarts it (a dead program leaves Falco
  writing into a broken pipe), so curl is run again after a second whenever it fails. It ends only
  when curl succeeds, that is when Falco closed stdin (shutdown, reopen, or the one alert of
  keep_alive: false) and the webhook answered 202.
- no `$` anywhere: Falco expands `${...}` in falco.yaml, this value included.
Usage: {{ include "teflon.falco.program" . }}
*/}}
{{- define "teflon.falco.program" -}}
{{- $tls := "" -}}
{{- if .Values.webhook.tls.enabled -}}
{{- $dir := include "teflon.falco.clientCertDir" . -}}
{{- $tls = printf " --cacert %s/ca.crt --cert %s/tls.crt --key %s/tls.key" $dir $dir $dir -}}
{{- end -}}
{{- $curl := printf "curl -sS --no-progress-meter --fail --connect-timeout 5 -o /dev/null -X POST -T . -H 'Transfer-Encoding: chunked' -H 'Content-Type: application/x-ndjson' -H 'Expect:'%s %s" $tls (include "teflon.webhook.streamURL" .) -}}
{{- printf "while :; do %s && exit 0; sleep 1; done" $curl -}}
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
