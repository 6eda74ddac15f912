#!/usr/bin/env bash
# Make the local base image: a Debian bookworm minbase root filesystem with Python 3.11, built with
# debootstrap, for machines that reach Debian's packages but no container registry. It stands in for
# the public python:3.11-slim-bookworm image that the Dockerfiles default to. Prints the image name.
set -euo pipefail
source "$(dirname "$0")/common.sh"

name=$(base_image_name)
if bah inspect --type image "$name" >/dev/null 2>&1; then
  log "base $name is cached"
  printf '%s\n' "$name"
  exit 0
fi

# Use the mirror this machine's apt already uses, so a local mirror or proxy is honoured; without one,
# debootstrap's own default applies.
mirror=${TEFLON_DEBIAN_MIRROR:-}
if [[ -z $mirror ]]; then
  mirror=$(grep -hsE '^URIs:' /etc/apt/sources.list.d/*.sources | awk '$2 ~ /\/debian\/?$/ {print $2; exit}' || true)
fi
if [[ -z $mirror ]]; then
  mirror=$(grep -hsE '^deb ' /etc/apt/sources.list | awk '$2 ~ /\/debian\/?$/ {print $2; exit}' || true)
fi

work=$(mktemp -d /var/tmp/teflon-base.XXXXXX)
trap 'rm -rf "$work"' EXIT
rootfs=$work/rootfs
start=$(date +%s)
log "debootstrap $BASE_SUITE minbase (+$BASE_PACKAGES) from ${mirror:-debootstrap default mirror}"
debootstrap --variant=minbase --include="$BASE_PACKAGES" "$BASE_SUITE" "$rootfs" ${mirror:+"$mirror"} \
  >"$work/debootstrap.log" 2>&1 || { tail -n 30 "$work/debootstrap.log" >&2; exit 1; }

# Drop what a runtime base has no use for, as the official slim images do: package caches and lists,
# documentation, man pages and translations.
rm -rf "$rootfs"/var/cache/apt/* "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/log/* \
  "$rootfs"/usr/share/doc/* "$rootfs"/usr/share/man/* "$rootfs"/usr/share/info/* \
  "$rootfs"/usr/share/locale/* "$rootfs"/var/cache/debconf/*-old "$rootfs"/var/lib/dpkg/*-old
find "$rootfs"/usr/lib/python3* -name __pycache__ -prune -exec rm -rf {} +
# The official image offers `python`; so does this one.
ln -sf python3 "$rootfs/usr/bin/python"

tar --numeric-owner --xattrs -C "$rootfs" -cf "$work/rootfs.tar" .
ctr=$(bah from --pull=never scratch)
bah add "$ctr" "$work/rootfs.tar" / >/dev/null
bah config --env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin --env LANG=C.UTF-8 \
  --cmd '["python3"]' --label "org.opencontainers.image.description=Debian $BASE_SUITE minbase with Python 3" \
  "$ctr"
bah commit --rm --quiet "$ctr" "$name" >/dev/null
log "base $name built in $(( $(date +%s) - start ))s"
printf '%s\n' "$name"
