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
#   scripts/cluster.sh stop [COMPONENT...]   stop components (default: all) and keep the state, so
#                              `start` or `up` brings them back; unlike `down`, the host's routes stay
#   scripts/cluster.sh start COMPONENT...    start stopped components again and wait until healthy
#
# Components: etcd kube-apiserver kube-controller-manager kube-scheduler kwok. The code is split by
# concern: scripts/cluster/build.sh (binaries), pki.sh (certificates), components.sh (processes).
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

# shellcheck source=scripts/cluster/build.sh
source "$HERE/build.sh"
# shellcheck source=scripts/cluster/pki.sh
source "$HERE/pki.sh"
# shellcheck source=scripts/cluster/components.sh
source "$HERE/components.sh"

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

down() {
  stop_components
  unguard_routes
  rm -rf "$STATE"
}

# A failed `up` stops whatever it had started but keeps the logs; the next `up` clears the rest.
up_failed() {
  log "up failed; stopping the components it started (logs stay in $STATE/logs)"
  stop_components
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
    down | stop | start) lock_state ;;
  esac
  case "${1:-}" in
    up) up ;;
    down) down ;;
    status) status ;;
    env) echo "export KUBECONFIG=$STATE/kubeconfig" ;;
    build) build ;;
    stop) stop_components "${@:2}" ;;
    start)
      (($# > 1)) || die "usage: $0 start COMPONENT... (${COMPONENTS[*]})"
      local c
      for c in "${@:2}"; do start_component "$c"; done
      ;;
    *)
      echo "usage: $0 up|down|status|env|build|stop [COMPONENT...]|start COMPONENT..." >&2
      exit 2
      ;;
  esac
}

# On one line, so bash has read all of it before running: editing this file while a long `up` runs
# cannot make bash read on into the new text.
if [[ "${BASH_SOURCE[0]}" == "$0" ]]; then main "$@"; exit; fi

