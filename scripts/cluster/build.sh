# shellcheck shell=bash
# scripts/cluster.sh: building etcd, kwok and the Kubernetes binaries from the Go module proxy, cached by version.
# Sourced by scripts/cluster.sh, which defines the settings (versions, directories, ports) used here.

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
