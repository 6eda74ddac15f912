{{/*
Certificates. Three modes (tls.mode): helm (generated here, reused across upgrades through lookup of
the Secrets this chart wrote before), certManager (Issuer/Certificate objects; cainjector fills the
APIService caBundle) and secret (the user's Secrets).

Generated material is memoised on the root context: templates render separately, and the CA in the
APIService caBundle must be the very CA that signed the certificate in the Secret.
*/}}

{{/*
teflon.metrics.tlsSecretName: Secret with the metrics server's serving certificate.
Usage: {{ include "teflon.metrics.tlsSecretName" . }}
*/}}
{{- define "teflon.metrics.tlsSecretName" -}}
{{- if eq .Values.tls.mode "secret" -}}
{{- .Values.metrics.tls.existingSecret -}}
{{- else -}}
{{- printf "%s-tls" (include "teflon.metrics.fullname" .) -}}
{{- end -}}
{{- end -}}

{{/*
teflon.webhook.tlsSecretName: Secret with the webhook's serving certificate and the CA of Falco's
client certificate.
Usage: {{ include "teflon.webhook.tlsSecretName" . }}
*/}}
{{- define "teflon.webhook.tlsSecretName" -}}
{{- if eq .Values.tls.mode "secret" -}}
{{- .Values.webhook.tls.existingSecret -}}
{{- else -}}
{{- printf "%s-tls" (include "teflon.webhook.fullname" .) -}}
{{- end -}}
{{- end -}}

{{/*
teflon.falco.clientSecretName: Secret with Falco's client certificate for the webhook (also rendered
when falco.enabled is false, so an existing Falco can mount it). The official chart mounts the Secret
named in falco.certs.existingClientSecret, a plain value it does not template: when that is set, the
generated Secret takes that name (preflight makes them agree whenever Falco is deployed here).
Usage: {{ include "teflon.falco.clientSecretName" . }}
*/}}
{{- define "teflon.falco.clientSecretName" -}}
{{- if eq .Values.tls.mode "secret" -}}
{{- .Values.webhook.tls.clientExistingSecret -}}
{{- else if and .Values.falco.certs .Values.falco.certs.existingClientSecret -}}
{{- .Values.falco.certs.existingClientSecret -}}
{{- else -}}
{{- printf "%s-falco-client-tls" (include "teflon.fullname" .) -}}
{{- end -}}
{{- end -}}

{{/*
teflon.tls.dnsNames: the names a Service's certificate must cover; the aggregator verifies
<service>.<namespace>.svc.
Usage: {{ include "teflon.tls.dnsNames" (dict "service" $name "namespace" .Release.Namespace) | fromYamlArray }}
*/}}
{{- define "teflon.tls.dnsNames" -}}
- {{ .service }}
- {{ printf "%s.%s" .service .namespace }}
- {{ printf "%s.%s.svc" .service .namespace }}
- {{ printf "%s.%s.svc.cluster.local" .service .namespace }}
{{- end -}}

{{/*
teflon.tls.hasKeys: "true" when a looked-up Secret holds every named key.
Usage: {{ include "teflon.tls.hasKeys" (dict "secret" $s "keys" (list "tls.crt")) }}
*/}}
{{- define "teflon.tls.hasKeys" -}}
{{- $ok := true -}}
{{- $data := dict -}}
{{- if and .secret .secret.data -}}
{{- $data = .secret.data -}}
{{- end -}}
{{- range .keys -}}
{{- if not (index $data .) -}}
{{- $ok = false -}}
{{- end -}}
{{- end -}}
{{- ternary "true" "" $ok -}}
{{- end -}}

{{/*
teflon.metrics.generatedTLS: base64 ca, cert and key for tls.mode=helm, generated once per render and
reused from the existing Secret when there is one.
Usage: {{ $tls := include "teflon.metrics.generatedTLS" . | fromYaml }}
*/}}
{{- define "teflon.metrics.generatedTLS" -}}
{{- if not (hasKey $ "teflonMetricsTLS") -}}
{{- $name := include "teflon.metrics.tlsSecretName" . -}}
{{- $existing := lookup "v1" "Secret" .Release.Namespace $name -}}
{{- $m := dict -}}
{{- if include "teflon.tls.hasKeys" (dict "secret" $existing "keys" (list "ca.crt" "tls.crt" "tls.key")) -}}
{{- $m = dict "ca" (index $existing.data "ca.crt") "cert" (index $existing.data "tls.crt") "key" (index $existing.data "tls.key") -}}
{{- else -}}
{{- $svc := include "teflon.metrics.fullname" . -}}
{{- $days := int .Values.tls.helm.validityDays -}}
{{- $ca := genCA (printf "%s-ca" $svc) $days -}}
{{- $dns := include "teflon.tls.dnsNames" (dict "service" $svc "namespace" .Release.Namespace) | fromYamlArray -}}
{{- $cert := genSignedCert (printf "%s.%s.svc" $svc .Release.Namespace) nil $dns $days $ca -}}
{{- $m = dict "ca" ($ca.Cert | b64enc) "cert" ($cert.Cert | b64enc) "key" ($cert.Key | b64enc) -}}
{{- end -}}
{{- $_ := set $ "teflonMetricsTLS" $m -}}
{{- end -}}
{{- toYaml (get $ "teflonMetricsTLS") -}}
{{- end -}}

