#!/usr/bin/env bash
# Benchmark (figures, not a test): iperf3 TCP through the overlay between two
# public nodes a -> b (wireguard-go), three ways in one run:
#   direct       a and b reach each other
#   relay-udp    UDP between a and b dropped on the bridge (nft, both ways):
#                path selection relays them through lh over UDP
#   relay-tcp    the same, and the lighthouse restarted with --relay-udp 0:
#                the relay sessions are TCP 443
# and the lighthouse daemon's CPU (utime+stime from /proc) per Gbit relayed,
# beside the floor under it measured in the same run: bench_udp_loopback (a
# loopback UDP hop that does nothing else: recvmmsg+sendmmsg, one by one, and
# GRO in with GSO runs out),
# when it is built beside the fortmesh binary given.
#
#   tests/e2e/bench_relay.sh path/to/fortmesh [SECONDS=10]
set -euo pipefail
here=$(dirname "$(readlink -f "$0")")
source "$here/lib.sh"
source "$here/nat_lib.sh"
command -v iperf3 >/dev/null || { echo "SKIP: iperf3 is not installed"; exit 77; }
nat_e2e_start "$1"
DUR=${2:-10}
step() { echo "== $(date +%T) $*"; }

for h in lh a b; do nat_add_site "$h" none; fm "$h" keygen >/dev/null; done
mkdir -m 700 "$MESH_DIR/root"
fm root keygen >/dev/null
fm root org init --name bench >/dev/null
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
ping_ok() { nat_exec "$1" ping -6 -c 1 -W 1 "${OVERLAY[$2]}" >/dev/null 2>&1; }
cpu_of() { awk '{print $14 + $15}' "/proc/$1/stat"; }  # clock ticks
relayed_bytes() { fm lh status --json | python3 -c '
import json, sys
r = json.load(sys.stdin).get("relay", {})
print(int(r.get("forwardedBytesUdp", r.get("forwarded_bytes_udp", 0))) + int(r.get("forwardedBytesTcp", r.get("forwarded_bytes_tcp", 0))))'; }

start_all() {
  mesh_start lh --wg-backend userspace --lighthouse "$@"
  for h in a b; do mesh_start "$h" --wg-backend userspace --log-level debug; done
}
stop_all() { for h in lh a b; do mesh_stop "$h"; done; }

block_ab() {
  ip netns exec "$MESH_HUB" nft -f - <<NFT
table bridge bench_ab {
 chain forward { type filter hook forward priority filter;
  ip saddr ${MESH_IP[a]} ip daddr ${MESH_IP[b]} meta l4proto udp drop
  ip saddr ${MESH_IP[b]} ip daddr ${MESH_IP[a]} meta l4proto udp drop
 }
}
NFT
}

run_case() {
  local name=$1 want=$2
  # A ping every 0.2 s meanwhile: a path in use, as when a flow runs.
  rm -f "$MESH_DIR/stop"
  nat_exec a timeout 70 bash -c "while [ ! -e $MESH_DIR/stop ]; do ping -6 -c 1 -W 1 ${OVERLAY[b]}; sleep 0.2; done" >/dev/null 2>&1 &
  local pinger=$! t0
  t0=$(date +%s.%N)
  wait_for 60 is_path a b "$want" || { touch "$MESH_DIR/stop"; echo "   $name: path a->b is '$(path_of a b)', not '$want'"; return 1; }
  touch "$MESH_DIR/stop"; wait "$pinger" 2>/dev/null || true
  echo "   $name: path a->b '$(path_of a b)' after $(python3 -c "import time; print(f'{time.time() - $t0:.1f}')") s"
  wait_for 10 ping_ok a b || { echo "   $name: no ping"; return 1; }
  nat_exec b iperf3 -s -1 -B "${OVERLAY[b]}" >/dev/null 2>&1 &
  local srv=$!
  sleep 0.5
  local lhpid=${MESH_PID[lh]} hz c0 c1 b0 b1
  hz=$(getconf CLK_TCK)
  c0=$(cpu_of "$lhpid"); b0=$(relayed_bytes)
  nat_exec a iperf3 -c "${OVERLAY[b]}" -t "$DUR" -J >"$MESH_DIR/$name.json"
  c1=$(cpu_of "$lhpid"); b1=$(relayed_bytes)
  wait "$srv" 2>/dev/null || true
  python3 - "$MESH_DIR/$name.json" "$name" "$(( c1 - c0 ))" "$hz" "$(( b1 - b0 ))" <<'PY'
import json, sys
j = json.load(open(sys.argv[1]))
mbit = j["end"]["sum_received"]["bits_per_second"] / 1e6
ticks, hz, relayed = int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
cpu = ticks / hz
gbit = relayed * 8 / 1e9
extra = f", lighthouse daemon {cpu:.2f} core-s for {gbit:.2f} Gbit relayed = {cpu / gbit:.2f} core-s/Gbit" if gbit > 0.01 else ""
print(f"figure: {sys.argv[2]}: {mbit:.0f} Mbit/s{extra}")
PY
}

step "direct"
start_all
run_case direct "@(direct|roamed)*"
step "relayed over UDP (UDP between a and b dropped)"
block_ab
run_case relay-udp "relayed lh udp"
step "relayed over TCP (lighthouse restarted with --relay-udp 0)"
stop_all
start_all --relay-udp 0
run_case relay-tcp "relayed lh tcp"
stop_all
loopback=$(dirname "$(readlink -f "$1")")/tests/bench/bench_udp_loopback
if [ -x "$loopback" ]; then
  step "the floor: a loopback UDP hop alone (bench_udp_loopback)"
  "$loopback" 3
else
  echo "   (no $loopback: the loopback baseline is not measured)"
fi
