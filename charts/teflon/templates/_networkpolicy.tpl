{{/*
teflon.prometheusPeers: the NetworkPolicy `from` entry for an explicitly configured Prometheus (its
namespace by name, its pods by labels); nothing when no namespace is set.
Usage: {{ include "teflon.prometheusPeers" .Values.webhook.networkPolicy.prometheus | nindent 8 }}
*/}}
{{- define "teflon.prometheusPeers" -}}
{{- if .namespace -}}
- namespaceSelector:
    matchLabels:
      kubernetes.io/metadata.name: {{ .namespace }}
  podSelector:
    matchLabels:
      {{- toYaml .podLabels | nindent 6 }}
{{- end -}}
{{- end -}}
