#!/usr/bin/env bash
# Builds the fortmesh binary and its Debian package: build/fortmesh_VERSION_ARCH.deb.
# Install it with `sudo apt install ./build/fortmesh_*.deb` (docs/install.md).
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/build.sh
(cd build && cpack -G DEB >/dev/null)
ls build/fortmesh_*.deb