{{/*
teflon.webhook.generatedTLS: base64 CAs, webhook serving pair and Falco client pair for tls.mode=helm,
generated once per render and reused when both Secrets exist. Two CAs, one per direction: helm can only
issue certificates for both server and client use, so with one CA the webhook's own serving certificate
would pass as a Falco client certificate. The client CA (in the webhook's Secret) signs only Falco's
client certificate; the server CA (in Falco's Secret) only the webhook's serving certificate.
Usage: {{ $tls := include "teflon.webhook.generatedTLS" . | fromYaml }}
*/}}
{{- define "teflon.webhook.generatedTLS" -}}
{{- if not (hasKey $ "teflonWebhookTLS") -}}
{{- $server := lookup "v1" "Secret" .Release.Namespace (include "teflon.webhook.tlsSecretName" .) -}}
{{- $client := lookup "v1" "Secret" .Release.Namespace (include "teflon.falco.clientSecretName" .) -}}
{{- $keys := list "ca.crt" "tls.crt" "tls.key" -}}
{{- $m := dict -}}
{{- if and (include "teflon.tls.hasKeys" (dict "secret" $server "keys" $keys)) (include "teflon.tls.hasKeys" (dict "secret" $client "keys" $keys)) -}}
{{- $m = dict "clientCA" (index $server.data "ca.crt") "serverCA" (index $client.data "ca.crt") "serverCert" (index $server.data "tls.crt") "serverKey" (index $server.data "tls.key") "clientCert" (index $client.data "tls.crt") "clientKey" (index $client.data "tls.key") -}}
{{- else -}}
{{- $svc := include "teflon.webhook.fullname" . -}}
{{- $days := int .Values.tls.helm.validityDays -}}
{{- $serverCA := genCA (printf "%s-server-ca" $svc) $days -}}
{{- $clientCA := genCA (printf "%s-client-ca" $svc) $days -}}
{{- $dns := include "teflon.tls.dnsNames" (dict "service" $svc "namespace" .Release.Namespace) | fromYamlArray -}}
{{- $serverCert := genSignedCert (printf "%s.%s.svc" $svc .Release.Namespace) nil $dns $days $serverCA -}}
{{- $clientCert := genSignedCert (include "teflon.falco.fullname" .) nil nil $days $clientCA -}}
{{- $m = dict "clientCA" ($clientCA.Cert | b64enc) "serverCA" ($serverCA.Cert | b64enc) "serverCert" ($serverCert.Cert | b64enc) "serverKey" ($serverCert.Key | b64enc) "clientCert" ($clientCert.Cert | b64enc) "clientKey" ($clientCert.Key | b64enc) -}}
{{- end -}}
{{- $_ := set $ "teflonWebhookTLS" $m -}}
{{- end -}}
{{- toYaml (get $ "teflonWebhookTLS") -}}
{{- end -}}

{{/*
teflon.metrics.caBundle: base64 CA for the APIService caBundle, or empty with tls.mode=certManager
(cainjector fills it) and with insecureSkipTLSVerify.
Usage: {{ include "teflon.metrics.caBundle" . }}
*/}}
{{- define "teflon.metrics.caBundle" -}}
{{- if .Values.metrics.apiService.insecureSkipTLSVerify -}}
{{- else if eq .Values.tls.mode "helm" -}}
{{- (include "teflon.metrics.generatedTLS" . | fromYaml).ca -}}
{{- else if eq .Values.tls.mode "secret" -}}
{{- if .Values.metrics.tls.caBundle -}}
{{- .Values.metrics.tls.caBundle | b64enc -}}
{{- else -}}
{{- $existing := lookup "v1" "Secret" .Release.Namespace .Values.metrics.tls.existingSecret -}}
{{- if include "teflon.tls.hasKeys" (dict "secret" $existing "keys" (list "ca.crt")) -}}
{{- index $existing.data "ca.crt" -}}
{{- else -}}
{{- fail (printf "ERROR: tls.mode=secret needs the CA of the metrics serving certificate for the APIService caBundle: set metrics.tls.caBundle to its PEM, or put it in the Secret %q under ca.crt (read at install time; `helm template` cannot read Secrets)." .Values.metrics.tls.existingSecret) -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/*
teflon.certManager.issuerRef: the issuer that signs the chart's certificates with tls.mode=certManager.
Usage: {{ include "teflon.certManager.issuerRef" . | nindent 4 }}
*/}}
{{- define "teflon.certManager.issuerRef" -}}
{{- if .Values.tls.certManager.issuerRef -}}
{{- toYaml .Values.tls.certManager.issuerRef -}}
{{- else -}}
name: {{ include "teflon.fullname" . }}-ca
kind: Issuer
group: cert-manager.io
{{- end -}}
{{- end -}}
