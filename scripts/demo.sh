#!/usr/bin/env bash
# The main job: a live local mesh on real WireGuard tunnels (wireguard-go) in
# network namespaces, on built-in defaults. An admin creates an org; a
# lighthouse and three nodes join from their bundles; their daemons converge;
# every node pings every other over its overlay address; the admin revokes a
# node and it is cut off everywhere. Everything it starts is removed at exit.
# Needs root (namespaces, TUN devices): it re-runs itself with sudo if needed.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "$(id -u)" -ne 0 ]; then exec sudo "$0" "$@"; fi
./scripts/build.sh >/dev/null
source tests/e2e/lib.sh
mesh_init build/fortmesh
show() { printf '\n$ %s\n' "$*"; "$@" | sed "s#$MESH_DIR/##g"; }

ALL=(admin lighthouse alice bob carol)
for h in "${ALL[@]}"; do mesh_add_host "$h"; fm "$h" keygen >/dev/null; done
echo "== five hosts (network namespaces on one bridge, underlay 10.$MESH_NET.0.0/24), each with a key"

echo; echo "== the admin creates the org and enrolls a lighthouse and three nodes"
show fm admin org init --name acme
show fm admin enroll "$(fm lighthouse pubkey)" --name lighthouse --role lighthouse \
  --endpoint "${MESH_IP[lighthouse]}:51820" --out "$MESH_DIR/lighthouse.join"
for n in alice bob carol; do
  fm admin enroll "$(fm "$n" pubkey)" --name "$n" --out "$MESH_DIR/$n.join" >/dev/null
done
echo "(alice, bob and carol enrolled the same way)"

echo; echo "== each joins from its bundle, then every host starts its daemon"
for h in lighthouse alice bob carol; do fm "$h" join "$MESH_DIR/$h.join" >/dev/null; done
for h in "${ALL[@]}"; do mesh_start "$h"; done
complete() { for h in "${ALL[@]}"; do [ "$(wg_peers "$h" | wc -l)" -eq 4 ] || return 1; done; }
wait_for 30 complete || { echo "the mesh did not converge"; exit 1; }
show fm alice members
show wg show "${MESH_IF[alice]}"

echo; echo "== every host pings every other over the overlay"
for a in "${ALL[@]}"; do
  line="$a:"
  for b in "${ALL[@]}"; do
    [ "$a" = "$b" ] && continue
    if wait_for 20 ping_overlay "$a" "$b"; then line+=" $b ok"; else line+=" $b FAILED"; fi
  done
  echo "  $line"
done

echo; echo "== the admin revokes bob; its running daemon stores the Revoke and gossips it at once"
bob_wg=$(wg_key_of bob)
show fm admin revoke bob --reason "laptop lost"
gone() { for h in admin lighthouse alice carol; do ! wg_peers "$h" | grep -qx "$bob_wg" || return 1; done; }
if wait_for 30 gone; then echo "bob's peer is gone from every other host"; else echo "bob is still a peer somewhere"; exit 1; fi
for h in alice carol; do
  if ip netns exec "$(ns_of bob)" ping -6 -c 1 -W 1 "$(overlay_of "$h")" >/dev/null 2>&1; then
    echo "  bob -> $h: still reachable (unexpected)"; exit 1
  else
    echo "  bob -> $h: cut off"
  fi
done
show fm carol members
show fm carol status
show fm carol peers

echo; echo "demo finished; stopping the daemons and removing the namespaces"
