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
find the workload and check minHealthyReplicas; single objects by name, never lists) and so are Events (every decision, dry run included,
is recorded on the pod). Each enabled action adds its own rule and nothing more.
Usage: {{ include "teflon.webhook.rbacRules" . | nindent 2 }}
*/}}
{{- define "teflon.webhook.rbacRules" -}}
{{- $actions := include "teflon.webhook.enforcedActions" . | splitList "," -}}
- apiGroups: [""]
  resources: [pods]
  verbs: [get]
- apiGroups: [apps]
  resources: [replicasets, deployments, statefulsets, daemonsets]
  verbs: [get]
- apiGroups: [batch]
  resources: [jobs, cronjobs]
  verbs: [get]
- apiGroups: [events.k8s.io]
  resources: [events]
  verbs: [create]
{{- if or (has "delete" $actions) (has "quarantine" $actions) }}
{{- /* quarantine deletes the pods it kept once their TTL passes, or on release. */}}
- apiGroups: [""]
  resources: [pods]
  verbs: [delete]
{{- end }}
{{- if has "evict" $actions }}
- apiGroups: [""]
  resources: [pods/eviction]
  verbs: [create]
{{- end }}
{{- if or (has "label" $actions) (has "isolate" $actions) (has "quarantine" $actions) }}
{{- /* isolate also labels the pod: its NetworkPolicy selects the pod by that label; quarantine
removes the labels the ReplicaSet selects on. */}}
- apiGroups: [""]
  resources: [pods]
  verbs: [patch]
{{- end }}
{{- if or (has "isolate" $actions) (has "quarantine" $actions) }}
{{- /* get and update: an isolation policy left from an earlier pod of the same name is re-pointed. */}}
- apiGroups: [networking.k8s.io]
  resources: [networkpolicies]
  verbs: [create, get, update]
{{- end }}
{{- end -}}

{{/*
teflon.metrics.resources: sorted "group/plural" of every resource a served metric describes: the
definitions' resources, plus the teflon built-ins' when the webhook (the teflon backend) is enabled.
The metrics server lists these (names only) to resolve label selectors and check that objects exist.
Usage: {{ include "teflon.metrics.resources" . | fromYamlArray }}
*/}}
{{- define "teflon.metrics.resources" -}}
{{- $names := list -}}
{{- if .Values.webhook.enabled -}}
{{- $names = list "pods" "deployments.apps" "statefulsets.apps" "daemonsets.apps" "namespaces" -}}
{{- end -}}
{{- range .Values.metrics.definitions -}}
{{- $names = concat $names .resources -}}
{{- end -}}
{{- $out := list -}}
{{- range $names | uniq -}}
{{- $parts := splitn "." 2 . -}}
{{- $out = append $out (printf "%s/%s" (default "" $parts._1) $parts._0) -}}
{{- end -}}
{{- toYaml ($out | uniq | sortAlpha) -}}
{{- end -}}
