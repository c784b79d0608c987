#!/usr/bin/env bash
# End to end, on real WireGuard tunnels (wireguard-go) in network namespaces:
# an org with a lighthouse and nodes; membership converges; every node pings
# every other over its overlay address; a peer removed or added by hand is
# repaired; a killed wireguard-go comes back; a revocation through the running
# daemon removes the peer everywhere and cuts the pings; status and peers
# answer; a node enrolled while the mesh runs joins it; a restarted daemon
# keeps its state.
#
#   tests/e2e/mesh_test.sh path/to/fortmesh
#
# Needs root, iproute2, wireguard-go and wireguard-tools (scripts/setup.sh).
# Exit 77 (a skip for ctest) with the reason when they are missing.
set -euo pipefail
here=$(dirname "$(readlink -f "$0")")

if [ "$(id -u)" -ne 0 ]; then echo "SKIP: needs root for network namespaces"; exit 77; fi
for tool in ip wireguard-go wg ping python3; do
  command -v "$tool" >/dev/null || { echo "SKIP: $tool is not installed (scripts/setup.sh)"; exit 77; }
done

source "$here/lib.sh"
mesh_init "$1"
step() { echo "== $*"; }
fail() { echo "FAIL: $*"; exit 1; }

NODES=(n1 n2 n3)
ALL=(root lh "${NODES[@]}")
for h in "${ALL[@]}"; do mesh_add_host "$h"; fm "$h" keygen >/dev/null; done

step "org init at root; enroll a lighthouse and ${#NODES[@]} nodes; they join"
fm root org init --name e2e >/dev/null
fm root enroll "$(fm lh pubkey)" --name lh --role lighthouse --endpoint "${MESH_IP[lh]}:51820" \
  --out "$MESH_DIR/lh.join" >/dev/null
fm lh join "$MESH_DIR/lh.join" >/dev/null
for n in "${NODES[@]}"; do
  fm root enroll "$(fm "$n" pubkey)" --name "$n" --out "$MESH_DIR/$n.join" >/dev/null
done
for n in "${NODES[@]}"; do fm "$n" join "$MESH_DIR/$n.join" >/dev/null; done

step "start the daemons"
for h in "${ALL[@]}"; do mesh_start "$h"; done

# Every daemon has every other member as a WireGuard peer.
peers_complete() {
  for h in "${ALL[@]}"; do
    [ "$(wg_peers "$h" | wc -l)" -eq $(( ${#ALL[@]} - 1 )) ] || return 1
  done
}
wait_for 30 peers_complete || fail "WireGuard peers did not converge"

step "every node pings every other over the overlay"
all_ping() {
  for a in "${ALL[@]}"; do
    for b in "${ALL[@]}"; do
      [ "$a" = "$b" ] || ping_overlay "$a" "$b" || return 1
    done
  done
}
wait_for 60 all_ping || fail "overlay pings failed"
echo "   $(( ${#ALL[@]} * (${#ALL[@]} - 1) )) pairs ping"

step "a peer removed by hand is put back; a stranger added by hand is removed"
victim_key=$(wg_key_of n1)
wg set "${MESH_IF[n2]}" peer "$victim_key" remove
stranger=$(wg genkey | wg pubkey)
wg set "${MESH_IF[n2]}" peer "$stranger" allowed-ips 10.99.99.99/32
repaired() {
  wg_peers n2 | grep -qx "$victim_key" && ! wg_peers n2 | grep -qx "$stranger"
}
wait_for 15 repaired || fail "drift was not repaired"
wait_for 20 ping_overlay n2 n1 || fail "n2 cannot reach n1 after the repair"

step "a killed wireguard-go is started again and set up again"
old=$(pgrep -f "wireguard-go -f ${MESH_IF[n3]}\$")
kill -KILL "$old"
restarted() {
  local now; now=$(pgrep -f "wireguard-go -f ${MESH_IF[n3]}\$") && [ "$now" != "$old" ] &&
    [ "$(wg_peers n3 | wc -l)" -eq $(( ${#ALL[@]} - 1 )) ]
}
wait_for 20 restarted || fail "wireguard-go was not restarted with its peers"
wait_for 30 ping_overlay n3 root || fail "n3 cannot reach root after the restart"

step "revoke n1 at root, through the running daemon's control socket"
n1_wg=$(wg_key_of n1)
n1_addr=$(overlay_of n1)
start=$(date +%s%N)
fm root revoke n1 --reason e2e | grep -q "the running daemon is gossiping it" || fail "revoke did not go through the daemon"
gone_everywhere() {
  for h in root lh n2 n3; do
    ! wg_peers "$h" | grep -qx "$n1_wg" || return 1
  done
}
wait_for 30 gone_everywhere || fail "the revoked peer is still configured somewhere"
echo "   peer removed on every node $(( ($(date +%s%N) - start) / 1000000 )) ms after revoke started"
for h in root lh n2 n3; do
  if ip netns exec "$(ns_of "$h")" ping -6 -c 1 -W 1 "$n1_addr" >/dev/null 2>&1; then
    fail "$h still reaches the revoked n1"
  fi
  if ip netns exec "$(ns_of n1)" ping -6 -c 1 -W 1 "$(overlay_of "$h")" >/dev/null 2>&1; then
    fail "the revoked n1 still reaches $h"
  fi
done

step "status and peers through the control socket"
fm n2 status | grep -q "wireguard ${MESH_IF[n2]}, 3 peers" || fail "status: $(fm n2 status)"
[ "$(fm n2 peers --json | python3 -c 'import json,sys; print(len(json.load(sys.stdin)["peers"]))')" -eq 3 ] ||
  fail "peers --json"
fm n2 peers | grep -q "^lh " || fail "peers does not name the lighthouse"

step "enroll through the running daemon: a new node joins the live mesh"
mesh_add_host n4
fm n4 keygen >/dev/null
fm root enroll "$(fm n4 pubkey)" --name n4 --out "$MESH_DIR/n4.join" >/dev/null
fm n4 join "$MESH_DIR/n4.join" >/dev/null
mesh_start n4
wait_for 60 ping_overlay n4 n2 || fail "n4 cannot reach n2"
wait_for 30 ping_overlay n3 n4 || fail "n3 cannot reach n4"

step "a daemon restart keeps state and tunnels"
mesh_stop n2
mesh_start n2
wait_for 30 ping_overlay n2 n3 || fail "n2 cannot reach n3 after its restart"
[ "$(fm n2 members --json | python3 -c 'import json,sys; print(sum(m["status"]=="revoked" for m in json.load(sys.stdin)["members"]))')" -eq 1 ] ||
  fail "n2 lost the revocation across its restart"

echo "PASS"
