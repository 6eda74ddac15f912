#!/usr/bin/env bash
# A real, local Kubernetes control plane for tests and the demo, without containers:
# etcd + kube-apiserver (with the aggregation layer) + kube-controller-manager + kube-scheduler, and kwok
# running fake nodes so Deployments, ReplicaSets and HPAs behave as they do on a real cluster.
#
#   scripts/cluster.sh up      build (once, cached by version) and start; idempotent, seconds when warm
#   scripts/cluster.sh down    stop exactly the processes `up` started (by PID) and remove the state
#   scripts/cluster.sh status  show each component; exit 1 unless all are running and healthy
#   scripts/cluster.sh env     print `export KUBECONFIG=...` for eval
#   scripts/cluster.sh build   only build the binaries
#
# Environment: TEFLON_K8S_VERSION (default 1.37.2; any version the Go module proxy serves, e.g. 1.36.3
# for a version matrix), TEFLON_CLUSTER_STATE (default <repo>/.cluster), TEFLON_CLUSTER_PORT_BASE
# (six consecutive ports; default: chosen per state directory).
#
# Everything is built from the Go module proxy with the machine's Go and cached under
# ${XDG_CACHE_HOME:-~/.cache}/teflon/cluster/<component>-<version>/ (a cold Kubernetes build takes
# minutes; afterwards `up` takes seconds). The running cluster's state (certificates, kubeconfigs,
# logs, PIDs, etcd data) lives in the state directory. Everything listens on 127.0.0.1 only. Pod,
# Service and node addresses the cluster invents are routed to "unreachable" on this host, so nothing
# ever sends traffic to them beyond this machine; tests give real servers real addresses with network
# namespaces (tests/harness/netns.py).
#
# kwok runs as a plain process against the API server (not through kwokctl): the same binaries and
# flags in development and CI, with nothing downloaded at start. It manages the Nodes this script
# creates (annotation kwok.x-k8s.io/node=fake) with kwok's default node and pod stages plus
# scripts/cluster/kwok-stages.yaml, which completes `helm test` pods.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
HERE="$ROOT/scripts/cluster"

K8S_VERSION="${TEFLON_K8S_VERSION:-1.37.2}"
KWOK_VERSION="v0.8.0"
ETCD_VERSION="3.7.0"

CACHE="${XDG_CACHE_HOME:-$HOME/.cache}/teflon/cluster"
STATE="${TEFLON_CLUSTER_STATE:-$ROOT/.cluster}"
PKI="$STATE/pki"
# `down` removes $STATE, so it must be a directory of its own.
case "$STATE" in "" | / | "$HOME" | "$ROOT") echo "cluster: refusing state directory '$STATE'" >&2 && exit 2 ;; esac

# Ports: six consecutive ones from TEFLON_CLUSTER_PORT_BASE, or else chosen by `up` from the state
# directory's path (stable for one checkout, different for another clone on the same machine) and
# moved on if any is taken. `up` records them in $STATE/ports for every later command.
set_ports() {
  API_PORT=$1 ETCD_PORT=$(($1 + 1)) ETCD_PEER_PORT=$(($1 + 2)) KCM_PORT=$(($1 + 3)) SCHED_PORT=$(($1 + 4))
  KWOK_PORT=$(($1 + 5))
}
if [[ -f "$STATE/ports" ]]; then
  set_ports "$(cat "$STATE/ports")"
else
  set_ports "${TEFLON_CLUSTER_PORT_BASE:-0}"
fi

SERVICE_CIDR="10.96.0.0/16"
POD_CIDR="10.244.0.0/16"
NODE_IP="10.244.255.254" # kwok reports it as every fake node's InternalIP
NODES=(teflon-worker-1 teflon-worker-2 teflon-worker-3)

K8S_DIR="$CACHE/kubernetes-v$K8S_VERSION"
KWOK_DIR="$CACHE/kwok-$KWOK_VERSION"
ETCD_DIR="$CACHE/etcd-v$ETCD_VERSION"

