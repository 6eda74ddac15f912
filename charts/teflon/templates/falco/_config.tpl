{{/*
teflon.falco.config: the falco.yaml the chart generates, with falco.config deep-merged over it.
Usage: {{ include "teflon.falco.config" . }}
*/}}
{{- define "teflon.falco.config" -}}
{{- $dir := "/etc/teflon/falco" -}}
{{- /* Host paths as they are on the node: the container plugin prefixes HOST_ROOT (/host), where
the DaemonSet mounts each socket. */ -}}
{{- $engines := dict -}}
{{- range $name, $engine := .Values.falco.containerEngines -}}
{{- $_ := set $engines $name (dict "enabled" $engine.enabled "sockets" $engine.sockets) -}}
{{- end -}}
{{- $http := dict
  "enabled" true
  "url" (include "teflon.webhook.ingestURL" .)
  "user_agent" "falcosecurity/falco"
  "insecure" false
  "keep_alive" true
  "max_consecutive_timeouts" 5
-}}
{{- if .Values.webhook.tls.enabled -}}
{{- $_ := set $http "mtls" true -}}
{{- $_ := set $http "client_cert" "/etc/teflon/falco-client/tls.crt" -}}
{{- $_ := set $http "client_key" "/etc/teflon/falco-client/tls.key" -}}
{{- $_ := set $http "ca_cert" "/etc/teflon/falco-client/ca.crt" -}}
{{- end -}}
{{- $config := dict
  "engine" (dict "kind" "modern_ebpf" "modern_ebpf" (dict "buf_size_preset" .Values.falco.modernEbpf.bufSizePreset "cpus_for_each_buffer" .Values.falco.modernEbpf.cpusForEachBuffer "drop_failed_exit" .Values.falco.modernEbpf.dropFailedExit))
  "rules_files" (list "/etc/falco/falco_rules.yaml" "/etc/teflon/falco-rules")
  "watch_config_files" true
  "load_plugins" (list "container")
  "plugins" (list (dict "name" "container" "library_path" "libcontainer.so" "init_config" (dict "label_max_len" 100 "with_size" false "engines" $engines)))
  "priority" .Values.falco.minimumPriority
  "json_output" true
  "json_include_output_property" true
  "json_include_tags_property" true
  "json_include_output_fields_property" true
  "append_output" (list (dict "suggested_output" true) (dict "match" (dict "source" "syscall") "extra_fields" .Values.falco.extraFields))
  "http_output" $http
  "stdout_output" (dict "enabled" true)
  "syslog_output" (dict "enabled" false)
  "file_output" (dict "enabled" false)
  "program_output" (dict "enabled" false)
  "log_stderr" true
  "log_syslog" false
  "log_level" "info"
  "webserver" (dict "enabled" true "listen_port" (include "teflon.falco.webserverPort" . | int) "k8s_healthz_endpoint" "/healthz" "prometheus_metrics_enabled" false "ssl_enabled" false)
-}}
{{- toYaml (mergeOverwrite $config (deepCopy .Values.falco.config)) -}}
{{- end -}}

{{/*
teflon.falco.sockets: the deduplicated host socket paths of the enabled container engines.
Usage: {{ range (include "teflon.falco.sockets" . | fromYamlArray) }}...{{ end }}
*/}}
{{- define "teflon.falco.sockets" -}}
{{- $seen := list -}}
{{- range $name := keys .Values.falco.containerEngines | sortAlpha -}}
{{- $engine := index $.Values.falco.containerEngines $name -}}
{{- if $engine.enabled -}}
{{- range $engine.sockets -}}
{{- if not (has . $seen) -}}
{{- $seen = append $seen . -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- toYaml $seen -}}
{{- end -}}
