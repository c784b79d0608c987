#!/usr/bin/env bash
# End to end, on real WireGuard tunnels (wireguard-go): one org across every
# NAT mode of nat_lib.sh, with the lighthouse relay. Two public lighthouses
# (lh1, lh2, both `run --lighthouse`) and two nodes behind each mode: n1 n2
# (none), e1 e2 (easy), f1 f2 (full cone), s1 s2 (symmetric), and t1 behind
# an easy NAT whose upstream drops all UDP but lets TCP out ("tcponly": it
# reaches everyone through its TCP 443 relay sessions). The lighthouses give
# every node a common gossip path, so endpoint records and reflections flow;
# the nodes then find each other.
#
#   1. The grid: for every unordered pair of modes a pair of nodes, and in
#      fact every pair of nodes, is checked. Where a direct path can exist
#      (every pair with none, easy-easy, easy-fullcone, fullcone-fullcone,
#      fullcone-symmetric) both ends show path direct or roamed with a recent
#      handshake in `peers --json`, and ping -6 works both ways over the
#      overlay. Where it cannot (easy-symmetric, symmetric-symmetric: no port
#      prediction; any pair with t1) both ends show path relayed through the
#      same lighthouse at a 127.128.0.0/9 proxy address with a recent
#      handshake, over UDP, or TCP on t1's side, and ping -6 works both ways.
#      A symmetric-symmetric pair is relayed as having no direct path: its
#      logs show no re-probe of the direct path on the 30 s timer (and say
#      whether it was relayed without probing at all, which depends on how
#      soon both NAT classes are known).
#   2. Reflection: `status --json` of each node behind a NAT announces as
#      reflected its router's public address and the mapped port (WAN:51820
#      for easy and full cone, which keep the WireGuard port); the NAT class
#      is none, endpoint-independent or symmetric as the mode says. A
#      symmetric node's mappings are per destination, so it announces none:
#      the two lighthouses' devices (what they reflect) must show it at its
#      router's public address with two different ports. t1, seen only
#      through the relay, announces nothing reflected.
#   3. Figures: per cell, the time from starting the daemons to the first
#      handshake between its pair (the devices polled every 0.2 s), printed
#      as "figure: cell MODE-MODE first handshake X.X s", with the time since
#      both nodes first reached a lighthouse. For a relayed cell that is the
#      first relayed handshake. The root stays offline, so a member enrolled
#      before others (the lighthouses first) learns of them by a hand-over
#      (5 s after start) or by gossip: that bootstrap is in the first figure,
#      the NAT traversal alone in the second.
#
#   tests/e2e/nat_grid_test.sh path/to/fortmesh
#
# Needs root, iproute2, nftables, wireguard-go, wireguard-tools, ping and
# python3; exit 77 (a skip for ctest) with the reason when they are missing.
# About 60-80 s.
set -euo pipefail
here=$(dirname "$(readlink -f "$0")")
source "$here/lib.sh"
source "$here/nat_lib.sh"
command -v ping >/dev/null || { echo "SKIP: ping is not installed (scripts/setup.sh)"; exit 77; }
nat_e2e_start "$1"
step() { echo "== $(date +%T) $*"; }
PY=$(python3 -c 'import sys; print(sys.executable)')

LIGHTHOUSES=(lh1 lh2)
NODES=(n1 n2 e1 e2 f1 f2 s1 s2 t1)
ALL=("${LIGHTHOUSES[@]}" "${NODES[@]}")
declare -A MODE=([lh1]=none [lh2]=none [n1]=none [n2]=none [e1]=easy [e2]=easy
                 [f1]=fullcone [f2]=fullcone [s1]=symmetric [s2]=symmetric [t1]=tcponly)