COMPONENTS=(etcd kube-apiserver kube-controller-manager kube-scheduler kwok)

log() { printf 'cluster: %s\n' "$*" >&2; }
die() {
  printf 'cluster: error: %s\n' "$*" >&2
  exit 1
}

# ---------------------------------------------------------------------------------------------- build

# Staging modules are required at v0.0.0 with `replace => ./staging/...` in k8s.io/kubernetes' go.mod, so
# a wrapper module replaces each with its published tag v0.MINOR.PATCH. A committed go.mod/go.sum pins
# the default version; any other version gets a wrapper generated from that version's own go.mod.
k8s_wrapper() {
  local src="$K8S_DIR/src" pinned="$HERE/kubernetes-v$K8S_VERSION"
  mkdir -p "$src"
  if [[ -d "$pinned" ]]; then
    cp "$pinned/go.mod" "$pinned/go.sum" "$pinned/tools.go" "$src/"
    return
  fi
  log "generating a wrapper module for k8s.io/kubernetes v$K8S_VERSION"
  local upstream staging minor patch
  upstream="$(cd "$src" && go mod download -json "k8s.io/kubernetes@v$K8S_VERSION" | jq -r .GoMod)"
  staging="$(awk '$2 == "=>" && $3 ~ /^\.\/staging\// {print $1}' "$upstream")"
  [[ -n "$staging" ]] || die "no staging replaces found in $upstream"
  minor="$(cut -d. -f2 <<<"$K8S_VERSION")"
  patch="$(cut -d. -f3 <<<"$K8S_VERSION")"
  {
    echo "module local/teflon-kubernetes"
    echo
    awk '$1 == "go" {print "go " $2}' "$upstream" # the Go version Kubernetes itself asks for
    echo
    echo "require k8s.io/kubernetes v$K8S_VERSION"
    echo
    echo "replace ("
    for m in $staging; do echo "	$m => $m v0.$minor.$patch"; done
    echo ")"
  } >"$src/go.mod"
  cp "$HERE/kubernetes-v1.37.2/tools.go" "$src/tools.go"
  (cd "$src" && go mod tidy) || die "go mod tidy failed for k8s.io/kubernetes v$K8S_VERSION"
}

build_kubernetes() {
  if [[ -x "$K8S_DIR/bin/kube-apiserver" && -x "$K8S_DIR/bin/kube-controller-manager" &&
    -x "$K8S_DIR/bin/kube-scheduler" ]]; then
    return
  fi
  command -v go >/dev/null || die "go is needed to build Kubernetes (make tools)"
  k8s_wrapper
  local minor ld pkg
  minor="$(cut -d. -f2 <<<"$K8S_VERSION")"
  # The version ldflags hack/lib/version.sh sets; without them the server says v0.0.0-master and
  # Helm's kubeVersion checks fail. A fixed build date keeps the link reproducible.
  ld="-s -w"
  for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    ld+=" -X $pkg.gitVersion=v$K8S_VERSION -X $pkg.gitMajor=1 -X $pkg.gitMinor=$minor"
    ld+=" -X $pkg.gitTreeState=clean -X $pkg.buildDate=2026-01-01T00:00:00Z"
  done
  log "building kube-apiserver, kube-controller-manager, kube-scheduler v$K8S_VERSION (cold: tens of minutes)"
  local start=$SECONDS
  mkdir -p "$K8S_DIR/bin.tmp"
  (cd "$K8S_DIR/src" && go build -trimpath -ldflags "$ld" -o "$K8S_DIR/bin.tmp/" \
    k8s.io/kubernetes/cmd/kube-apiserver \
    k8s.io/kubernetes/cmd/kube-controller-manager \
    k8s.io/kubernetes/cmd/kube-scheduler) || die "building Kubernetes v$K8S_VERSION failed"
  rm -rf "${K8S_DIR:?}/bin" && mv "$K8S_DIR/bin.tmp" "$K8S_DIR/bin"
  log "built Kubernetes v$K8S_VERSION in $((SECONDS - start))s"
}

