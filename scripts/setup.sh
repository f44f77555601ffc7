#!/usr/bin/env bash
# Install what pyrouter and its tests need on a fresh Debian machine (run as root):
# the host tools the integration tests drive, and a venv with the package.
set -euo pipefail
cd "$(dirname "$0")/.."
pkgs=(iproute2 iputils-ping iputils-tracepath traceroute iperf3 tcpdump tshark socat netcat-openbsd procps radvd nftables conntrack)
# DHCP client/server for the DHCP tests (busybox udhcpc/udhcpd); dockerd and debootstrap
# for the image test (tests/docker), which builds its base image locally.
pkgs+=(busybox-static docker.io debootstrap)
missing=()
for p in "${pkgs[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
if [ ${#missing[@]} -gt 0 ]; then
  echo "installing: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq "${missing[@]}" >/dev/null
fi
# The VM test (tests/netns/test_vm.py): QEMU, a Debian kernel (the cloud flavour: 27 MB
# instead of 71 MB, with virtio-net) and busybox for the initramfs; no recommends
# (they pull ~150 GUI/audio packages).
vm_pkgs=(qemu-system-x86 linux-image-cloud-amd64 busybox-static cpio)
missing=()
for p in "${vm_pkgs[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
if [ ${#missing[@]} -gt 0 ]; then
  echo "installing: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
if [ ! -x .venv/bin/python ] || [ pyproject.toml -nt .venv/.installed ]; then
  python3 -m venv .venv
  .venv/bin/pip install -q --upgrade pip >/dev/null
  .venv/bin/pip install -q -e '.[test]'
  touch .venv/.installed
fi
