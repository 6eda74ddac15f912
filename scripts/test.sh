#!/usr/bin/env bash
# Run every check and test the project has: `make test` (CI runs the same through .ci/run).
#
#   scripts/test.sh                 everything: lint, chart, pytest
#   scripts/test.sh lint            Python, YAML, shell, Dockerfile and workflow linters
#   scripts/test.sh chart           ct lint (+ helm unittest), schema validation, helm 4, helm-docs
#   scripts/test.sh pytest          the whole tests/ tree in one pytest run (unit and cluster tests)
#   scripts/test.sh unit            pytest without the tests that need the local control plane
#   scripts/test.sh images          build both container images with buildah and smoke-test them with podman
#   scripts/test.sh CHECK...        single checks by name (see `scripts/test.sh --list`)
#
# Every check runs even after one fails, so one run shows every problem; the exit status is
# non-zero if any check failed. Extra pytest arguments go in PYTEST_ARGS.
set -uo pipefail

# shellcheck source=scripts/tools/env.sh
source "$(dirname "$0")/tools/env.sh"
cd "$TEFLON_ROOT" || exit 1

CHART=charts/teflon
RELEASE=teflon
NAMESPACE=teflon
# The newest Kubernetes minor the toolchain knows (kubectl and kubernetes-validate schemas).
KUBE_NEWEST=1.37
# The oldest minor, unless the chart's kubeVersion (">=1.NN...") says otherwise.
KUBE_OLDEST_DEFAULT=1.30
# Custom resources the chart may render whose schemas are not built into Kubernetes; every other
# kind must validate against the Kubernetes API schema (scripts/validate_manifests.py).
CUSTOM_RESOURCES=(
  monitoring.coreos.com/v1/ServiceMonitor
  monitoring.coreos.com/v1/PodMonitor
  monitoring.coreos.com/v1/PrometheusRule
  cert-manager.io/v1/Certificate
  cert-manager.io/v1/Issuer
  cert-manager.io/v1/ClusterIssuer
)
DOCKERFILES=(Dockerfile.webhook Dockerfile.metrics)

LINT_CHECKS=(ruff ruff-format mypy import-linter yamllint shellcheck hadolint actionlint)
CHART_CHECKS=(ct-lint manifests helm4 helm-docs)
ALL_CHECKS=("${LINT_CHECKS[@]}" "${CHART_CHECKS[@]}" pytest images)

# --- checks: each is a function check_<name> that returns non-zero on failure ------------------
# A check that has nothing to look at yet returns 100 (reported as SKIP, never as a pass).
SKIP=100

check_ruff() { ruff check .; }
check_ruff-format() { ruff format --check .; }
check_mypy() { mypy --strict; }
check_import-linter() { lint-imports; }
check_yamllint() { yamllint --strict -c .yamllint .; }

# Executable scripts; the files they `source` are checked through them (.shellcheckrc).
check_shellcheck() {
  local scripts=() f
  while IFS= read -r f; do
    [[ -x $f ]] && scripts+=("$f")
  done < <(git ls-files --cached --others --exclude-standard -- '*.sh' .ci/run)
  shellcheck --severity=warning "${scripts[@]}"
}