build_kwok() {
  if [[ -x "$KWOK_DIR/bin/kwok" && -f "$KWOK_DIR/stages.yaml" ]]; then
    return
  fi
  command -v go >/dev/null || die "go is needed to build kwok (make tools)"
  log "building kwok $KWOK_VERSION"
  mkdir -p "$KWOK_DIR/bin"
  GOBIN="$KWOK_DIR/bin" CGO_ENABLED=0 go install -trimpath -ldflags "-s -w" \
    "sigs.k8s.io/kwok/cmd/kwok@$KWOK_VERSION" || die "building kwok $KWOK_VERSION failed"
  # Running kwok directly (not through kwokctl) means supplying its default stages ourselves: the
  # same files kwokctl embeds, from the module just verified against go.sum, plus our own.
  local mod stage
  mod="$(go env GOMODCACHE)/sigs.k8s.io/kwok@$KWOK_VERSION/kustomize/stage"
  {
    for stage in node/fast/node-initialize node/heartbeat-with-lease/node-heartbeat-with-lease \
      pod/fast/pod-ready pod/fast/pod-complete pod/fast/pod-delete; do
      [[ -f "$mod/$stage.yaml" ]] || die "kwok stage $stage.yaml missing from $mod"
      echo "---"
      cat "$mod/$stage.yaml"
    done
  } >"$KWOK_DIR/stages.yaml"
}

# etcd's server module has replace directives, so `go install` refuses it: a wrapper module pinned by
# the committed go.mod/go.sum builds it. 3.7 is the etcd that kubeadm pairs with Kubernetes 1.37.
build_etcd() {
  if [[ -x "$ETCD_DIR/bin/etcd" ]]; then
    return
  fi
  command -v go >/dev/null || die "go is needed to build etcd (make tools)"
  log "building etcd v$ETCD_VERSION"
  mkdir -p "$ETCD_DIR/src" "$ETCD_DIR/bin.tmp"
  cp "$HERE/etcd-v$ETCD_VERSION/go.mod" "$HERE/etcd-v$ETCD_VERSION/go.sum" "$HERE/etcd-v$ETCD_VERSION/tools.go" "$ETCD_DIR/src/"
  (cd "$ETCD_DIR/src" && go build -trimpath -ldflags "-s -w" -o "$ETCD_DIR/bin.tmp/etcd" go.etcd.io/etcd/server/v3) ||
    die "building etcd v$ETCD_VERSION failed"
  "$ETCD_DIR/bin.tmp/etcd" --version | grep -q "etcd Version: $ETCD_VERSION" || die "the built etcd is not $ETCD_VERSION"
  rm -rf "${ETCD_DIR:?}/bin" && mv "$ETCD_DIR/bin.tmp" "$ETCD_DIR/bin"
}

# with_lock FILE COMMAND...: concurrent builds of the same component (several clones, or test
# sessions started together) wait for the first instead of racing it.
with_lock() {
  local file="$1"
  shift
  mkdir -p "$(dirname "$file")"
  (
    flock 8
    "$@"
  ) 8>"$file"
}

build() {
  with_lock "$ETCD_DIR.lock" build_etcd
  with_lock "$KWOK_DIR.lock" build_kwok
  with_lock "$K8S_DIR.lock" build_kubernetes
}

# ------------------------------------------------------------------------------------- certificates

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

# ------------------------------------------------------------------------------------------ processes

# A PID file holds "PID STARTTIME": the start time (field 22 of /proc/PID/stat) guards against a reused
# PID, so `down` only ever signals the very process `up` started.
proc_start_time() { awk '{print $22}' "/proc/$1/stat" 2>/dev/null; }

