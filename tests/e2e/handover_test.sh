#!/usr/bin/env bash
# End to end: a node no peer knows yet hands its enrollment over, outside the
# tunnel. The lighthouse joined before b was enrolled; the root enrolled b
# with its daemon stopped (an admin's laptop, closed since). WireGuard on the
# lighthouse drops b's handshakes (no peer for b's key) and gossip runs
# inside WireGuard, so b can reach nobody - until b hands its newest ops to
# the lighthouse's UDP 51821 and the lighthouse takes b's Enroll.
#
# The lighthouse is enrolled by DNS name (lh.test), which b resolves through
# its namespace's /etc/hosts (ip netns exec mounts /etc/netns/NS/hosts).
#
#   tests/e2e/handover_test.sh path/to/fortmesh
set -euo pipefail
here=$(dirname "$(readlink -f "$0")")
source "$here/lib.sh"
e2e_start "$1"

for h in root lh b; do mesh_add_host "$h"; fm "$h" keygen >/dev/null; done
for h in root lh b; do
  mkdir -p "/etc/netns/$(ns_of "$h")"
  echo "${MESH_IP[lh]} lh.test" >"/etc/netns/$(ns_of "$h")/hosts"
done
cleanup_hosts() { for h in root lh b; do rm -rf "/etc/netns/$(ns_of "$h")"; done; }
trap 'cleanup_hosts; mesh_cleanup' EXIT

fm root org init --name handover >/dev/null
fm root enroll "$(fm lh pubkey)" --name lh --role lighthouse --endpoint lh.test:51820 --out "$MESH_DIR/lh.join" >/dev/null
fm lh join "$MESH_DIR/lh.join" >/dev/null
mesh_start root
mesh_start lh --handover-listen off
wait_for 30 ping_overlay root lh || fail "the root cannot reach the lighthouse"
grep -q "lighthouse endpoint lh.test:51820 resolves to ${MESH_IP[lh]}:51820" "$MESH_DIR/root.log" ||
  fail "the root did not resolve the lighthouse's DNS name"
mesh_stop root
# The root's admin enrolls b offline: nothing reaches the lighthouse.
fm root enroll "$(fm b pubkey)" --name b --out "$MESH_DIR/b.join" >/dev/null
fm b join "$MESH_DIR/b.join" >/dev/null
b_key=$(fm b pubkey)

mesh_start b
# Control: with the lighthouse taking no hand-overs, b stays cut off and says so.
wait_for 25 grep -q "warning.*no peer reachable" "$MESH_DIR/b.log" || fail "b did not warn that it reaches no peer"
grep "warning.*no peer reachable" "$MESH_DIR/b.log" | head -1
grep -q "lh at ${MESH_IP[lh]}:51820" "$MESH_DIR/b.log" || fail "b's warning does not name what it tried"
fm lh members --json | grep -q "$b_key" && fail "the lighthouse knew b without a hand-over"
ping_overlay b lh >/dev/null 2>&1 && fail "b reached the lighthouse without a hand-over"

mesh_stop lh
t0=$(date +%s.%N)
mesh_start lh
wait_for 40 ping_overlay b lh || fail "b never reached the lighthouse after handing over its enrollment"
t1=$(date +%s.%N)
grep -q "hand-over from ${MESH_IP[b]}: " "$MESH_DIR/lh.log" || fail "the lighthouse's log names no hand-over from b"
fm lh status --json | python3 -c '
import json, sys
s = json.load(sys.stdin)
assert int(s.get("handover_ops_applied", 0)) >= 1, s
' || fail "the lighthouse's status counts no hand-over"
wait_for 20 ping_overlay lh b || fail "the lighthouse cannot reach b"
printf 'figure: hand-over: b reached the lighthouse %.1f s after the lighthouse took hand-overs\n' \
  "$(python3 -c "print($t1 - $t0)")"
echo "PASS: an enrollment nobody heard of is handed over outside the tunnel (and refused when the lighthouse takes none)"
