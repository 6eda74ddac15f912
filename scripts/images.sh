#!/usr/bin/env bash
# Build, export and smoke-test the teflon container images without a Docker engine.
#
#   scripts/images.sh build   build teflon-webhook and teflon-metrics with buildah, export OCI archives
#   scripts/images.sh test    run the smoke tests (tests/images) against the built images with podman;
#                             the metrics server's test uses the local control plane (scripts/cluster.sh)
#   scripts/images.sh clean   remove the image storage and the exported archives
#
# Builds are cached in the image storage (outside the work tree, so it outlives a clone): the local
# base by its recipe, each step by buildah's layer cache, and a whole image by the hash of its inputs.
# OCI archives and build logs go to build/images/.
#
# Settings (environment): BASE_IMAGE (default: a local Debian bookworm base made with debootstrap, for
# machines that reach no container registry), TEFLON_IMAGE_REPO, TEFLON_IMAGE_TAG, TEFLON_IMAGES_ROOT,
# TEFLON_IMAGES_RUNROOT, TEFLON_IMAGES_OUT. Needs root, buildah, podman, runc and debootstrap
# (scripts/apt-packages.txt).
set -euo pipefail
source "$(dirname "$0")/images/common.sh"
cd "$REPO_ROOT"

need_tools() {
  local tool missing=()
  for tool in "$@"; do command -v "$tool" >/dev/null || missing+=("$tool"); done
  if (( ${#missing[@]} )); then
    log "missing ${missing[*]}: install the packages in scripts/apt-packages.txt (make tools)"
    exit 1
  fi
  if (( EUID != 0 )); then
    log "building and running images with chroot isolation and vfs storage needs root"
    exit 1
  fi
}

lock_storage() {
  mkdir -p "$IMAGES_ROOT"
  exec 9>"$IMAGES_ROOT.lock"
  flock 9
}

# The CA bundle pip uses on this machine, mounted into RUN steps, so a build behind a TLS-inspecting
# proxy verifies the registry the same way the host does.
ca_bundle() {
  local f
  for f in "${PIP_CERT:-}" "${SSL_CERT_FILE:-}" /etc/ssl/certs/ca-certificates.crt; do
    if [[ -n $f && -f $f ]]; then printf '%s\n' "$f"; return 0; fi
  done
  return 0
}

image_ref() { printf '%s-%s:%s\n' "$IMAGE_REPO" "$1" "$IMAGE_TAG"; }

# Everything a build of one image depends on: its Dockerfile, the build arguments, and the files the
# build context lets in (the `!` lines of .dockerignore). Equal inputs make an equal image, so a
# build with the inputs of the image already tagged is skipped (buildah would still copy each
# stage's root file system just to find every step cached).
build_inputs_key() {
  local component=$1
  shift
  local allowed=()
  mapfile -t allowed < <(sed -nE 's/^!([^*]+)$/\1/p' .dockerignore)
  {
    printf '%s\n' "$@"
    sha256sum "Dockerfile.$component" .dockerignore
    find "${allowed[@]}" -type f ! -path '*/__pycache__/*' ! -name '*.py[cod]' -print0 |
      sort -z | xargs -0 sha256sum
  } | sha256sum | cut -c1-64
}

cmd_build() {
  need_tools buildah debootstrap git
  lock_storage
  local total_start base pull version revision ca component ref start secs id archive key stamp
  total_start=$(date +%s)
  if [[ -n ${BASE_IMAGE:-} ]]; then
    base=$BASE_IMAGE pull=missing
  else
    base=$(scripts/images/base.sh) pull=never
  fi
  version=$(sed -nE 's/^version = "([^"]+)"/\1/p' pyproject.toml | head -n1)
  revision=$(git rev-parse HEAD 2>/dev/null || echo unknown)
  ca=$(ca_bundle)
  local ca_args=()
  if [[ -n $ca ]]; then
    ca_args=(--volume "$ca:/run/teflon-build/ca.crt:ro" --build-arg PIP_CERT=/run/teflon-build/ca.crt)
  fi
  mkdir -p "$IMAGES_OUT" "$IMAGES_ROOT/inputs"
  for component in "${COMPONENTS[@]}"; do
    ref=$(image_ref "$component")
    start=$(date +%s)
    key=$(build_inputs_key "$component" "$base" "$version" "$revision")
    stamp=$IMAGES_ROOT/inputs/$(tr -c 'a-zA-Z0-9._\n-' '_' <<<"$ref")
    archive=$IMAGES_OUT/teflon-$component.oci.tar
    id=$(bah inspect --type image --format '{{.FromImageID}}' "$ref" 2>/dev/null || true)
    if [[ -n $id && "$(cat "$stamp" 2>/dev/null)" == "$key $id" &&
      "$(cat "$archive.id" 2>/dev/null)" == "$id" && -f $archive ]]; then
      log "$ref is up to date with its inputs: $(bah images --noheading --format '{{.Size}}' "$ref")"
      continue
    fi
    if ! bah bud --isolation chroot --layers --pull="$pull" \
      --file "Dockerfile.$component" --tag "$ref" \
      --build-arg BASE_IMAGE="$base" --build-arg VERSION="$version" --build-arg REVISION="$revision" \
      "${ca_args[@]}" . >"$IMAGES_OUT/build-$component.log" 2>&1; then
      tail -n 40 "$IMAGES_OUT/build-$component.log" >&2
      log "building $ref failed; the whole log is $IMAGES_OUT/build-$component.log"
      exit 1
    fi
    secs=$(( $(date +%s) - start ))
    id=$(bah inspect --type image --format '{{.FromImageID}}' "$ref")
    # Export only when the image changed: the archive's sidecar records the image it holds.
    if [[ ! -f $archive || "$(cat "$archive.id" 2>/dev/null)" != "$id" ]]; then
      rm -f "$archive" "$archive.id"
      bah push --quiet "$ref" "oci-archive:$archive:$ref" >/dev/null
      printf '%s\n' "$id" >"$archive.id"
    fi
    printf '%s %s\n' "$key" "$id" >"$stamp"
    log "$ref built in ${secs}s: image $(bah images --noheading --format '{{.Size}}' "$ref"), archive $(du -h "$archive" | cut -f1) ($archive)"
  done
  prune_stale_layers "$IMAGES_OUT"/build-*.log
  log "done in $(( $(date +%s) - total_start ))s (base $base)"
}

# With vfs every cached step is a full copy of its root file system, so stale steps add up to
# gigabytes within a few builds. Keep exactly the untagged images this build used or made (the
# cache the next build needs) and remove the other untagged ones.
prune_stale_layers() {
  local keep id name stale=()
  keep=$(sed -nE 's/^--> (Using cache )?([0-9a-f]{11,64})$/\2/p' "$@" | sort -u)
  while read -r id name; do
    id=${id#sha256:}
    [[ $name == "<none>" ]] || continue
    if ! grep -q "^${id:0:11}" <<<"$keep"; then stale+=("$id"); fi
  done < <(bah images --all --noheading --no-trunc --format '{{.ID}} {{.Name}}')
  if (( ${#stale[@]} )); then
    bah rmi --force "${stale[@]}" >/dev/null 2>&1 || log "could not remove every stale layer (in use?)"
    log "removed ${#stale[@]} stale cached steps"
  fi
}

cmd_test() {
  need_tools podman runc
  local component refs=()
  for component in "${COMPONENTS[@]}"; do
    refs+=("$(image_ref "$component")")
    if ! pod image exists "${refs[-1]}"; then
      log "${refs[-1]} is not built: run scripts/images.sh build (make images) first"
      exit 1
    fi
  done
  TEFLON_IMAGE_WEBHOOK=${refs[0]} TEFLON_IMAGE_METRICS=${refs[1]} \
    TEFLON_IMAGES_ROOT=$IMAGES_ROOT TEFLON_IMAGES_RUNROOT=$IMAGES_RUNROOT \
    "$REPO_ROOT/.venv/bin/python" -m pytest -m images tests/images "$@"
}

cmd_clean() {
  if [[ -d $IMAGES_ROOT ]]; then
    lock_storage
    bah rm --all >/dev/null 2>&1 || true
    bah rmi --all --force >/dev/null 2>&1 || true
  fi
  rm -rf "$IMAGES_ROOT" "$IMAGES_ROOT.lock" "$IMAGES_OUT"
}

case ${1:-build} in
  build) cmd_build ;;
  test) shift; cmd_test "$@" ;;
  clean) cmd_clean ;;
  *) log "usage: $0 build|test|clean"; exit 2 ;;
esac
