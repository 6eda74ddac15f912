# shellcheck shell=bash
# scripts/cluster.sh: the components as processes (PID files, start, health, stop) and what the cluster needs around them (ports, routes, nodes).
# Sourced by scripts/cluster.sh, which defines the settings (versions, directories, ports) used here.

# A PID file holds "PID STARTTIME": the start time (field 22 of /proc/PID/stat) guards against a reused
# PID, so `down` only ever signals the very process `up` started.
proc_start_time() { awk '{print $22}' "/proc/$1/stat" 2>/dev/null; }
# A killed process stays in /proc as a zombie (state Z) until its parent, often init, reaps it.
proc_state() { awk '{print $3}' "/proc/$1/stat" 2>/dev/null; }

running_pid() { # running_pid NAME -> prints the PID if that exact process is alive
  local f="$STATE/pids/$1.pid" pid start
  [[ -f "$f" ]] || return 1
  read -r pid start <"$f" || return 1
  [[ -n "$pid" && "$(proc_start_time "$pid")" == "$start" && "$(proc_state "$pid")" != Z ]] || return 1
  echo "$pid"
}

# A component inherits no open file but its log: neither the lock `up` holds (fd 9) nor a lock its
# caller holds (`flock FILE scripts/cluster.sh start ...` leaves FILE open), which it would otherwise
# hold for as long as it runs, long after the caller has finished.
close_inherited_fds() {
  local fd
  for fd in /proc/"$BASHPID"/fd/*; do
    fd="${fd##*/}"
    if ((fd > 2 && fd != 255)); then eval "exec $fd>&-" 2>/dev/null || true; fi
  done
}

start() { # start NAME BINARY ARGS...
  local name="$1"
  shift
  mkdir -p "$STATE/pids" "$STATE/logs"
  # setsid: the control plane outlives the shell that started it and ignores its terminal's Ctrl-C.
  (
    close_inherited_fds
    exec setsid "$@" >"$STATE/logs/$name.log" 2>&1 </dev/null
  ) &
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
  start_controller_manager
  start_scheduler
}

start_controller_manager() {
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
}

start_scheduler() {
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

# start_component NAME: start one component of a cluster whose state (PKI, ports) exists, and wait
# until it is healthy; nothing to do if it runs. The fault injection (hardening/chaos.py) uses this.
start_component() {
  local name="$1"
  if running_pid "$name" >/dev/null; then
    log "$name already runs"
    return
  fi
  [[ -f "$PKI/done" ]] || die "no cluster state in $STATE: run \`scripts/cluster.sh up\` first"
  case "$name" in
    etcd) start_etcd ;;
    kube-apiserver) start_apiserver ;;
    kube-controller-manager)
      start_controller_manager
      wait_for kube-controller-manager 60 kcm_healthy
      ;;
    kube-scheduler)
      start_scheduler
      wait_for kube-scheduler 60 sched_healthy
      ;;
    kwok)
      start_kwok
      wait_for kwok 60 kwok_healthy
      ;;
    *) die "no component '$name' (${COMPONENTS[*]})" ;;
  esac
  log "started $name"
}

# stop_components [NAME...]: SIGTERM to each (default: all, clients first and etcd last), wait until
# each has exited, SIGKILL one that still runs 15 s later. The state directory stays.
stop_components() {
  local c pid i stopped=() names=("$@")
  if ((${#names[@]} == 0)); then
    for ((i = ${#COMPONENTS[@]} - 1; i >= 0; i--)); do names+=("${COMPONENTS[$i]}"); done
  fi
  for c in "${names[@]}"; do
    [[ " ${COMPONENTS[*]} " == *" $c "* ]] || die "no component '$c' (${COMPONENTS[*]})"
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
      for _ in $(seq 1 50); do running_pid "$c" >/dev/null || break; sleep 0.1; done
    fi
  done
  ((${#stopped[@]} == 0)) || log "stopped ${stopped[*]}"
}
