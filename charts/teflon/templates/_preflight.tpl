{{/*
teflon.preflight: fail the render early, with an ERROR: line that names the values to change, when
values contradict each other. Called from preflight.yaml, which renders nothing itself.
Usage: {{ include "teflon.preflight" . }}
*/}}
{{- define "teflon.preflight" -}}
{{- $v := .Values -}}
{{- if and $v.falco.enabled (not $v.webhook.enabled) -}}
{{- fail "ERROR: falco.enabled is true but webhook.enabled is false: Falco's http_output would post alerts to a Service that does not exist. Enable the webhook or set falco.enabled=false." -}}
{{- end -}}
{{- if $v.falco.enabled -}}
{{- include "teflon.preflight.falco" . -}}
{{- end -}}
{{- if and (not $v.metrics.enabled) $v.autoscaling.targets -}}
{{- fail "ERROR: autoscaling.targets is set but metrics.enabled is false: the HPAs would ask for custom metrics nobody serves. Enable the metrics server or remove the targets." -}}
{{- end -}}
{{- if and $v.webhook.enabled $v.webhook.podDisruptionBudget.enabled (ge (int $v.webhook.podDisruptionBudget.minAvailable) (int $v.webhook.replicas)) -}}
{{- fail (printf "ERROR: webhook.podDisruptionBudget.minAvailable (%v) must be lower than webhook.replicas (%v), or no webhook pod can ever be evicted and node drains block. Raise webhook.replicas or disable the budget." $v.webhook.podDisruptionBudget.minAvailable $v.webhook.replicas) -}}
{{- end -}}
{{- if and $v.metrics.enabled $v.metrics.podDisruptionBudget.enabled (ge (int $v.metrics.podDisruptionBudget.minAvailable) (int $v.metrics.replicas)) -}}
{{- fail (printf "ERROR: metrics.podDisruptionBudget.minAvailable (%v) must be lower than metrics.replicas (%v), or no metrics pod can ever be evicted and node drains block. Raise metrics.replicas or disable the budget." $v.metrics.podDisruptionBudget.minAvailable $v.metrics.replicas) -}}
{{- end -}}
{{- if and $v.webhook.enabled $v.webhook.networkPolicy.enabled (not $v.falco.enabled) (not $v.webhook.networkPolicy.ingestFrom) -}}
{{- fail "ERROR: falco.enabled is false and webhook.networkPolicy.ingestFrom is empty: the NetworkPolicy would admit no Falco at all (an empty peer list cannot be rendered safely). List your Falco pods in webhook.networkPolicy.ingestFrom or disable webhook.networkPolicy." -}}
{{- end -}}
{{- if eq $v.tls.mode "secret" -}}
{{- if and $v.metrics.enabled (not $v.metrics.tls.existingSecret) -}}
{{- fail "ERROR: tls.mode is secret but metrics.tls.existingSecret is empty: name the Secret with the metrics server's serving certificate (tls.crt, tls.key)." -}}
{{- end -}}
{{- if and $v.webhook.tls.enabled (not (and $v.webhook.tls.existingSecret $v.webhook.tls.clientExistingSecret)) -}}
{{- fail "ERROR: tls.mode is secret and webhook.tls.enabled is true: set both webhook.tls.existingSecret (webhook serving certificate + client CA) and webhook.tls.clientExistingSecret (Falco's client certificate)." -}}
{{- end -}}
{{- else -}}
{{- if or $v.metrics.tls.existingSecret $v.metrics.tls.caBundle $v.webhook.tls.existingSecret $v.webhook.tls.clientExistingSecret -}}
{{- fail (printf "ERROR: metrics.tls / webhook.tls name existing Secrets or a caBundle, but tls.mode is %s, which provides its own certificates. Set tls.mode=secret to use yours, or remove them." $v.tls.mode) -}}
{{- end -}}
{{- end -}}
{{- if and (ne $v.tls.mode "certManager") $v.tls.certManager.issuerRef -}}
{{- fail (printf "ERROR: tls.certManager.issuerRef is set but tls.mode is %s; set tls.mode=certManager to use the issuer." $v.tls.mode) -}}
{{- end -}}
{{- if and $v.observability.prometheusRule.enabled $v.webhook.enabled (not $v.webhook.serviceMonitor.enabled) -}}
{{- fail "ERROR: observability.prometheusRule.enabled needs webhook.serviceMonitor.enabled: the webhook alerts read the series that ServiceMonitor scrapes (without it, TeflonWebhookDown would fire forever)." -}}
{{- end -}}
{{- range $name := include "teflon.metrics.tokenBackends" . | splitList "," | compact -}}
{{- $cfg := index $v.metrics.backends $name -}}
{{- if and $cfg.token $cfg.existingSecret -}}
{{- fail (printf "ERROR: set either metrics.backends.%s.token or metrics.backends.%s.existingSecret, not both." $name $name) -}}
{{- end -}}
{{- if not (or $cfg.token $cfg.existingSecret) -}}
{{- fail (printf "ERROR: metrics.backends.%s.enabled is true but there is no token: set metrics.backends.%s.existingSecret (recommended) or metrics.backends.%s.token." $name $name $name) -}}
{{- end -}}
{{- end -}}
{{- $backends := dict "teflon" $v.webhook.enabled -}}
{{- range $name, $cfg := $v.metrics.backends -}}
{{- if ne $name "teflon" -}}
{{- $_ := set $backends $name $cfg.enabled -}}
{{- end -}}
{{- end -}}
{{- range $v.metrics.definitions -}}
{{- if not (index $backends .backend) -}}
{{- fail (printf "ERROR: metric %q uses backend %q, which is not enabled (%s). Enable it or remove the metric from metrics.definitions." .name .backend (ternary "webhook.enabled" (printf "metrics.backends.%s.enabled" .backend) (eq .backend "teflon"))) -}}
{{- end -}}
{{- if and (ne .backend "teflon") (not .query) -}}
{{- fail (printf "ERROR: metric %q uses backend %q and needs a query." .name .backend) -}}
{{- end -}}
{{- end -}}
{{- $hpaNames := dict -}}
{{- range $v.autoscaling.targets -}}
{{- $key := printf "%s/%s" (.namespace | default $.Release.Namespace) .name -}}
{{- if hasKey $hpaNames $key -}}
{{- fail (printf "ERROR: autoscaling.targets lists the HPA %s twice." $key) -}}
{{- end -}}
{{- $_ := set $hpaNames $key true -}}
{{- if and .minReplicas (gt (int .minReplicas) (int .maxReplicas)) -}}
{{- fail (printf "ERROR: autoscaling.targets %s: minReplicas (%v) is greater than maxReplicas (%v)." $key .minReplicas .maxReplicas) -}}
{{- end -}}
{{- end -}}
{{- if $v.metrics.enabled -}}
{{- include "teflon.preflight.apiServiceOwners" . -}}
{{- end -}}
{{- end -}}

