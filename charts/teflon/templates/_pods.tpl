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
teflon.env: one EnvVar with a literal value, always quoted (env values are strings).
Usage: {{ include "teflon.env" (list "TEFLON_WEBHOOK_PORT" 2801) }}
*/}}
{{- define "teflon.env" -}}
- name: {{ index . 0 }}
  value: {{ index . 1 | toString | quote }}
{{- end -}}
