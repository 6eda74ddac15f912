{{/*
teflon.webhook.enforcedActions: comma-separated, sorted action types the webhook may really perform.
Empty in dryRun mode; otherwise the types of every action in rules that are not downgraded to dryRun.
This is what the webhook's write permissions are derived from.
Usage: {{ include "teflon.webhook.enforcedActions" . | splitList "," }}
*/}}
{{- define "teflon.webhook.enforcedActions" -}}
{{- $types := dict -}}
{{- if eq .Values.webhook.policy.mode "enforce" -}}
{{- range .Values.webhook.policy.rules -}}
{{- if ne (.mode | default "enforce") "dryRun" -}}
{{- range .actions -}}
{{- $_ := set $types .type true -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- keys $types | sortAlpha | join "," -}}
{{- end -}}

{{/*
teflon.webhook.rbacRules: the webhook's RBAC rules. Reads are always needed (the pod, its owners to
find the workload and check minHealthyReplicas) and so are Events (every decision, dry run included,
is recorded on the pod). Each enabled action adds its own rule and nothing more.
Usage: {{ include "teflon.webhook.rbacRules" . | nindent 2 }}
*/}}
{{- define "teflon.webhook.rbacRules" -}}
{{- $actions := include "teflon.webhook.enforcedActions" . | splitList "," -}}
- apiGroups: [""]
  resources: [pods]
  verbs: [get, list, watch]
- apiGroups: [apps]
  resources: [replicasets, deployments, statefulsets, daemonsets]
  verbs: [get]
- apiGroups: [batch]
  resources: [jobs]
  verbs: [get]
- apiGroups: ["", events.k8s.io]
  resources: [events]
  verbs: [create]
{{- if has "delete" $actions }}
- apiGroups: [""]
  resources: [pods]
  verbs: [delete]
{{- end }}
{{- if has "evict" $actions }}
- apiGroups: [""]
  resources: [pods/eviction]
  verbs: [create]
{{- end }}
{{- if or (has "label" $actions) (has "isolate" $actions) }}
{{- /* isolate also labels the pod: its NetworkPolicy selects the pod by that label. */}}
- apiGroups: [""]
  resources: [pods]
  verbs: [patch]
{{- end }}
{{- if has "isolate" $actions }}
- apiGroups: [networking.k8s.io]
  resources: [networkpolicies]
  verbs: [create]
{{- end }}
{{- end -}}