{{/*
teflon.preflight.apiServiceOwners: an APIService is cluster-wide and one per group version. If
another release (prometheus-adapter, KEDA, a second teflon) already registered one we would render,
installing would take it over silently and break that release. Only detectable where lookup works
(helm install/upgrade against a cluster); `helm template` sees no cluster and skips the check.
Usage: {{ include "teflon.preflight.apiServiceOwners" . }}
*/}}
{{- define "teflon.preflight.apiServiceOwners" -}}
{{- range $api := include "teflon.metrics.apiServices" . | fromYamlArray -}}
{{- $name := printf "%s.%s" $api.version $api.group -}}
{{- $existing := lookup "apiregistration.k8s.io/v1" "APIService" "" $name -}}
{{- if $existing -}}
{{- $annotations := $existing.metadata.annotations | default dict -}}
{{- $release := index $annotations "meta.helm.sh/release-name" | default "" -}}
{{- $namespace := index $annotations "meta.helm.sh/release-namespace" | default "" -}}
{{- if not (and (eq $release $.Release.Name) (eq $namespace $.Release.Namespace)) -}}
{{- $service := "" -}}
{{- if $existing.spec.service -}}
{{- $service = printf "%s/%s" $existing.spec.service.namespace $existing.spec.service.name -}}
{{- end -}}
{{- $owner := ternary (printf "Helm release %s/%s" $namespace $release) "something outside Helm" (ne $release "") -}}
{{- fail (printf "ERROR: the APIService %s already exists, served by %s and owned by %s. Only one server can answer %s/%s in a cluster: uninstall the other one (for example prometheus-adapter's custom metrics API) or set metrics.enabled=false." $name (default "kube-apiserver itself" $service) $owner $api.group $api.version) -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/*
teflon.preflight.falco: with falco.enabled, refuse values under which the official chart's Falco would
not deliver its alerts to this release's webhook: values of teflon 0.1 that no longer do anything, the
wiring keys of values.yaml changed or dropped, mTLS configured on one side only.
Usage: {{ include "teflon.preflight.falco" . }}
*/}}
{{- define "teflon.preflight.falco" -}}
{{- $f := .Values.falco -}}
{{- $moved := dict
  "leastPrivileged" "falco.driver.modernEbpf.leastPrivileged (with falco.driver.kind=modern_ebpf)"
  "modernEbpf" "falco.driver.modernEbpf (bufSizePreset, cpusForEachBuffer, dropFailedExit)"
  "containerEngines" "falco.collectors.containerEngine.engines"
  "extraFields" "falco.falco.append_output"
  "minimumPriority" "falco.falco.priority"
  "config" "falco.falco (falco.yaml keys)"
  "extraArgs" "falco.extra.args"
  "extraEnv" "falco.extra.env (keeping the TEFLON_FALCO_* entries)"
  "priorityClassName" "falco.podPriorityClassName"
  "updateStrategy" "falco.controller.daemonset.updateStrategy"
-}}
{{- range $old := keys $moved | sortAlpha -}}
{{- if hasKey $f $old -}}
{{- fail (printf "ERROR: falco.%s is a teflon 0.1 value; Falco now comes from the official falco chart, where it is %s. See the chart's CHANGELOG (0.2.0)." $old (index $moved $old)) -}}
{{- end -}}
{{- end -}}
{{- if and $f.image (hasKey $f.image "digest") -}}
{{- fail "ERROR: falco.image.digest is a teflon 0.1 value; the official falco chart takes falco.image.registry, repository and tag (a tag may carry a digest: \"0.44.1@sha256:...\")." -}}
{{- end -}}
{{- if and $f.namespaceOverride (ne $f.namespaceOverride .Release.Namespace) -}}
{{- fail (printf "ERROR: falco.namespaceOverride is %s: teflon deploys Falco in the release namespace (%s), next to the ConfigMap and Secret it reads. Install the release in the namespace you want Falco in." $f.namespaceOverride .Release.Namespace) -}}
{{- end -}}
{{- $http := $f.falco.http_output | default dict -}}
{{- $outputs := dict
  "http_output" (dict "enabled" "${TEFLON_FALCO_HTTP_ENABLED}" "url" "${TEFLON_FALCO_HTTP_URL}" "mtls" "${TEFLON_FALCO_HTTP_MTLS}")
  "program_output" (dict "enabled" "${TEFLON_FALCO_PROGRAM_ENABLED}" "keep_alive" "${TEFLON_FALCO_PROGRAM_KEEP_ALIVE}" "program" "${TEFLON_FALCO_PROGRAM}")
-}}
{{- range $output := keys $outputs | sortAlpha -}}
{{- $expected := index $outputs $output -}}
{{- $set := index $f.falco $output | default dict -}}
{{- range $key := keys $expected | sortAlpha -}}
{{- $want := index $expected $key -}}
{{- $got := index $set $key -}}
{{- if ne (toString $got) $want -}}
{{- fail (printf "ERROR: falco.falco.%s.%s is %v: Falco would not post to this release's webhook. teflon sets it to %s, which Falco expands from the wiring ConfigMap (falcoOutput.transport picks the output); remove your override (falco.enabled=false keeps a Falco of your own)." $output $key $got $want) -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- if not $f.falco.json_output -}}
{{- fail "ERROR: falco.falco.json_output is false: the webhook reads alerts as JSON. Remove the override." -}}
{{- end -}}
{{- $env := dict -}}
{{- range $f.extra.env -}}
{{- $_ := set $env .name . -}}
{{- end -}}
{{- $wiring := include "teflon.falco.wiringName" . -}}
{{- range $name := keys (include "teflon.falco.wiringEnv" . | fromYaml) | sortAlpha -}}
{{- $entry := index $env $name | default dict -}}
{{- $ref := dig "valueFrom" "configMapKeyRef" dict $entry -}}
{{- if not (and (eq (tpl (toString (index $ref "name" | default "")) $) $wiring) (eq (toString (index $ref "key" | default "")) $name)) -}}
{{- fail (printf "ERROR: falco.extra.env has no %s from the ConfigMap %s (key %s): Falco's outputs would expand it to nothing. Keep the TEFLON_FALCO_* entries of the chart's values.yaml when you set falco.extra.env." $name $wiring $name) -}}
{{- end -}}
{{- end -}}
{{- $certs := $f.certs | default dict -}}
{{- $clientSecret := $certs.existingClientSecret | default "" -}}
{{- if $.Values.webhook.tls.enabled -}}
{{- $want := include "teflon.falco.clientSecretName" . -}}
{{- if ne $clientSecret $want -}}
{{- if eq $.Values.tls.mode "secret" -}}
{{- fail (printf "ERROR: webhook.tls.enabled is true, so Falco needs its client certificate: set falco.certs.existingClientSecret=%s (webhook.tls.clientExistingSecret), which the official falco chart mounts." $want) -}}
{{- else -}}
{{- fail (printf "ERROR: webhook.tls.enabled is true, so Falco needs its client certificate: set falco.certs.existingClientSecret to the name of the Secret this release creates for it (for example %s); the official falco chart mounts that Secret." $want) -}}
{{- end -}}
{{- end -}}
{{- $dir := include "teflon.falco.clientCertDir" . -}}
{{- $files := dict "client_cert" "tls.crt" "client_key" "tls.key" "ca_cert" "ca.crt" -}}
{{- range $key := keys $files | sortAlpha -}}
{{- $want := printf "%s/%s" $dir (index $files $key) -}}
{{- if ne (toString (index $http $key)) $want -}}
{{- fail (printf "ERROR: falco.falco.http_output.%s is %v, but the client certificate Secret is mounted at %s: set it to %s (the chart's default)." $key (index $http $key) $dir $want) -}}
{{- end -}}
{{- end -}}
{{- else if $clientSecret -}}
{{- fail (printf "ERROR: falco.certs.existingClientSecret is %s but webhook.tls.enabled is false: mutual TLS is half configured (Falco would mount a certificate the webhook never asks for). Set webhook.tls.enabled=true or clear falco.certs.existingClientSecret." $clientSecret) -}}
{{- end -}}
{{- end -}}