# One pair of nodes per cell (each node in several cells, both of each mode
# used); the assertions cover every pair of nodes, the figures these.
CELLS=(none-none:n1:n2 none-easy:n1:e1 none-fullcone:n2:f1 none-symmetric:n2:s1
       easy-easy:e1:e2 easy-fullcone:e2:f2 easy-symmetric:e1:s2
       fullcone-fullcone:f1:f2 fullcone-symmetric:f1:s2 symmetric-symmetric:s1:s2
       none-tcponly:n1:t1 symmetric-tcponly:s1:t1)

step "sites: ${ALL[*]}; an offline root enrolls them (lighthouses with their public endpoints)"
for h in "${ALL[@]}"; do
  if [ "${MODE[$h]}" = tcponly ]; then nat_add_site "$h" easy; else nat_add_site "$h" "${MODE[$h]}"; fi
  fm "$h" keygen >/dev/null
done
mkdir -m 700 "$MESH_DIR/root"
fm root keygen >/dev/null
fm root org init --name grid >/dev/null
for h in "${LIGHTHOUSES[@]}"; do
  fm root enroll "$(fm "$h" pubkey)" --name "$h" --role lighthouse --endpoint "$(nat_public_ip "$h"):51820" \
    --out "$MESH_DIR/$h.join" >/dev/null
done
# t1 before the other nodes, so that their join bundles hold its Enroll: with
# the root offline, the lighthouses learn of a member by a hand-over (UDP
# 51821) of one that knows it, which t1's own upstream drops, and a lighthouse
# gives a relay session only to a key it knows as a member (docs/relay.md,
# "Limits and open points").
fm root enroll "$(fm t1 pubkey)" --name t1 --out "$MESH_DIR/t1.join" >/dev/null
for h in "${NODES[@]}"; do
  [ "$h" = t1 ] && continue
  fm root enroll "$(fm "$h" pubkey)" --name "$h" --out "$MESH_DIR/$h.join" >/dev/null
done
for h in "${ALL[@]}"; do fm "$h" join "$MESH_DIR/$h.join" >/dev/null; done
nat_block_udp t1 allow-tcp-443
for h in "${ALL[@]}"; do
  echo "   $h: ${MODE[$h]}, own address ${MESH_IP[$h]}, public $(nat_public_ip "$h"), ${MESH_IF[$h]}"
done

# What the checks read: the sites, the cells, and where the snapshots go.
CONF="$MESH_DIR/grid.json"
{
  echo "{\"lighthouses\": [$(printf '"%s",' "${LIGHTHOUSES[@]}" | sed 's/,$//')],"
  echo " \"nodes\": [$(printf '"%s",' "${NODES[@]}" | sed 's/,$//')],"
  echo " \"cells\": [$(printf '"%s",' "${CELLS[@]}" | sed 's/,$//')],"
  echo " \"sites\": {"
  sep=""
  for h in "${ALL[@]}"; do
    echo "$sep \"$h\": {\"mode\": \"${MODE[$h]}\", \"public\": \"$(nat_public_ip "$h")\", \"if\": \"${MESH_IF[$h]}\"}"
    sep=","
  done
  echo " }}"
} >"$CONF"
SNAP="$MESH_DIR/snap"
mkdir -p "$SNAP"
snapshot() {
  local h
  for h in "${ALL[@]}"; do
    fm "$h" peers --json >"$SNAP/$h.peers.json" 2>/dev/null || echo '{}' >"$SNAP/$h.peers.json"
    fm "$h" status --json >"$SNAP/$h.status.json" 2>/dev/null || echo '{}' >"$SNAP/$h.status.json"
  done
}
# grid CHECK [quiet]: one check of nat_grid.py over the last snapshot.
grid() { "$PY" -I -S "$here/nat_grid.py" "$CONF" "$SNAP" "$MESH_DIR/handshakes.txt" "$@"; }
snap_grid() { snapshot; grid "$@"; }

