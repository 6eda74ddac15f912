{{/*
teflon.metrics.apiServices: the group versions the metrics server registers, with their priorities.
Usage: {{ range include "teflon.metrics.apiServices" . | fromYamlArray }}...{{ end }}
*/}}
{{- define "teflon.metrics.apiServices" -}}
- {group: custom.metrics.k8s.io, version: v1beta1, versionPriority: 100}
- {group: custom.metrics.k8s.io, version: v1beta2, versionPriority: 200}
{{- if .Values.metrics.apiService.external }}
- {group: external.metrics.k8s.io, version: v1beta1, versionPriority: 100}
{{- end }}
{{- end -}}
