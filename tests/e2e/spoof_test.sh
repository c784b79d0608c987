#!/usr/bin/env bash
# End to end: gossip believes only datagrams that came through WireGuard.
# A host on the same LAN, not in the org, sends datagrams to the root's
# overlay address through the underlay, with member b's overlay address as
# source. Linux delivers them (the address is local, if on another
# interface); the root's daemon must drop every one as "not through
# WireGuard" and hand none to gossip (which would count them as b's junk, or
# answer b).
#
#   tests/e2e/spoof_test.sh path/to/fortmesh
set -euo pipefail
here=$(dirname "$(readlink -f "$0")")
source "$here/lib.sh"
e2e_start "$1"

for h in root b x; do mesh_add_host "$h"; done
for h in root b; do fm "$h" keygen >/dev/null; done
fm root org init --name spoof >/dev/null
# b is a lighthouse so that the root knows where to reach it before any gossip.
fm root enroll "$(fm b pubkey)" --name b --role lighthouse --endpoint "${MESH_IP[b]}:51820" --out "$MESH_DIR/b.join" >/dev/null
fm b join "$MESH_DIR/b.join" >/dev/null
for h in root b; do mesh_start "$h"; done
wait_for 60 ping_overlay b root || fail "b cannot reach root over the overlay"

root_overlay=$(overlay_of root)
b_overlay=$(overlay_of b)
x_ns=$(ns_of x)
x_if=$(ip -n "$x_ns" -o link show | awk -F': ' '/fmv/ {print $2}' | cut -d@ -f1)
root_ll=$(ip -n "$(ns_of root)" -6 -o addr show scope link | awk '/fmv/ {print $4}' | cut -d/ -f1)
[ -n "$root_ll" ] || fail "root has no link-local address on its underlay"
# x claims b's overlay address and routes the root's overlay address to the
# root's underlay interface.
ip -n "$x_ns" addr add "$b_overlay/128" dev "$x_if" nodad
ip -n "$x_ns" -6 route add "$root_overlay/128" via "$root_ll" dev "$x_if"

counter() {  # status field of the root's daemon
  fm root status --json | python3 -c 'import json,sys; print(int(json.load(sys.stdin).get(sys.argv[1], 0)))' "$1"
}
junk0=$(counter gossip_junk)
wrong0=$(counter gossip_wrong_interface)

ip netns exec "$x_ns" python3 - "$b_overlay" "$root_overlay" <<'PY'
import socket, sys, time
src, dst = sys.argv[1], sys.argv[2]
s = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
s.bind((src, 0))
for _ in range(3):
    s.sendto(b"\x12\x05\x08\x01\x12\x01\x00 spoofed summary", (dst, 51821))
    time.sleep(0.05)
PY
sleep 1
# Gossip must not have taken them as b's (before the fix: 3 more junk)...
[ "$(counter gossip_junk)" -eq "$junk0" ] || fail "gossip took spoofed datagrams as b's ($(counter gossip_junk) junk, was $junk0)"
# ...and the root counts them: they reached its socket and were dropped.
[ "$(counter gossip_wrong_interface)" -ge $(( wrong0 + 3 )) ] ||
  fail "the spoofed datagrams were not counted as 'not through WireGuard' ($(counter gossip_wrong_interface) - $wrong0)"
# The tunnel still works.
ping_overlay b root >/dev/null || fail "b no longer reaches root"
echo "PASS: 3 spoofed datagrams dropped as not through WireGuard; gossip saw none"
