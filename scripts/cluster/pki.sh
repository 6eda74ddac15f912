# shellcheck shell=bash
# scripts/cluster.sh: the cluster's certificates and kubeconfigs (openssl), made once per state directory.
# Sourced by scripts/cluster.sh, which defines the settings (versions, directories, ports) used here.

# new_cert NAME SUBJECT [SANS [EXTENDED_KEY_USAGE [CA]]]: a P-256 key and a certificate signed by CA
# (default: the cluster CA).
new_cert() {
  local name="$1" subj="$2" sans="${3:-}" eku="${4:-clientAuth}" ca="${5:-ca}"
  local ext
  ext="$(mktemp)"
  {
    echo "basicConstraints=critical,CA:FALSE"
    echo "keyUsage=critical,digitalSignature,keyEncipherment"
    echo "extendedKeyUsage=$eku"
    [[ -z "$sans" ]] || echo "subjectAltName=$sans"
  } >"$ext"
  openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -subj "$subj" \
    -keyout "$PKI/$name.key" -out "$PKI/$name.csr" 2>/dev/null
  openssl x509 -req -in "$PKI/$name.csr" -CA "$PKI/$ca.crt" -CAkey "$PKI/$ca.key" \
    -set_serial "0x$(openssl rand -hex 16)" -days 365 -extfile "$ext" -out "$PKI/$name.crt" 2>/dev/null
  rm -f "$ext" "$PKI/$name.csr"
}

new_ca() {
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -subj "/CN=$2" -days 3650 \
    -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign,digitalSignature" \
    -keyout "$PKI/$1.key" -out "$PKI/$1.crt" 2>/dev/null
}

kubeconfig() { # kubeconfig FILE CERT
  cat >"$STATE/$1" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: teflon
  cluster:
    server: https://127.0.0.1:$API_PORT
    certificate-authority: $PKI/ca.crt
users:
- name: $2
  user:
    client-certificate: $PKI/$2.crt
    client-key: $PKI/$2.key
contexts:
- name: teflon
  context: {cluster: teflon, user: $2}
current-context: teflon
EOF
}

make_pki() {
  [[ -f "$PKI/done" ]] && return
  rm -rf "$PKI" && mkdir -p "$PKI"
  (
    umask 077
    new_ca ca teflon-cluster-ca
    new_ca front-proxy-ca teflon-front-proxy-ca
    new_cert apiserver "/CN=kube-apiserver" \
      "DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local,IP:127.0.0.1,IP:10.96.0.1" \
      serverAuth
    new_cert admin "/O=system:masters/CN=kubernetes-admin"
    new_cert kube-controller-manager "/CN=system:kube-controller-manager"
    new_cert kube-scheduler "/CN=system:kube-scheduler"
    new_cert kwok "/O=system:masters/CN=system:kwok-controller"
    new_cert controller-serving "/CN=localhost" "DNS:localhost,IP:127.0.0.1" serverAuth
    new_cert front-proxy-client "/CN=front-proxy-client" "" clientAuth front-proxy-ca
    openssl ecparam -name prime256v1 -genkey -noout -out "$PKI/sa.key.tmp"
    openssl pkcs8 -topk8 -nocrypt -in "$PKI/sa.key.tmp" -out "$PKI/sa.key"
    openssl ec -in "$PKI/sa.key" -pubout -out "$PKI/sa.pub" 2>/dev/null
    rm -f "$PKI/sa.key.tmp"
  )
  # Readable certificates for the tests; keys stay private to root.
  chmod 644 "$PKI"/*.crt
  kubeconfig kubeconfig admin
  kubeconfig kube-controller-manager.kubeconfig kube-controller-manager
  kubeconfig kube-scheduler.kubeconfig kube-scheduler
  kubeconfig kwok.kubeconfig kwok
  touch "$PKI/done"
}