running_pid() { # running_pid NAME -> prints the PID if that exact process is alive
  local f="$STATE/pids/$1.pid" pid start
  [[ -f "$f" ]] || return 1
  read -r pid start <"$f" || return 1
  [[ -n "$pid" && "$(proc_start_time "$pid")" == "$start" ]] || return 1
  echo "$pid"
}

start() { # start NAME BINARY ARGS...
  local name="$1"
  shift
  mkdir -p "$STATE/pids" "$STATE/logs"
  # setsid: the control plane outlives the shell that started it and ignores its terminal's Ctrl-C;
  # 9>&-: it must not inherit (and so hold forever) the lock `up` holds.
  setsid "$@" >"$STATE/logs/$name.log" 2>&1 </dev/null 9>&- &
  local pid=$!
  local start_time=""
  for _ in 1 2 3 4 5 6 7 8 9 10; do
    start_time="$(proc_start_time "$pid")" && [[ -n "$start_time" ]] && break
    sleep 0.05
  done
  [[ -n "$start_time" ]] || die "$name exited at once; see $STATE/logs/$name.log"
  echo "$pid $start_time" >"$STATE/pids/$name.pid"
}

wait_for() { # wait_for NAME SECONDS COMMAND...: poll COMMAND until it succeeds, failing if NAME dies
  local name="$1" timeout="$2"
  shift 2
  local deadline=$((SECONDS + timeout))
  until "$@" >/dev/null 2>&1; do
    if [[ $name != - ]] && ! running_pid "$name" >/dev/null; then
      tail -n 30 "$STATE/logs/$name.log" >&2 || true
      die "$name exited; see $STATE/logs/$name.log"
    fi
    if ((SECONDS >= deadline)); then
      [[ $name == - ]] || tail -n 30 "$STATE/logs/$name.log" >&2 || true
      die "timed out after ${timeout}s waiting for: $*"
    fi
    sleep 0.2
  done
}

