{{/*
teflon.labels: labels on every object; pass a dict with the root context and the component.
Usage: {{ include "teflon.labels" (dict "ctx" $ "component" "webhook") }}
*/}}
{{- define "teflon.labels" -}}
helm.sh/chart: {{ include "teflon.chart" .ctx }}
{{ include "teflon.selectorLabels" . }}
app.kubernetes.io/version: {{ .ctx.Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .ctx.Release.Service }}
app.kubernetes.io/part-of: teflon
{{- with .ctx.Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{/*
teflon.selectorLabels: the immutable labels that select a component's pods.
Usage: {{ include "teflon.selectorLabels" (dict "ctx" $ "component" "webhook") }}
*/}}
{{- define "teflon.selectorLabels" -}}
app.kubernetes.io/name: {{ include "teflon.name" .ctx }}
app.kubernetes.io/instance: {{ .ctx.Release.Name }}
{{- if .component }}
app.kubernetes.io/component: {{ .component }}
{{- end }}
{{- end -}}
