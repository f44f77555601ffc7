#!/usr/bin/env bash
# Make a local stand-in for the Dockerfile's default base image on a machine that cannot
# pull from a container registry: a minimal Debian (debootstrap --variant=minbase) with
# Debian's python3 and python3-venv, imported into the local docker under the given name.
#
#   scripts/docker-base.sh [IMAGE]      (default python:3.11-slim-bookworm, the Dockerfile's
#                                        BASE_IMAGE default)
#
# DOCKER_HOST selects the daemon, as for the docker CLI.  The root file system is built
# once and cached as a tarball under $PYROUTER_CACHE (default /var/cache/pyrouter), so a
# second run, or a run against a fresh daemon, only imports it (a few seconds).
# The Debian mirror is the one this machine's apt uses.  Needs root and debootstrap.
set -euo pipefail
image="${1:-python:3.11-slim-bookworm}"
suite="${DEBIAN_SUITE:-bookworm}"
cache="${PYROUTER_CACHE:-/var/cache/pyrouter}"
tarball="$cache/base-$suite-python3.tar"

if docker image inspect "$image" >/dev/null 2>&1; then
  echo "docker-base: $image already present"
  exit 0
fi
mkdir -p "$cache"
if [ ! -s "$tarball" ]; then
  mirror="${DEBIAN_MIRROR:-}"
  if [ -z "$mirror" ]; then
    # The first Debian archive URI this machine's apt is configured with (deb822 or
    # one-line format), not the security archive.
    mirror="$(cat /etc/apt/sources.list.d/*.sources 2>/dev/null \
              | awk '/^URIs:/ {print $2}' | grep -v security | head -n1 || true)"
  fi
  if [ -z "$mirror" ]; then
    mirror="$(grep -hE '^deb ' /etc/apt/sources.list 2>/dev/null | awk '{print $2}' \
              | grep -v security | head -n1 || true)"
  fi
  [ -n "$mirror" ] || { echo "docker-base: no Debian mirror found (set DEBIAN_MIRROR)" >&2; exit 1; }
  root="$(mktemp -d "$cache/rootfs.XXXXXX")"
  trap 'rm -rf "$root"' EXIT
  echo "docker-base: debootstrap $suite from $mirror (a few minutes, once)"
  debootstrap --variant=minbase --include=python3,python3-venv,ca-certificates \
    "$suite" "$root" "$mirror" >"$cache/debootstrap.log" 2>&1 \
    || { tail -n 30 "$cache/debootstrap.log" >&2; exit 1; }
  # Slim like the official images: no apt lists, docs or caches in the base layer.
  rm -rf "$root"/var/lib/apt/lists/* "$root"/var/cache/apt/*.bin \
         "$root"/var/cache/apt/archives/*.deb "$root"/usr/share/doc/* "$root"/usr/share/man/*
  tar --numeric-owner --xattrs -C "$root" -cf "$tarball.tmp" .
  mv "$tarball.tmp" "$tarball"
fi
docker import --change 'CMD ["python3"]' --change 'ENV LANG=C.UTF-8' "$tarball" "$image" >/dev/null
echo "docker-base: imported $image from $tarball"
