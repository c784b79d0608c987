#!/usr/bin/env bash
# Figures, not a test: revocation to enforcement in a 16-node mesh on real
# WireGuard (wireguard-go) in network namespaces, and the daemon's resident
# memory. What each figure means: docs/revoke_bench.md.
#
#   tests/e2e/bench_revoke.sh path/to/fortmesh [trials]
#   WATCH_INTERVAL_US=N   pause between two UAPI polls of one node (default 5000;
#                         0 = back to back; "off" = no watchers, logs only).
#                         Polling costs wireguard-go CPU and slows what it
#                         measures: docs/revoke_bench.md has the trade-off.
#   KEEP_TRIALS=FILE      keep the per-trial records (JSON lines)
#
# Each trial revokes one of 20 extra enrolled members (keys only, no host) at
# the root, through its running daemon, and reports:
#  - outside: from just before `fortmesh revoke` starts (t0) until that peer is
#    gone from the WireGuard configuration of all 16 nodes, seen by peer_watch
#    (one thread per wireguard-go UAPI socket, polling in parallel; it runs the
#    command itself, so t0 is taken right before the spawn);
#  - the CLI's own wall time;
#  - from the daemons' logs: t0 -> root applied -> last node applied -> last
#    WireGuard removal (revoke_report.py, log patterns at its top).
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

# The external watcher: a small C++ program, built here (seconds).
g++ -std=c++20 -O2 -pthread -o "$MESH_DIR/peer_watch" "$here/peer_watch.cc"
INTERVAL=${WATCH_INTERVAL_US:-5000}
socks=() ifs=() dpids=()
for h in "${HOSTS[@]}"; do
  socks+=("/var/run/wireguard/${MESH_IF[$h]}.sock"); ifs+=("${MESH_IF[$h]}"); dpids+=("${MESH_PID[$h]}")
done
wgpids=$(python3 "$here/revoke_report.py" pids "${ifs[@]}")
dpids=$(IFS=,; echo "${dpids[*]}")
[ "$INTERVAL" = off ] && socks=() && echo "no watchers (WATCH_INTERVAL_US=off): log-based figures only"
[ "$INTERVAL" = off ] || echo "watchers: 16 threads, one UAPI connection each, ${INTERVAL} us between polls"
echo "load average before the trials: $(cut -d' ' -f1-3 /proc/loadavg)"
# The idle mesh's CPU, for comparison with a trial's: 500 ms, nothing revoked.
"$MESH_DIR/peer_watch" -t 500 -w "$wgpids" -d "$dpids" - -- true >"$MESH_DIR/idle.out"
python3 "$here/revoke_report.py" idle "$MESH_DIR/idle.out"
# Packets the 16 nodes sent into their tunnels (gossip, mostly), all of them.
overlay_tx() {
  local sum=0 h
  for h in "${HOSTS[@]}"; do
    sum=$(( sum + $(ip netns exec "$(ns_of "$h")" cat "/sys/class/net/${MESH_IF[$h]}/statistics/tx_packets") ))
  done
  echo "$sum"
}
# Without watchers, CPU is counted over the first 100 ms after t0.
window=0; [ "$INTERVAL" = off ] && window=100
jsonl="$MESH_DIR/trials.jsonl"
for t in $(seq 1 "$TRIALS"); do
  key_hex=$(python3 "$here/revoke_report.py" wgkey "$(fm "x$t" pubkey)")
  logs=()
  for h in "${HOSTS[@]}"; do logs+=("$h=$MESH_DIR/$h.log:$(stat -c %s "$MESH_DIR/$h.log")"); done
  tx0=$(overlay_tx)
  rc=0
  "$MESH_DIR/peer_watch" -i "${INTERVAL/off/0}" -t "$window" -w "$wgpids" -d "$dpids" "$key_hex" "${socks[@]}" -- \
    "$FM_BIN" revoke "x$t" --reason bench --state-dir "$MESH_DIR/root" >"$MESH_DIR/watch.out" || rc=$?
  [ "$rc" -ne 2 ] || { echo "trial $t: x$t still a peer somewhere after 10 s"; exit 1; }
  [ "$rc" -eq 0 ] || { echo "trial $t: peer_watch failed ($rc)"; exit 1; }
  python3 "$here/revoke_report.py" trial "$t" "$MESH_DIR/watch.out" root "$jsonl" "${logs[@]}"
  python3 "$here/revoke_report.py" packets "$jsonl" $(( $(overlay_tx) - tx0 ))
  sleep 0.2
done
python3 "$here/revoke_report.py" summary "$jsonl"
[ -z "${KEEP_TRIALS:-}" ] || cp "$jsonl" "$KEEP_TRIALS"
echo "daemon resident memory: $(for h in root lh n1; do grep VmRSS "/proc/${MESH_PID[$h]}/status" | awk -v h="$h" '{printf "%s %d MB  ", h, $2/1024}'; done)"