step "start the ${#ALL[@]} daemons at once (userspace WireGuard); watch every device every 0.2 s"
T0=$(date +%s.%N)
ifs=()
for h in "${ALL[@]}"; do ifs+=("${MESH_IF[$h]}"); done
"$PY" -I -S "$here/nat_grid.py" --watch "$T0" "$MESH_DIR/handshakes.txt" "${ifs[@]}" \
  >>"$MESH_DIR/watch.log" 2>&1 &
MESH_PID[watch]=$!
for h in "${LIGHTHOUSES[@]}"; do mesh_start "$h" --wg-backend userspace --log-level debug --lighthouse; done
for h in "${NODES[@]}"; do mesh_start "$h" --wg-backend userspace --log-level debug; done

peers_complete() {
  local h
  for h in "${ALL[@]}"; do
    [ "$(wg_peers "$h" | wc -l)" -eq "${#ALL[@]}" ] || return 1  # every other member and the root
  done
}
wait_for 30 peers_complete || fail "WireGuard peers did not converge (every daemon wants every other member)"
echo "   every daemon has the ${#ALL[@]} other members as peers after $(grid elapsed "$T0") s"

step "reflection and NAT class"
wait_for 40 snap_grid reflection quiet || true
grid reflection || fail "reflection (above)"
echo "   right after $(grid elapsed "$T0") s"

step "the grid: every pair that can connect directly does"
# A pair that can connect directly but took over 6 s at the start (the
# hand-over bootstrap) is relayed until its re-probe, 30 s later, or 60 s
# after a failed one.
wait_for 150 snap_grid connected quiet || { grid connected; fail "pairs that should connect directly did not (above)"; }
echo "   all connected after $(grid elapsed "$T0") s"
grid connected
declare -A OVERLAY=()
for h in "${NODES[@]}"; do OVERLAY[$h]=$(overlay_of "$h"); done
ping_one() { nat_exec "$1" ping -6 -c 1 -W 1 "${OVERLAY[$2]}" >/dev/null 2>&1; }
pinged=0
while read -r a b; do
  wait_for 5 ping_one "$a" "$b" || fail "$a cannot ping $b (${OVERLAY[$b]}) over the overlay"
  wait_for 5 ping_one "$b" "$a" || fail "$b cannot ping $a (${OVERLAY[$a]}) over the overlay"
  pinged=$(( pinged + 1 ))
done < <(grid pairs connectable)
echo "   ping -6 over the overlay both ways: $pinged pairs"

step "the pairs with no direct path are relayed"
wait_for 60 snap_grid relayed quiet || { grid relayed; fail "pairs with no direct path are not relayed (above)"; }
echo "   all relayed after $(grid elapsed "$T0") s"
grid relayed
relayed=0
# 10 s: a relayed end may be re-probing its direct path (6 s on a candidate
# that cannot answer, docs/relay.md "Limits and open points").
while read -r a b; do
  wait_for 10 ping_one "$a" "$b" || fail "$a cannot ping $b (${OVERLAY[$b]}) through the relay"
  wait_for 10 ping_one "$b" "$a" || fail "$b cannot ping $a (${OVERLAY[$a]}) through the relay"
  relayed=$(( relayed + 1 ))
done < <(grid pairs blocked)
echo "   ping -6 over the overlay both ways through the relay: $relayed pairs"
# Without relay_first a relayed pair is re-probed 30 s after it went relayed
# (at most about 12 s after start): look at the logs after that.
left=$("$PY" -c "import time; print(max(0.0, $T0 + 45 - time.time()))")
sleep "$left"
grid relay_first "$MESH_DIR" || fail "a symmetric-symmetric pair is not relayed for want of a direct path (above)"

step "figures"
grid figures
grid connected quiet || fail "a direct path was lost while waiting (grid connected)"
echo "PASS: NAT grid: $(grid pairs connectable | wc -l) node pairs direct, $(grid pairs blocked | wc -l) relayed (ping both ways); reflection and NAT class right on all ${#NODES[@]} nodes; $(grid elapsed "$T0") s since start"
