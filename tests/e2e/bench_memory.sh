#!/usr/bin/env bash
# Figures, not a test: the daemon's resident memory with 1,000 members (and
# so 999 WireGuard peers, in wireguard-go in a network namespace).
#
#   tests/e2e/bench_memory.sh path/to/fortmesh [members]
set -euo pipefail
here=$(dirname "$(readlink -f "$0")")
[ "$(id -u)" -eq 0 ] || { echo "needs root"; exit 1; }
source "$here/lib.sh"
mesh_init "$1"
N=${2:-1000}
mesh_add_host root
fm root keygen >/dev/null
fm root org init --name mem >/dev/null
mesh_start root
wait_for 10 fm root status || { echo "the daemon did not start"; exit 1; }
t0=$(date +%s)
for i in $(seq 2 "$N"); do
  mkdir -p "$MESH_DIR/k"; rm -f "$MESH_DIR/k/node.key"; chmod 700 "$MESH_DIR/k"
  fm k keygen >/dev/null
  fm root enroll "$(fm k pubkey)" --name "m$i" --out "$MESH_DIR/m.join" >/dev/null
done
echo "enrolled $(( N - 1 )) members through the running daemon in $(( $(date +%s) - t0 )) s"
wait_for 30 test "$(wg_peers root | wc -l)" -eq $(( N - 1 ))
sleep 6  # a repair round or so
rss=$(awk '/VmRSS/ {print int($2/1024)}' "/proc/${MESH_PID[root]}/status")
hwm=$(awk '/VmHWM/ {print int($2/1024)}' "/proc/${MESH_PID[root]}/status")
echo "daemon with $N members and $(wg_peers root | wc -l) WireGuard peers: VmRSS $rss MB, peak $hwm MB (target <= 30 MB); wireguard-go is a separate process"