check_hadolint() {
  local present=() f
  for f in "${DOCKERFILES[@]}"; do [[ -f $f ]] && present+=("$f"); done
  if [[ ${#present[@]} -eq 0 ]]; then
    echo "no Dockerfile yet (${DOCKERFILES[*]})"
    return "$SKIP"
  fi
  hadolint --config .hadolint.yaml "${present[@]}"
}

check_actionlint() {
  if ! compgen -G '.github/workflows/*.y*ml' >/dev/null; then
    echo "no workflow in .github/workflows"
    return "$SKIP"
  fi
  actionlint
}

require_chart() {
  [[ -f $CHART/Chart.yaml ]] && return 0
  echo "no chart at $CHART yet"
  return "$SKIP"
}

# ct lint: Chart.yaml schema, yamllint, `helm lint` with every ci/*-values.yaml, and the
# additional-commands in ct.yaml, which run `helm unittest --strict` on the chart's suites.
# It lints the chart as it is; the version bump against the target branch is checked on pull
# requests (.github/workflows/ci.yaml), where there is a branch to compare with.
check_ct-lint() {
  require_chart || return
  # helm unittest passes on a chart without suites; a chart without unit tests is a failure here.
  if ! compgen -G "$CHART/tests/*_test.yaml" >/dev/null; then
    echo "no helm-unittest suites in $CHART/tests/*_test.yaml"
    return 1
  fi
  ct lint --config ct.yaml --charts "$CHART" --check-version-increment=false
}

# The values files the chart is rendered with: ct's install scenarios, or its defaults if none.
values_files() {
  compgen -G "$CHART/ci/*-values.yaml" | sort || true
}

kube_oldest() {
  local minor
  minor=$(sed -nE 's/^kubeVersion:[[:space:]]*["'\'']?[[:space:]]*>=?[[:space:]]*v?1\.([0-9]+).*/\1/p' "$CHART/Chart.yaml")
  if [[ -n $minor ]]; then echo "1.$minor"; else echo "$KUBE_OLDEST_DEFAULT"; fi
}

# render HELM KUBE_VERSION [VALUES]: the chart's manifests as a cluster of that version gets them.
render() {
  local helm="$1" kube="$2" values=()
  [[ -n ${3:-} ]] && values=(--values "$3")
  "$helm" template "$RELEASE" "$CHART" --namespace "$NAMESPACE" --kube-version "$kube.0" "${values[@]}"
}

# Schema validation of every rendered scenario against the oldest and newest supported minor:
# catches removed APIs, misspelt fields and kinds that the Kubernetes API would reject.
check_manifests() {
  require_chart || return
  local oldest files=() f kube rc=0 skip=()
  oldest=$(kube_oldest)
  mapfile -t files < <(values_files)
  [[ ${#files[@]} -eq 0 ]] && files=("")
  for f in "${CUSTOM_RESOURCES[@]}"; do skip+=(--skip "$f"); done
  for kube in "$oldest" "$KUBE_NEWEST"; do
    for f in "${files[@]}"; do
      echo "--- ${f:-default values} on Kubernetes $kube"
      local manifests
      if ! manifests=$(render helm "$kube" "$f"); then
        rc=1
        continue
      fi
      python -m scripts.validate_manifests --quiet --kubernetes-version "$kube" "${skip[@]}" - <<<"$manifests" || rc=1
    done
  done
  return "$rc"
}

# Helm 4 users get the same chart: it must lint and render there too.
check_helm4() {
  require_chart || return
  local files=() f rc=0
  mapfile -t files < <(values_files)
  [[ ${#files[@]} -eq 0 ]] && files=("")
  for f in "${files[@]}"; do
    echo "--- helm 4: ${f:-default values}"
    local values=()
    [[ -n $f ]] && values=(--values "$f")
    helm4 lint "$CHART" --namespace "$NAMESPACE" "${values[@]}" || rc=1
    render helm4 "$KUBE_NEWEST" "$f" >/dev/null || rc=1
  done
  return "$rc"
}

# The chart README is generated from values.yaml comments; a stale one fails (`make docs` fixes).
check_helm-docs() {
  require_chart || return
  local generated
  generated=$(helm-docs --log-level warning --dry-run --chart-search-root "$CHART") || return 1
  if ! diff -u --label "$CHART/README.md (committed)" --label "$CHART/README.md (generated)" \
    "$CHART/README.md" - <<<"$generated"; then
    echo "the chart README is out of date with values.yaml: run \`make docs\` and commit it"
    return 1
  fi
}

# One pytest run over the whole tests/ tree: tests that need the local control plane get it from
# the session fixture in tests/conftest.py, so unit and cluster tests share a single invocation.
run_pytest() {
  local rc=0
  # PYTEST_ARGS is split on purpose: it holds several arguments.
  # shellcheck disable=SC2086
  pytest "$@" ${PYTEST_ARGS:-} || rc=$?
  if [[ $rc -eq 5 ]]; then
    echo "pytest collected no tests: a test run that tests nothing is a failure"
    return 1
  fi
  return "$rc"
}
# tests/images need the images built first; the images check runs them right after the build.
check_pytest() { run_pytest --ignore=tests/images; }
check_unit() { run_pytest -m "not e2e and not cluster" --ignore=tests/images; }
check_images() { scripts/images.sh build && scripts/images.sh test; }

# --- runner ------------------------------------------------------------------------------------
declare -a SUMMARY=()
FAILED=()

run_check() {
  local name="$1" start rc=0
  start=$(date +%s)
  printf '\n==> %s\n' "$name"
  "check_$name" || rc=$?
  local took=$(($(date +%s) - start)) status
  case $rc in
    0) status=PASS ;;
    "$SKIP") status=SKIP ;;
    *)
      status=FAIL
      FAILED+=("$name")
      ;;
  esac
  printf '<== %s %s (%ss)\n' "$name" "$status" "$took"
  SUMMARY+=("$(printf '  %-14s %s %5ss' "$name" "$status" "$took")")
}

expand() {
  case $1 in
    all) printf '%s\n' "${ALL_CHECKS[@]}" ;;
    lint) printf '%s\n' "${LINT_CHECKS[@]}" ;;
    chart) printf '%s\n' "${CHART_CHECKS[@]}" ;;
    *)
      if declare -F "check_$1" >/dev/null; then
        echo "$1"
      else
        echo "test: unknown check or group '$1' (try --list)" >&2
        return 1
      fi
      ;;
  esac
}

main() {
  if [[ ${1:-} == --list ]]; then
    echo "groups: all lint chart; checks: ${ALL_CHECKS[*]} unit"
    return 0
  fi
  local checks=() arg name
  for arg in "${@:-all}"; do
    expand "$arg" >/dev/null || return 2
    mapfile -t -O "${#checks[@]}" checks < <(expand "$arg")
  done
  local start
  start=$(date +%s)
  for name in "${checks[@]}"; do run_check "$name"; done
  printf '\nchecks (%ss):\n' "$(($(date +%s) - start))"
  printf '%s\n' "${SUMMARY[@]}"
  if [[ ${#FAILED[@]} -gt 0 ]]; then
    echo "FAILED: ${#FAILED[@]} of ${#checks[@]} checks: ${FAILED[*]}"
    return 1
  fi
  echo "OK: every check passed or had nothing to check yet (SKIP)"
}

main "$@"
