#!/usr/bin/env bash
# Build the peers teflon is measured against and tested with: `scripts/peers.sh NAME...` prints
# the path of each binary, building it first when the cache has none.
#
# Peers: falcosidekick (a real client of teflon's ingest in tests/peers, and the ingest/memory
# peer in `make bench`) and falco-talon (the reaction peer in `make bench`). Their release
# sources are unchanged `git archive`s of the release tags in $TEFLON_PEER_ARCHIVES (default
# ../shared/peers next to the checkout); each archive is checked against the sha256 pinned below
# before anything is unpacked, and the binary is cached by that sha256 in
# ${XDG_CACHE_HOME:-~/.cache}/teflon/peers/NAME/SHA256/, so a second run (or a second clone on the
# same machine) pays nothing. A cold build is about 6 minutes of one core per peer; Go's
# dependencies come from the Go module proxy. Builds are limited to $TEFLON_GO_JOBS cores (2).
#
# `scripts/peers.sh --info NAME` prints `version commit sha256 archive` without building.
# Exit status 2: the release archive is not there (callers may skip); 1: any other failure.
set -euo pipefail

# shellcheck source=scripts/tools/env.sh
source "$(dirname "$0")/tools/env.sh"

ARCHIVES="${TEFLON_PEER_ARCHIVES:-$TEFLON_ROOT/../shared/peers}"
GO_JOBS="${TEFLON_GO_JOBS:-2}"

# name -> "version commit archive sha256 ldflags-variable"
declare -A PEER=(
  [falcosidekick]="2.34.1 03364bc26b2262439a5ddeb57e1e354742727e11 falcosidekick-2.34.1.tar.gz 5b8fe10e9c37ecd803ea86b5e08998394bcb7706cc377fafb3f8a1ee1e05bdf7 main.GitVersion"
  [falco-talon]="v0.3.0 215ebba46e4ee00bb44b3c21eeb9724a8dc10548 falco-talon-0.3.0.tar.gz 377dfb000a17dc7757eaf3aae87d336335c9b5006d6bb569aef9c7ea585830eb github.com/falcosecurity/falco-talon/configuration.GitVersion"
)

log() { printf 'peers: %s\n' "$*" >&2; }
die() {
  printf 'peers: ERROR: %s\n' "$*" >&2
  exit 1
}

build() {
  local name="$1" version commit archive sha ldvar
  [[ -n ${PEER[$name]:-} ]] || die "unknown peer '$name' (known: ${!PEER[*]})"
  read -r version commit archive sha ldvar <<<"${PEER[$name]}"
  local dir="$TOOLS_CACHE/peers/$name/$sha"
  if [[ -x $dir/$name ]]; then
    printf '%s\n' "$dir/$name"
    return 0
  fi
  mkdir -p "$TOOLS_CACHE/peers"
  # One builder per peer at a time (make test, make bench and engineers share the cache).
  exec 8>"$TOOLS_CACHE/peers/.$name.lock"
  flock 8
  if [[ ! -x $dir/$name ]]; then
    local src="$ARCHIVES/$archive" got
    if [[ ! -f $src ]]; then
      printf 'peers: ERROR: %s not found: set TEFLON_PEER_ARCHIVES to the directory holding it\n' "$src" >&2
      exit 2
    fi
    got=$(sha256sum "$src" | cut -d' ' -f1)
    [[ $got == "$sha" ]] || die "$src has sha256 $got, pinned $sha: refusing to build it"
    command -v go >/dev/null || die "Go is required to build $name (go1.26 or newer)"
    log "building $name $version from $archive (go, $GO_JOBS jobs; cold: about 6 minutes)"
    rm -rf "$dir.partial"
    mkdir -p "$dir.partial/src"
    tar -xzf "$src" -C "$dir.partial/src" --strip-components=1
    (cd "$dir.partial/src" &&
      CGO_ENABLED=0 GOMAXPROCS="$GO_JOBS" GOFLAGS="-buildvcs=false" \
        go build -p "$GO_JOBS" -trimpath -ldflags "-X $ldvar=$version" -o "../$name" .)
    rm -rf "$dir.partial/src"
    printf '%s %s %s %s\n' "$version" "$commit" "$sha" "$archive" >"$dir.partial/INFO"
    rm -rf "$dir" && mv "$dir.partial" "$dir"
  fi
  flock -u 8
  printf '%s\n' "$dir/$name"
}

main() {
  [[ $# -gt 0 ]] || die "usage: scripts/peers.sh [--info] NAME... (known: ${!PEER[*]})"
  if [[ $1 == --info ]]; then
    shift
    local name version commit archive sha ldvar
    for name in "$@"; do
      [[ -n ${PEER[$name]:-} ]] || die "unknown peer '$name'"
      read -r version commit archive sha ldvar <<<"${PEER[$name]}"
      printf '%s %s %s %s\n' "$version" "$commit" "$sha" "$archive"
    done
    return 0
  fi
  local name
  for name in "$@"; do build "$name"; done
}

main "$@"
