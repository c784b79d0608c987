# The end-to-end harness: real fortmesh daemons with real WireGuard
# (wireguard-go) in network namespaces on one bridge. Sourced by the e2e
# tests and by scripts/demo-mesh.sh.
#
#   mesh_init [FORTMESH_BINARY]    names, a work directory, the cleanup trap
#                                  (a test that runs no daemon passes none)
#   mesh_add_host NAME             a namespace on the bridge, underlay 10.N.0.i/24
#   fm NAME ARGS...                `fortmesh ARGS --state-dir <NAME's dir>`
#   mesh_start NAME [ARGS...]      `fortmesh run` in NAME's namespace (pid kept)
#   mesh_stop NAME                 SIGTERM, wait
#   overlay_of NAME                its overlay address
#   wg_peers NAME                  its WireGuard peers' public keys, one a line
#   wait_for SECONDS CMD...        until CMD succeeds; 1 on timeout
#
# Everything is named after this shell's pid, so parallel runs do not meet,
# and the EXIT trap removes what was started (daemons by pid, then the
# namespaces, which take their links and wireguard-go's TUNs with them).
# E2E_KEEP=DIR: the trap copies the work directory (logs, state) there first.
# Helpers that add namespaces of their own (nat_lib.sh's NAT routers) list
# them in MESH_NETNS so the same trap deletes them.
set -euo pipefail

# The start of every e2e test: root and the tools, or exit 77 (skipped) with
# the reason; then mesh_init. `fail MESSAGE` ends a test.
e2e_start() {
  if [ "$(id -u)" -ne 0 ]; then echo "SKIP: needs root for network namespaces"; exit 77; fi
  local tool
  for tool in ip wireguard-go wg python3; do
    command -v "$tool" >/dev/null || { echo "SKIP: $tool is not installed (scripts/setup.sh)"; exit 77; }
  done
  mesh_init "$1"
}
fail() { echo "FAIL: $*"; exit 1; }

mesh_init() {
  FM_BIN=""
  if [ $# -gt 0 ]; then FM_BIN=$(readlink -f "$1"); fi
  MESH_ID=$$
  MESH_NET=$(( MESH_ID % 200 + 20 ))  # underlay 10.$MESH_NET.0.0/24
  MESH_DIR=$(mktemp -d "/tmp/fortmesh-e2e-$MESH_ID-XXXX")
  MESH_HUB="fmh$MESH_ID"
  MESH_HOSTS=() MESH_NETNS=()
  declare -gA MESH_PID=() MESH_IP=() MESH_IF=()
  trap mesh_cleanup EXIT
  ip netns add "$MESH_HUB"
  ip -n "$MESH_HUB" link add br0 type bridge
  ip -n "$MESH_HUB" link set br0 up
}

mesh_cleanup() {
  local rc=$?
  set +e
  for h in "${!MESH_PID[@]}"; do
    kill -TERM "${MESH_PID[$h]}" 2>/dev/null
  done
  for h in "${!MESH_PID[@]}"; do
    wait "${MESH_PID[$h]}" 2>/dev/null
  done
  for h in "${MESH_HOSTS[@]}"; do
    ip netns del "fm$MESH_ID-$h" 2>/dev/null
    rm -f "/var/run/wireguard/${MESH_IF[$h]}.sock"
  done
  for ns in "${MESH_NETNS[@]}"; do
    ip netns del "$ns" 2>/dev/null
  done
  ip netns del "$MESH_HUB" 2>/dev/null
  if [ "$rc" -ne 0 ] && [ -d "$MESH_DIR" ]; then
    for log in "$MESH_DIR"/*.log; do
      [ -f "$log" ] || continue
      echo "---- $(basename "$log") (last 30 lines)"
      tail -n 30 "$log"
    done
  fi
  if [ -n "${E2E_KEEP:-}" ] && [ -d "$MESH_DIR" ]; then
    mkdir -p "$E2E_KEEP" && cp -a "$MESH_DIR" "$E2E_KEEP/" && echo "work directory kept in $E2E_KEEP/$(basename "$MESH_DIR")"
  fi
  rm -rf "$MESH_DIR"
  exit "$rc"
}

ns_of() { echo "fm$MESH_ID-$1"; }

mesh_add_host() {
  local name=$1 i=$(( ${#MESH_HOSTS[@]} + 1 ))
  local ns; ns=$(ns_of "$name")
  ip netns add "$ns"
  ip -n "$ns" link set lo up
  ip link add "fmv$MESH_ID$i" type veth peer name "fmb$MESH_ID$i"
  ip link set "fmv$MESH_ID$i" netns "$ns"
  ip link set "fmb$MESH_ID$i" netns "$MESH_HUB"
  ip -n "$MESH_HUB" link set "fmb$MESH_ID$i" master br0 up
  ip -n "$ns" addr add "10.$MESH_NET.0.$i/24" dev "fmv$MESH_ID$i"
  ip -n "$ns" link set "fmv$MESH_ID$i" up
  MESH_HOSTS+=("$name")
  MESH_IP[$name]="10.$MESH_NET.0.$i"
  MESH_IF[$name]="fmw$MESH_ID$i"
  mkdir -p "$MESH_DIR/$name"
  chmod 700 "$MESH_DIR/$name"
}

fm() {
  local name=$1; shift
  "$FM_BIN" "$@" --state-dir "$MESH_DIR/$name"
}

mesh_start() {
  local name=$1; shift
  ip netns exec "$(ns_of "$name")" "$FM_BIN" run --state-dir "$MESH_DIR/$name" \
    --interface "${MESH_IF[$name]}" "$@" >>"$MESH_DIR/$name.log" 2>&1 &
  MESH_PID[$name]=$!
}

mesh_stop() {
  local name=$1
  kill -TERM "${MESH_PID[$name]}"
  wait "${MESH_PID[$name]}" || true
  unset "MESH_PID[$name]"
}

overlay_of() {
  fm "$1" members --json | python3 -c '
import json, sys
me = sys.argv[1]
for m in json.load(sys.stdin).get("members", []):
    if m.get("key") == me:
        print(m["address"])
' "$(fm "$1" pubkey)"
}

wg_peers() { wg show "${MESH_IF[$1]}" peers 2>/dev/null || true; }
wg_key_of() { wg show "${MESH_IF[$1]}" public-key; }

wait_for() {
  local seconds=$1; shift
  local deadline=$(( $(date +%s) + seconds ))
  until "$@" >/dev/null 2>&1; do
    [ "$(date +%s)" -lt "$deadline" ] || return 1
    sleep 0.2
  done
}

# ping6 from one host's namespace to another's overlay address.
ping_overlay() { ip netns exec "$(ns_of "$1")" ping -6 -c 1 -W 1 "$(overlay_of "$2")"; }
