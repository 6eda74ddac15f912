# Shared settings for the image scripts: names, storage and the container tool wrappers.
# Sourced, not run.

REPO_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)

# Images live in their own containers-storage tree, outside the work tree, so that they survive
# between runs on the same machine (the warm cache) and never mix with anyone else's images.
# vfs is the one storage driver that works without overlay support in the kernel or in a container.
IMAGES_ROOT=${TEFLON_IMAGES_ROOT:-/var/lib/teflon/containers}
IMAGES_RUNROOT=${TEFLON_IMAGES_RUNROOT:-/run/teflon/containers}
IMAGES_OUT=${TEFLON_IMAGES_OUT:-$REPO_ROOT/build/images}
IMAGE_REPO=${TEFLON_IMAGE_REPO:-localhost/teflon}
IMAGE_TAG=${TEFLON_IMAGE_TAG:-dev}
COMPONENTS=(webhook metrics)

# The local base: Debian bookworm (Python 3.11, the version the locks are resolved for).
BASE_SUITE=bookworm
BASE_PACKAGES=python3,python3-venv,ca-certificates

storage_flags=(--root "$IMAGES_ROOT" --runroot "$IMAGES_RUNROOT" --storage-driver vfs)

bah() { buildah "${storage_flags[@]}" "$@"; }

# runc, because crun is not packaged for this Debian; cgroupfs, because there is no systemd.
pod() { podman "${storage_flags[@]}" --runtime runc --cgroup-manager cgroupfs --events-backend file "$@"; }

log() { printf 'images: %s\n' "$*" >&2; }

# The local base image name, keyed by the recipe that makes it, so a changed recipe makes a new base
# and an unchanged one is never rebuilt.
base_image_name() {
  local key
  key=$(printf '%s\n%s\n' "$BASE_SUITE" "$BASE_PACKAGES" | cat - "$REPO_ROOT/scripts/images/base.sh" |
    sha256sum | cut -c1-12)
  printf 'localhost/teflon-base:%s-%s\n' "$BASE_SUITE" "$key"
}
