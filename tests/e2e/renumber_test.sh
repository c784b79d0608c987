#!/usr/bin/env bash
# End to end: a node's signed endpoint record follows its addresses. Renumber
# n1's underlay address: its record (as its own status shows, and as the root
# learns it by gossip) names the new address within 1 s, and its tunnels
# recover. --advertise endpoints come first in the record.
#
#   tests/e2e/renumber_test.sh path/to/fortmesh
set -euo pipefail
here=$(dirname "$(readlink -f "$0")")
source "$here/lib.sh"
e2e_start "$1"
fail() { echo "FAIL: $*"; grep -h "announcing" "$MESH_DIR"/n1.log; exit 1; }

for h in root lh n1; do mesh_add_host "$h"; fm "$h" keygen >/dev/null; done
fm root org init --name renumber >/dev/null
fm root enroll "$(fm lh pubkey)" --name lh --role lighthouse --endpoint "${MESH_IP[lh]}:51820" --out "$MESH_DIR/lh.join" >/dev/null
fm root enroll "$(fm n1 pubkey)" --name n1 --out "$MESH_DIR/n1.join" >/dev/null
for h in lh n1; do fm "$h" join "$MESH_DIR/$h.join" >/dev/null; done
mesh_start root
mesh_start lh
mesh_start n1 --advertise 198.51.100.7:40000
wait_for 60 ping_overlay root n1 || fail "root cannot reach n1"

endpoints() { fm "$1" status --json | python3 -c 'import json,sys; print(" ".join(json.load(sys.stdin).get("endpoints", [])))'; }
first=$(endpoints n1 | cut -d' ' -f1)
[ "$first" = "198.51.100.7:40000" ] || fail "the advertised endpoint is not first: $(endpoints n1)"

ns=$(ns_of n1)
dev=$(ip -n "$ns" -o link show | awk -F': ' '/fmv/ {print $2}' | cut -d@ -f1)
old=${MESH_IP[n1]}
new=${old%.*}.$(( ${old##*.} + 100 ))
t0=$(date +%s%N)
# (Deleting a subnet's primary address deletes its secondaries too: the new
# address comes after the old one is gone, as with a new DHCP lease.)
ip -n "$ns" addr del "$old/24" dev "$dev"
ip -n "$ns" addr add "$new/24" dev "$dev"
has_new() { endpoints n1 | grep -q "$new:51820" && ! endpoints n1 | grep -q "$old:51820"; }
wait_for 5 has_new || fail "n1's record does not follow its address: $(endpoints n1)"
# When it was re-signed: the daemon's own log line (local time, ms), not this
# test's polling.
ms=$(python3 - "$t0" "$MESH_DIR/n1.log" <<'PY'
import sys, datetime
t0 = int(sys.argv[1]) / 1e9
last = [l for l in open(sys.argv[2]) if "announcing" in l][-1]
t = datetime.datetime.strptime(last[1:24], "%Y-%m-%d %H:%M:%S.%f").timestamp()
print(int((t - t0) * 1000))
PY
)
echo "record re-signed with $new ${ms} ms after the change (from the daemon's log)"
[ "$ms" -le 1000 ] || fail "the record took ${ms} ms (target: within 1 s)"
# The root hears of it by gossip, and the tunnels recover.
root_sees() {
  fm root members --json >/dev/null  # (the daemon answers)
  ip netns exec "$(ns_of root)" wg show "${MESH_IF[root]}" endpoints | grep -q "$new:"
}
wait_for 20 ping_overlay root n1 || fail "the tunnel root-n1 did not recover"
wait_for 20 ping_overlay n1 lh || fail "the tunnel n1-lh did not recover"
wait_for 10 root_sees || fail "the root's WireGuard does not use n1's new address"
echo "PASS: record followed the renumbering in ${ms} ms; tunnels recovered"
