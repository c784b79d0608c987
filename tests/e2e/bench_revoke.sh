#!/usr/bin/env bash
# Figures, not a test: revocation to enforcement in a 16-node mesh on real
# WireGuard (wireguard-go) in network namespaces, and the daemon's resident
# memory with 1,000 members.
#
#   tests/e2e/bench_revoke.sh path/to/fortmesh [trials]
#
# Each trial revokes one of 20 extra enrolled members (keys only, no host) at
# the root, through its running daemon, and times from just before the
# command starts until that peer is gone from the WireGuard configuration of
# all 16 nodes (read from each wireguard-go's UAPI socket every ~5 ms).
set -euo pipefail
here=$(dirname "$(readlink -f "$0")")
[ "$(id -u)" -eq 0 ] || { echo "needs root"; exit 1; }
source "$here/lib.sh"
mesh_init "$1"
TRIALS=${2:-20}

HOSTS=(root lh)
for i in $(seq 1 14); do HOSTS+=("n$i"); done
for h in "${HOSTS[@]}"; do mesh_add_host "$h"; fm "$h" keygen >/dev/null; done
fm root org init --name bench >/dev/null
fm root enroll "$(fm lh pubkey)" --name lh --role lighthouse --endpoint "${MESH_IP[lh]}:51820" \
  --out "$MESH_DIR/lh.join" >/dev/null
for h in "${HOSTS[@]:2}"; do fm root enroll "$(fm "$h" pubkey)" --name "$h" --out "$MESH_DIR/$h.join" >/dev/null; done
# The members revoked in the trials: keys without a host.
for t in $(seq 1 "$TRIALS"); do
  mkdir -p "$MESH_DIR/x$t"; chmod 700 "$MESH_DIR/x$t"
  fm "x$t" keygen >/dev/null
  fm root enroll "$(fm "x$t" pubkey)" --name "x$t" --out "$MESH_DIR/x$t.join" >/dev/null
done
for h in "${HOSTS[@]:1}"; do fm "$h" join "$MESH_DIR/$h.join" >/dev/null; done
for h in "${HOSTS[@]}"; do mesh_start "$h"; done

want=$(( ${#HOSTS[@]} - 1 + TRIALS ))
complete() { for h in "${HOSTS[@]}"; do [ "$(wg_peers "$h" | wc -l)" -eq "$want" ] || return 1; done; }
wait_for 120 complete || { echo "the mesh did not converge"; exit 1; }
echo "16 nodes up, each with $want WireGuard peers"
# Warm: every node has a handshake with the 15 live others (the first
# revocation after start-up otherwise waits for handshakes: docs/wireguard.md).
handshakes() {
  for h in "${HOSTS[@]}"; do
    [ "$(wg show "${MESH_IF[$h]}" latest-handshakes | awk '$2 != 0' | wc -l)" -ge $(( ${#HOSTS[@]} - 1 )) ] || return 1
  done
}
t_warm=$(date +%s)
wait_for 120 handshakes || { echo "handshakes did not complete"; exit 1; }
echo "all 240 directed pairs have a handshake ($(( $(date +%s) - t_warm )) s after the peers were configured)"

socks=()
for h in "${HOSTS[@]}"; do socks+=("/var/run/wireguard/${MESH_IF[$h]}.sock"); done
results=()
for t in $(seq 1 "$TRIALS"); do
  id_key=$(fm "x$t" pubkey)
  t0=$(date +%s.%N)
  fm root revoke "x$t" --reason bench >/dev/null
  ms=$(python3 "$here/peer_gone.py" "$t0" "$id_key" "${socks[@]}")
  [ "$ms" -ge 0 ] || { echo "trial $t: x$t still a peer somewhere after 10 s"; exit 1; }
  results+=("$ms")
  echo "trial $t: $ms ms"
done
printf '%s\n' "${results[@]}" | sort -n | python3 -c '
import sys
v = [int(x) for x in sys.stdin]
print(f"revocation to enforcement on all 16 nodes, {len(v)} trials: min {v[0]} ms, median {v[len(v)//2]} ms, max {v[-1]} ms (target: max <= 1000 ms)")
'
echo "daemon resident memory: $(for h in root lh n1; do grep VmRSS "/proc/${MESH_PID[$h]}/status" | awk -v h="$h" '{printf "%s %d MB  ", h, $2/1024}'; done)"
