#!/usr/bin/env bash
# End to end: an org of three hosts on one LAN with no lighthouse forms a full
# mesh from its join bundles. The root's daemon runs when it enrolls the two
# others, so their bundles carry its signed endpoint record: they reach it,
# it learns theirs from WireGuard's handshakes, and gossip tells each about
# the other. (Before bundles carried records, no tunnel ever formed.)
#
#   tests/e2e/lan_test.sh path/to/fortmesh
set -euo pipefail
here=$(dirname "$(readlink -f "$0")")
source "$here/lib.sh"
e2e_start "$1"

for h in root b c; do mesh_add_host "$h"; fm "$h" keygen >/dev/null; done
fm root org init --name lan >/dev/null
mesh_start root
wait_for 10 fm root status || fail "the root's daemon did not start"
for h in b c; do
  fm root enroll "$(fm "$h" pubkey)" --name "$h" --out "$MESH_DIR/$h.join" >/dev/null
  fm "$h" join "$MESH_DIR/$h.join" | grep -q "endpoint records: 1" || fail "$h's bundle did not carry the root's record"
done
for h in b c; do mesh_start "$h"; done
for from in root b c; do
  for to in root b c; do
    [ "$from" = "$to" ] && continue
    wait_for 60 ping_overlay "$from" "$to" || fail "$from cannot reach $to over the overlay"
  done
done
echo "PASS: three LAN hosts, no lighthouse: all 6 directed pairs ping over the overlay"
