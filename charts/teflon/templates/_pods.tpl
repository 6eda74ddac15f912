{{/*
teflon.softAntiAffinity: prefer spreading a component's replicas over nodes, so one node failure
does not take every replica.
Usage: {{ include "teflon.softAntiAffinity" (dict "ctx" $ "component" "webhook") | nindent 8 }}
*/}}
{{- define "teflon.softAntiAffinity" -}}
podAntiAffinity:
  preferredDuringSchedulingIgnoredDuringExecution:
    - weight: 100
      podAffinityTerm:
        topologyKey: kubernetes.io/hostname
        labelSelector:
          matchLabels:
            {{- include "teflon.selectorLabels" . | nindent 12 }}
{{- end -}}

{{/*
teflon.env: one EnvVar with a literal value, always quoted (env values are strings). Values from
YAML numbers arrive as float64, which toString would print as 1.048576e+06: whole numbers are
written as integers so the Settings classes can parse them.
Usage: {{ include "teflon.env" (list "TEFLON_WEBHOOK_PORT" 2801) }}
*/}}
{{- define "teflon.env" -}}
{{- $value := index . 1 -}}
{{- if and (kindIs "float64" $value) (eq $value (float64 (int64 $value))) -}}
{{- $value = int64 $value -}}
{{- end -}}
- name: {{ index . 0 }}
  value: {{ $value | toString | quote }}
{{- end -}}
