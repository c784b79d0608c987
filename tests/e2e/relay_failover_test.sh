#!/usr/bin/env bash
# End to end (wireguard-go, namespaces): failover to the relay and back
# (docs/relay.md, path selection). A public lighthouse `lh` (`--lighthouse`)
# and two public nodes a and b.
#   1. a <-> b go direct (both ends show direct or roamed).
#   2. Under a ping every 0.2 s, UDP between a and b is dropped on the bridge:
#      a's path to b is "relayed lh udp" within 7 s of the drop (+1 s for
#      reading `peers`), and pings get through again; the pings lost are
#      counted (figure).
#   3. The drop is lifted: both ends are direct again within the first
#      re-probe (30 s) + 6 s.
#
#   tests/e2e/relay_failover_test.sh path/to/fortmesh
# Needs root, iproute2, nftables, wireguard-go, wireguard-tools, ping and
# python3; exit 77 (a skip for ctest) with the reason when they are missing.
set -euo pipefail
here=$(dirname "$(readlink -f "$0")")
source "$here/lib.sh"
source "$here/nat_lib.sh"
command -v ping >/dev/null || { echo "SKIP: ping is not installed (scripts/setup.sh)"; exit 77; }
nat_e2e_start "$1"
step() { echo "== $(date +%T) $*"; }
now() { date +%s.%N; }
since() { python3 -c "import sys; print(f'{$(now) - $1:.1f}')"; }

for h in lh a b; do nat_add_site "$h" none; fm "$h" keygen >/dev/null; done
mkdir -m 700 "$MESH_DIR/root"
fm root keygen >/dev/null
fm root org init --name failover >/dev/null
fm root enroll "$(fm lh pubkey)" --name lh --role lighthouse --endpoint "$(nat_public_ip lh):51820" --out "$MESH_DIR/lh.join" >/dev/null
for h in a b; do fm root enroll "$(fm "$h" pubkey)" --name "$h" --out "$MESH_DIR/$h.join" >/dev/null; done
for h in lh a b; do fm "$h" join "$MESH_DIR/$h.join" >/dev/null; done
declare -A OVERLAY=()
for h in lh a b; do OVERLAY[$h]=$(overlay_of "$h"); done
path_of() {
  fm "$1" peers --json 2>/dev/null | python3 -c '
import json, sys
for p in json.load(sys.stdin).get("peers", []):
    if p.get("name") == sys.argv[1]: print(p.get("path", ""), p.get("relay", ""))' "$2"
}
shopt -s extglob
is_path() { local p; p=$(path_of "$1" "$2"); [[ "$p" == $3 ]]; }
both_direct() { is_path a b "@(direct|roamed) " && is_path b a "@(direct|roamed) "; }

step "1. a <-> b direct"
mesh_start lh --wg-backend userspace --log-level debug --lighthouse
for h in a b; do mesh_start "$h" --wg-backend userspace --log-level debug; done
rm -f "$MESH_DIR/stop"
nat_exec a timeout 90 bash -c "while [ ! -e $MESH_DIR/stop ]; do ping -6 -c 1 -W 1 ${OVERLAY[b]} >/dev/null 2>&1; sleep 0.5; done" &
warm=$!
wait_for 75 both_direct || { touch "$MESH_DIR/stop"; fail "a and b are not direct: a->b '$(path_of a b)', b->a '$(path_of b a)'"; }
touch "$MESH_DIR/stop"; wait "$warm" 2>/dev/null || true
echo "   a->b '$(path_of a b)', b->a '$(path_of b a)'"

step "2. drop UDP between a and b under a steady ping"
# 2 s before the drop, up to 12 s to relay, 2 s after: 80 pings, 16 s.
nat_exec a ping -6 -i 0.2 -c 80 -W 1 "${OVERLAY[b]}" >"$MESH_DIR/ping.txt" 2>&1 &
pinger=$!
sleep 2
ip netns exec "$MESH_HUB" nft -f - <<NFT
table bridge failover {
 chain forward { type filter hook forward priority filter;
  ip saddr ${MESH_IP[a]} ip daddr ${MESH_IP[b]} meta l4proto udp drop
  ip saddr ${MESH_IP[b]} ip daddr ${MESH_IP[a]} meta l4proto udp drop
 }
}
NFT
T_DROP=$(now)
wait_for 12 is_path a b "relayed lh udp" || fail "a->b is '$(path_of a b)' 12 s after the drop, not relayed"
T_RELAYED=$(since "$T_DROP")
echo "   figure: failover direct -> relayed in $T_RELAYED s (a's peers, polled every 0.2 s)"
python3 -c "import sys; sys.exit(0 if $T_RELAYED <= 8.0 else 1)" || fail "failover took $T_RELAYED s (> 7 s + 1 s of polling)"
ping_ok() { nat_exec a ping -6 -c 1 -W 1 "${OVERLAY[b]}" >/dev/null 2>&1; }
wait_for 5 ping_ok || fail "no ping a -> b over the relay"
wait "$pinger" 2>/dev/null || true
echo "   figure: pings every 0.2 s across the failover: $(grep -E 'packets transmitted' "$MESH_DIR/ping.txt" || echo '?')"

step "3. lift the drop: direct again within 30 s + 6 s"
ip netns exec "$MESH_HUB" nft delete table bridge failover
T_LIFT=$(now)
rm -f "$MESH_DIR/stop"
nat_exec a timeout 90 bash -c "while [ ! -e $MESH_DIR/stop ]; do ping -6 -c 1 -W 1 ${OVERLAY[b]} >/dev/null 2>&1; sleep 0.5; done" &
warm=$!
wait_for 45 both_direct || { touch "$MESH_DIR/stop"; fail "not direct 45 s after the drop was lifted: a->b '$(path_of a b)', b->a '$(path_of b a)'"; }
T_BACK=$(since "$T_LIFT")
touch "$MESH_DIR/stop"; wait "$warm" 2>/dev/null || true
echo "   figure: direct again $T_BACK s after the drop was lifted"
python3 -c "import sys; sys.exit(0 if $T_BACK <= 37.0 else 1)" || fail "back to direct took $T_BACK s (> 36 s + polling)"
echo "PASS: failover: relayed $T_RELAYED s after UDP was dropped, direct $T_BACK s after it was lifted"
