#!/usr/bin/env bash
# Installs the Debian packages fortmesh needs, in two sets:
#   scripts/setup.sh           building and running it, and the demo
#   scripts/setup.sh --tests   that, and what the test suite adds (GoogleTest,
#                              nftables, qemu and a kernel image for the VM
#                              tests, systemd-analyze, ...)
# Idempotent: packages already present are skipped.
set -euo pipefail

packages=(
  # building
  build-essential cmake pkg-config dpkg-dev
  libboost-dev libsodium-dev libprotobuf-dev protobuf-compiler
  libmnl-dev libspdlog-dev librocksdb-dev libcli11-dev
  # running: wireguard-go for kernels without WireGuard; the demo's
  # namespaces, `wg show` and ping
  wireguard-go wireguard-tools iproute2 iputils-ping python3
)
if [ "${1:-}" = "--tests" ]; then
  packages+=(
    libgtest-dev libgmock-dev libbenchmark-dev python3-prometheus-client
    nftables systemd
    linux-image-amd64 qemu-system-x86 busybox-static cpio kmod
  )
elif [ $# -gt 0 ]; then
  echo "usage: $0 [--tests]" >&2
  exit 2
fi

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done

if [ ${#missing[@]} -gt 0 ]; then
  sudo_cmd=""
  [ "$(id -u)" -eq 0 ] || sudo_cmd="sudo"
  export DEBIAN_FRONTEND=noninteractive
  $sudo_cmd apt-get update -qq
  $sudo_cmd apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi
