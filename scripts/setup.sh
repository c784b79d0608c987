#!/usr/bin/env bash
# Installs every Debian package that building, running and testing fortmesh needs.
# Idempotent: packages already present are skipped by apt-get.
set -euo pipefail

packages=(
  build-essential cmake pkg-config
  libboost-dev libsodium-dev libprotobuf-dev protobuf-compiler
  libmnl-dev libspdlog-dev librocksdb-dev libcli11-dev
  libgtest-dev libgmock-dev libbenchmark-dev
  python3 python3-prometheus-client
  wireguard-go wireguard-tools iproute2 iputils-ping nftables
  linux-image-amd64 qemu-system-x86 busybox-static cpio kmod
)

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
