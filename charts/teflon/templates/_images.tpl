{{/*
teflon.image: an image reference from {registry, repository, tag, digest}; the tag defaults to the
chart's appVersion, a digest wins over the tag.
Usage: {{ include "teflon.image" (dict "image" .Values.webhook.image "ctx" $) }}
*/}}
{{- define "teflon.image" -}}
{{- $repo := .image.repository -}}
{{- if .image.registry -}}
{{- $repo = printf "%s/%s" .image.registry .image.repository -}}
{{- end -}}
{{- if .image.digest -}}
{{- printf "%s@%s" $repo .image.digest -}}
{{- else -}}
{{- printf "%s:%s" $repo (default .ctx.Chart.AppVersion .image.tag | toString) -}}
{{- end -}}
{{- end -}}