api() { # api METHOD PATH [JSON]: call the API server as the cluster admin
  local args=(-sS --fail-with-body --cacert "$PKI/ca.crt" --cert "$PKI/admin.crt" --key "$PKI/admin.key"
    -X "$1" "https://127.0.0.1:$API_PORT$2")
  [[ $# -lt 3 ]] || args+=(-H "Content-Type: application/json" --data-binary "$3")
  curl "${args[@]}"
}

healthy() { # healthy URL [curl args]: the endpoint answers exactly "ok"
  [[ "$(curl -sS --max-time 2 --cacert "$PKI/ca.crt" "${@:2}" "$1")" == ok ]]
}

etcd_healthy() { curl -sS --max-time 2 "http://127.0.0.1:$ETCD_PORT/health" | jq -e '.health == "true"'; }
api_ready() { healthy "https://127.0.0.1:$API_PORT/readyz" --cert "$PKI/admin.crt" --key "$PKI/admin.key"; }
kcm_healthy() { healthy "https://127.0.0.1:$KCM_PORT/healthz"; }
sched_healthy() { healthy "https://127.0.0.1:$SCHED_PORT/healthz"; }
kwok_healthy() { [[ "$(curl -sS --max-time 2 "http://127.0.0.1:$KWOK_PORT/healthz")" == ok ]]; }

nodes_ready() {
  local ready
  ready="$(api GET /api/v1/nodes | jq '[.items[] | select(.status.conditions // [] | any(.type == "Ready" and .status == "True"))] | length')"
  [[ "$ready" == "${#NODES[@]}" ]]
}

default_sa_exists() { api GET /api/v1/namespaces/default/serviceaccounts/default; }

guard_routes() {
  # The cluster hands out Pod, Service and node addresses that nothing here serves. Should anything
  # (the aggregator, a proxy) dial one, it fails on this host instead of leaving it.
  local cidr
  for cidr in "$SERVICE_CIDR" "$POD_CIDR"; do
    ip route replace unreachable "$cidr" 2>/dev/null || log "warning: could not add an unreachable route for $cidr"
  done
}

unguard_routes() {
  local cidr exe
  # Another checkout's cluster may still rely on them.
  for exe in /proc/[0-9]*/exe; do
    [[ "$(readlink "$exe" 2>/dev/null)" == "$CACHE"/kubernetes-*/bin/kube-apiserver ]] && return
  done
  for cidr in "$SERVICE_CIDR" "$POD_CIDR"; do
    ip route del unreachable "$cidr" 2>/dev/null || true
  done
}

create_nodes() {
  local i=0 node
  for node in "${NODES[@]}"; do
    api GET "/api/v1/nodes/$node" >/dev/null 2>&1 && { i=$((i + 1)); continue; }
    api POST /api/v1/nodes "$(
      jq -n --arg name "$node" --arg cidr "10.244.$i.0/24" '{
        apiVersion: "v1", kind: "Node",
        metadata: {
          name: $name,
          annotations: {"kwok.x-k8s.io/node": "fake", "node.alpha.kubernetes.io/ttl": "0"},
          labels: {
            "kubernetes.io/hostname": $name, "kubernetes.io/os": "linux", "kubernetes.io/arch": "amd64",
            "node-role.kubernetes.io/worker": "", "type": "kwok"
          }
        },
        spec: {podCIDR: $cidr, podCIDRs: [$cidr]}
      }'
    )" >/dev/null
    i=$((i + 1))
  done
}

all_running() {
  local c
  for c in "${COMPONENTS[@]}"; do running_pid "$c" >/dev/null || return 1; done
}

port_free() { [[ -z "$(ss -Htln "sport = :$1")" ]]; }

choose_ports() {
  local base slot hash i p free
  if [[ -n "${TEFLON_CLUSTER_PORT_BASE:-}" ]]; then
    base=$TEFLON_CLUSTER_PORT_BASE
  else
    hash="$(cksum <<<"$STATE" | cut -d' ' -f1)"
    for ((i = 0; i < 900; i++)); do
      slot=$(((hash + i) % 900))
      base=$((20000 + slot * 10)) # below the ephemeral range, so no client socket takes them
      free=1
      for ((p = base; p < base + 6; p++)); do port_free "$p" || { free=0 && break; }; done
      ((free == 0)) || break
    done
  fi
  mkdir -p "$STATE"
  echo "$base" >"$STATE/ports"
  set_ports "$base"
}

running_version() { cat "$STATE/kubernetes-version" 2>/dev/null || true; }

up() {
  if all_running && api_ready && [[ "$(running_version)" == "$K8S_VERSION" ]]; then
    guard_routes
    log "already up (export KUBECONFIG=$STATE/kubeconfig)"
    return
  fi
  if all_running; then
    log "replacing the running Kubernetes v$(running_version) with v$K8S_VERSION"
    down
  elif [[ -d "$STATE/pids" ]]; then
    log "a previous cluster is partly running or stale; replacing it"
    down
  fi
  build
  local begin=$SECONDS
  trap up_failed EXIT
  choose_ports
  echo "$K8S_VERSION" >"$STATE/kubernetes-version"
  make_pki
  guard_routes

  start_etcd
  start_apiserver
  start_controllers
  start_kwok
  create_nodes
  wait_for kube-controller-manager 60 kcm_healthy
  wait_for kube-scheduler 60 sched_healthy
  wait_for kwok 60 kwok_healthy
  wait_for kwok 60 nodes_ready
  # Pods can be created once the ServiceAccount controller has made the namespace's default account.
  wait_for kube-controller-manager 60 default_sa_exists
  trap - EXIT
  log "up in $((SECONDS - begin))s: export KUBECONFIG=$STATE/kubeconfig"
}

start_etcd() {
  start etcd "$ETCD_DIR/bin/etcd" --name teflon --data-dir "$STATE/etcd" \
    --listen-client-urls "http://127.0.0.1:$ETCD_PORT" --advertise-client-urls "http://127.0.0.1:$ETCD_PORT" \
    --listen-peer-urls "http://127.0.0.1:$ETCD_PEER_PORT" \
    --initial-advertise-peer-urls "http://127.0.0.1:$ETCD_PEER_PORT" \
    --initial-cluster "teflon=http://127.0.0.1:$ETCD_PEER_PORT" \
    --unsafe-no-fsync --quota-backend-bytes=2147483648 --log-level=warn
  wait_for etcd 30 etcd_healthy
}

start_apiserver() {
  start kube-apiserver "$K8S_DIR/bin/kube-apiserver" \
    --etcd-servers="http://127.0.0.1:$ETCD_PORT" \
    --bind-address=127.0.0.1 --advertise-address=127.0.0.1 --secure-port="$API_PORT" \
    --tls-cert-file="$PKI/apiserver.crt" --tls-private-key-file="$PKI/apiserver.key" \
    --client-ca-file="$PKI/ca.crt" \
    --service-cluster-ip-range="$SERVICE_CIDR" \
    --service-account-issuer=https://kubernetes.default.svc.cluster.local \
    --service-account-key-file="$PKI/sa.pub" --service-account-signing-key-file="$PKI/sa.key" \
    --authorization-mode=Node,RBAC \
    --enable-admission-plugins=NodeRestriction \
    --allow-privileged=true \
    --requestheader-client-ca-file="$PKI/front-proxy-ca.crt" \
    --requestheader-allowed-names=front-proxy-client \
    --requestheader-username-headers=X-Remote-User \
    --requestheader-group-headers=X-Remote-Group \
    --requestheader-extra-headers-prefix=X-Remote-Extra- \
    --proxy-client-cert-file="$PKI/front-proxy-client.crt" \
    --proxy-client-key-file="$PKI/front-proxy-client.key" \
    --enable-aggregator-routing=true \
    --endpoint-reconciler-type=none \
    --profiling=false
  wait_for kube-apiserver 120 api_ready
}

start_controllers() {
  start kube-controller-manager "$K8S_DIR/bin/kube-controller-manager" \
    --kubeconfig="$STATE/kube-controller-manager.kubeconfig" \
    --authentication-kubeconfig="$STATE/kube-controller-manager.kubeconfig" \
    --authorization-kubeconfig="$STATE/kube-controller-manager.kubeconfig" \
    --bind-address=127.0.0.1 --secure-port="$KCM_PORT" \
    --tls-cert-file="$PKI/controller-serving.crt" --tls-private-key-file="$PKI/controller-serving.key" \
    --client-ca-file="$PKI/ca.crt" --requestheader-client-ca-file="$PKI/front-proxy-ca.crt" \
    --root-ca-file="$PKI/ca.crt" \
    --service-account-private-key-file="$PKI/sa.key" \
    --cluster-signing-cert-file="$PKI/ca.crt" --cluster-signing-key-file="$PKI/ca.key" \
    --use-service-account-credentials=true \
    --controllers='*,bootstrapsigner,tokencleaner' \
    --service-cluster-ip-range="$SERVICE_CIDR" \
    --horizontal-pod-autoscaler-sync-period=5s \
    --leader-elect=false --profiling=false
  start kube-scheduler "$K8S_DIR/bin/kube-scheduler" \
    --kubeconfig="$STATE/kube-scheduler.kubeconfig" \
    --authentication-kubeconfig="$STATE/kube-scheduler.kubeconfig" \
    --authorization-kubeconfig="$STATE/kube-scheduler.kubeconfig" \
    --bind-address=127.0.0.1 --secure-port="$SCHED_PORT" \
    --tls-cert-file="$PKI/controller-serving.crt" --tls-private-key-file="$PKI/controller-serving.key" \
    --client-ca-file="$PKI/ca.crt" --requestheader-client-ca-file="$PKI/front-proxy-ca.crt" \
    --leader-elect=false --profiling=false
}

start_kwok() {
  start kwok "$KWOK_DIR/bin/kwok" \
    --kubeconfig="$STATE/kwok.kubeconfig" \
    --config="$KWOK_DIR/stages.yaml" --config="$HERE/kwok-stages.yaml" \
    --manage-all-nodes=false --manage-nodes-with-annotation-selector=kwok.x-k8s.io/node=fake \
    --node-ip="$NODE_IP" --node-lease-duration-seconds=40 \
    --cidr="$POD_CIDR" \
    --server-address="127.0.0.1:$KWOK_PORT"
}

stop_processes() {
  local c pid stopped=()
  # Reverse start order: clients first, etcd last.
  for ((i = ${#COMPONENTS[@]} - 1; i >= 0; i--)); do
    c="${COMPONENTS[$i]}"
    if pid="$(running_pid "$c")"; then
      kill -TERM "$pid" 2>/dev/null || true
      stopped+=("$c:$pid")
    fi
  done
  for entry in "${stopped[@]}"; do
    c="${entry%%:*}"
    for _ in $(seq 1 150); do running_pid "$c" >/dev/null || break; sleep 0.1; done
    if pid="$(running_pid "$c")"; then
      log "$c ($pid) still runs 15s after SIGTERM; killing it"
      kill -KILL "$pid" 2>/dev/null || true
    fi
  done
  ((${#stopped[@]} == 0)) || log "stopped ${stopped[*]}"
}

down() {
  stop_processes
  unguard_routes
  rm -rf "$STATE"
}

# A failed `up` stops whatever it had started but keeps the logs; the next `up` clears the rest.
up_failed() {
  log "up failed; stopping the components it started (logs stay in $STATE/logs)"
  stop_processes
}

status() {
  local c pid ok=0
  for c in "${COMPONENTS[@]}"; do
    if pid="$(running_pid "$c")"; then
      printf '%-24s running  pid %s\n' "$c" "$pid"
    else
      printf '%-24s stopped\n' "$c"
      ok=1
    fi
  done
  if ((ok == 0)) && api_ready; then
    printf '%-24s v%s at https://127.0.0.1:%s ready (KUBECONFIG=%s)\n' api "$(running_version)" "$API_PORT" "$STATE/kubeconfig"
  else
    printf '%-24s not ready\n' api
    ok=1
  fi
  return "$ok"
}

# One up or down at a time per checkout: test sessions started together all call `up`; the first
# starts the cluster while the others wait, then find it running.
lock_state() {
  mkdir -p "$CACHE/locks"
  exec 9>"$CACHE/locks/$(cksum <<<"$STATE" | cut -d' ' -f1).lock"
  flock 9
}

need() {
  local cmd missing=()
  for cmd in "$@"; do command -v "$cmd" >/dev/null || missing+=("$cmd"); done
  ((${#missing[@]} == 0)) || die "missing ${missing[*]}: run \`make tools\` (scripts/apt-packages.txt)"
}

main() {
  need curl jq openssl ip ss flock setsid cksum
  case "${1:-}" in
    up)
      # Fast path without the lock, so a long build for another checkout never delays a running one.
      if all_running && api_ready && [[ "$(running_version)" == "$K8S_VERSION" ]]; then
        guard_routes
        log "already up (export KUBECONFIG=$STATE/kubeconfig)"
        return
      fi
      lock_state
      ;;
    down) lock_state ;;
  esac
  case "${1:-}" in
    up) up ;;
    down) down ;;
    status) status ;;
    env) echo "export KUBECONFIG=$STATE/kubeconfig" ;;
    build) build ;;
    *)
      echo "usage: $0 up|down|status|env|build" >&2
      exit 2
      ;;
  esac
}

# On one line, so bash has read all of it before running: editing this file while a long `up` runs
# cannot make bash read on into the new text.
if [[ "${BASH_SOURCE[0]}" == "$0" ]]; then main "$@"; exit; fi
