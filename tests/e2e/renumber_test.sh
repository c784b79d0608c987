#!/usr/bin/env bash
# End to end: a node's signed endpoint record follows its addresses. Renumber
# n1's underlay address: its record (as its own status shows, and as the root
# learns it by gossip) names the new address within 1 s, and its tunnels
# recover. --advertise endpoints come first in the record. Then the double
# jump: the root and n1 change address at the same moment, so neither can
# find the other by WireGuard's roaming alone; their new signed records, by
# way of the lighthouse, bring the tunnel back (target: within 5 s).
#
#   tests/e2e/renumber_test.sh path/to/fortmesh
set -euo pipefail
here=$(dirname "$(readlink -f "$0")")
source "$here/lib.sh"
e2e_start "$1"
fail() { echo "FAIL: $*"; grep -h "announcing" "$MESH_DIR"/n1.log; exit 1; }

for h in root lh n1; do mesh_add_host "$h"; fm "$h" keygen >/dev/null; done
fm root org init --name renumber >/dev/null
# The lighthouse's first enrolled endpoint is dead: nodes must move on to the
# second within about 6 s (the path selector's probe timeout).
dead="${MESH_IP[lh]%.*}.250:51820"
fm root enroll "$(fm lh pubkey)" --name lh --role lighthouse --endpoint "$dead" --endpoint "${MESH_IP[lh]}:51820" \
  --out "$MESH_DIR/lh.join" >/dev/null
fm root enroll "$(fm n1 pubkey)" --name n1 --out "$MESH_DIR/n1.join" >/dev/null
for h in lh n1; do fm "$h" join "$MESH_DIR/$h.join" >/dev/null; done
mesh_start root
mesh_start lh
wait_for 30 ping_overlay root lh || fail "root cannot reach the lighthouse"
t0=$(date +%s%N)
mesh_start n1 --advertise 198.51.100.7:40000
# n1 knows only the lighthouse's enrolled endpoints (its bundle has no record).
lh_wg=$(wg_key_of lh)
handshake_with_lh() { [ "$(wg show "${MESH_IF[n1]}" latest-handshakes 2>/dev/null | awk -v k="$lh_wg" '$1 == k {print $2}')" -gt 0 ] 2>/dev/null; }
wait_for 30 handshake_with_lh || fail "n1 never reached the lighthouse past its dead first endpoint"
abandon=$(python3 -c "print(f'{($(date +%s%N) - $t0) / 1e9:.1f}')")
echo "figure: dead first candidate abandoned: n1's first handshake with the lighthouse $abandon s after start"
python3 -c "import sys; sys.exit(0 if $abandon <= 14 else 1)" || fail "moving past a dead candidate took $abandon s"
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
# Recovery time: the first overlay ping root -> n1 that gets through.
recovered_after() {  # recovered_after T0_NS FROM TO: seconds until FROM pings TO (60 s at most)
  local t0=$1 from=$2 to=$3 end=$(( $(date +%s) + 60 ))
  while [ "$(date +%s)" -lt "$end" ]; do
    if ip netns exec "$(ns_of "$from")" ping -6 -c 1 -W 0.3 "$(overlay_of "$to")" >/dev/null 2>&1; then
      python3 -c "print(f'{($(date +%s%N) - $t0) / 1e9:.1f}')"
      return 0
    fi
  done
  return 1
}
single=$(recovered_after "$t0" root n1) || fail "the tunnel root-n1 did not recover"
[ -z "${KEEP_LOGS:-}" ] || cp -r "$MESH_DIR" /tmp/renumber-logs
echo "figure: single address change: root reaches n1 again after $single s"
wait_for 20 ping_overlay n1 lh || fail "the tunnel n1-lh did not recover"
wait_for 10 root_sees || fail "the root's WireGuard does not use n1's new address"

# The double jump: both ends of a working tunnel move at once.
renumber() {  # renumber NAME NEW_ADDRESS
  local ns dev; ns=$(ns_of "$1")
  dev=$(ip -n "$ns" -o link show | awk -F': ' '/fmv/ {print $2}' | cut -d@ -f1)
  ip -n "$ns" addr flush dev "$dev"
  ip -n "$ns" addr add "$2/24" dev "$dev"
}
root_new=${MESH_IP[root]%.*}.$(( ${MESH_IP[root]##*.} + 150 ))
n1_new=${new%.*}.$(( ${new##*.} + 50 ))
t0=$(date +%s%N)
renumber root "$root_new" & p1=$!
renumber n1 "$n1_new" & p2=$!
wait "$p1" "$p2"  # (a bare wait would wait for the daemons too)
a=$(recovered_after "$t0" root n1) || fail "double jump: root never reached n1 again"
b=$(recovered_after "$t0" n1 root) || fail "double jump: n1 never reached root again"
echo "figure: double jump: root reaches n1 after $a s, n1 reaches root after $b s"
# The target is 5 s; a loaded CI machine gets twice that before it fails.
python3 -c "import sys; sys.exit(0 if max($a, $b) <= 10.0 else 1)" || fail "the double jump took more than 10 s"
python3 -c "import sys; sys.exit(0 if max($a, $b) <= 5.0 else 1)" || echo "NOTE: the double jump took more than the 5 s target"
echo "PASS: record followed the renumbering in ${ms} ms; tunnels recovered (single $single s, double jump $a/$b s)"
