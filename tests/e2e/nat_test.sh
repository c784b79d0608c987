#!/usr/bin/env bash
# The NAT topology helper (nat_lib.sh) checked with plain UDP, no fortmesh:
# each NAT mode maps and filters as docs/nat-testing.md says, hole punching
# succeeds or fails per pair of modes as RELAY.md section 3's table says,
# and nat_block_udp cuts UDP both ways (TCP untouched) until nat_unblock_udp.
#
#   tests/e2e/nat_test.sh
#
# Needs root, iproute2, nftables and python3. Exit 77 (a skip for ctest)
# with the reason when they are missing.
set -euo pipefail
here=$(dirname "$(readlink -f "$0")")

if [ "$(id -u)" -ne 0 ]; then echo "SKIP: needs root for network namespaces"; exit 77; fi
for tool in ip nft python3; do
  command -v "$tool" >/dev/null || { echo "SKIP: $tool is not installed (scripts/setup.sh)"; exit 77; }
done

source "$here/lib.sh"
source "$here/nat_lib.sh"
nat_init
step() { echo "== $*"; }

# Every check runs; the test fails at the end if any did.
failures=0
pass() { echo "ok   $1${2:+ ($2)}"; }
flunk() { echo "FAIL $1${2:+ ($2)}"; failures=$(( failures + 1 )); }
expect() {  # expect WHAT CMD...: CMD succeeds
  local what=$1 out; shift
  if out=$("$@" 2>&1); then pass "$what" "$out"; else flunk "$what" "$out"; fi
}
expect_not() {  # expect_not WHAT CMD...: CMD fails
  local what=$1 out; shift
  if out=$("$@" 2>&1); then flunk "$what" "$out"; else pass "$what" "$out"; fi
}
same() {  # same WHAT A B
  if [ "$2" = "$3" ]; then pass "$1" "$2"; else flunk "$1" "$2 vs $3"; fi
}

# The real interpreter, not a version manager's shim: a probe is one
# interpreter start, and a shim costs a quarter of a second of it.
PY=$(python3 -c 'import sys; print(sys.executable)')
probe() {  # probe NAME COMMAND ARGS...: a command to NAME's agent (nat_probe.py)
  local name=$1; shift
  "$PY" -I -S "$here/nat_probe.py" ctl "$MESH_DIR/$name.ctl" "$@"
}

step "sites: reflectors r1 r2 and a stranger x in public; two easy, a full cone, two symmetric"
SITES=(r1:none r2:none x:none e1:easy e2:easy f:fullcone s1:symmetric s2:symmetric)
declare -A PORT=([r1]=3478 [r2]=3478 [x]=40000)
for s in "${SITES[@]}"; do
  name=${s%%:*}
  nat_add_site "$name" "${s#*:}"
  port=${PORT[$name]:-51820}
  PORT[$name]=$port
  tcp=()
  [ "$name" != r1 ] || tcp=(443)  # for nat_block_udp's "TCP untouched"
  # Not through the nat_exec function: in the background it would run in a
  # subshell, and the cleanup's TERM to $! would leave the agent running.
  ip netns exec "$(ns_of "$name")" "$PY" -I -S "$here/nat_probe.py" agent "$MESH_DIR/$name.ctl" "$port" \
    "${tcp[@]}" >>"$MESH_DIR/$name.log" 2>&1 &
  MESH_PID[$name]=$!
done
for s in "${SITES[@]}"; do
  name=${s%%:*}
  wait_for 10 test -S "$MESH_DIR/$name.ctl" || { echo "FAIL: $name's probe agent did not start"; exit 1; }
done
R1="$(nat_public_ip r1):3478" R2="$(nat_public_ip r2):3478" X="$(nat_public_ip x):40000"

step "reflection: the mapping each node's socket gets toward r1 and toward r2"
declare -A TO_R1=() TO_R2=()
for n in e1 e2 f s1 s2; do
  TO_R1[$n]=$(probe "$n" ask "$R1" 1 | sed -n 's/^ok //p')
  TO_R2[$n]=$(probe "$n" ask "$R2" 1 | sed -n 's/^ok //p')
  echo "   $n (${NAT_MODE[$n]}, ${MESH_IP[$n]}:${PORT[$n]}): via r1 ${TO_R1[$n]:-none}, via r2 ${TO_R2[$n]:-none}"
done
for n in e1 e2; do
  same "easy ($n): endpoint-independent mapping, r1 and r2 see one address:port" "${TO_R1[$n]}" "${TO_R2[$n]}"
  same "easy ($n): masquerade keeps the source port" "${TO_R1[$n]}" "$(nat_public_ip "$n"):${PORT[$n]}"
done
same "fullcone: endpoint-independent mapping, r1 and r2 see one address:port" "${TO_R1[f]}" "${TO_R2[f]}"
same "fullcone: the mapping is the WAN address and the node's port" "${TO_R1[f]}" "$(nat_public_ip f):${PORT[f]}"
for n in s1 s2; do
  if [ -n "${TO_R1[$n]}" ] && [ "${TO_R1[$n]%:*}" = "${TO_R2[$n]%:*}" ] && [ "${TO_R1[$n]}" != "${TO_R2[$n]}" ]; then
    pass "symmetric ($n): endpoint-dependent mapping, another port toward r2" "${TO_R1[$n]} vs ${TO_R2[$n]}"
  else
    flunk "symmetric ($n): endpoint-dependent mapping, another port toward r2" "${TO_R1[$n]:-none} vs ${TO_R2[$n]:-none}"
  fi
done
same "none: r1 sees x's own address:port, untranslated" "$(probe x ask "$R1" 1 | sed -n 's/^ok //p')" "$X"

step "filtering: datagrams nobody asked for, to each mapping"
probe x send "${TO_R1[e1]}" u-e1 >/dev/null
expect_not "easy: unsolicited datagram from a third host (x) is dropped" probe e1 heard u-e1 0.3
probe r1 send "${TO_R1[e1]}" u-e1-port 3479 >/dev/null
expect_not "easy: port-dependent filtering, r1's address from another port is dropped" probe e1 heard u-e1-port 0.3
probe x send "${TO_R1[f]}" u-f >/dev/null
expect "fullcone: unsolicited datagram from a third host (x) arrives" probe f heard u-f 0.3
probe x send "${TO_R1[s1]}" u-s1 >/dev/null
expect_not "symmetric: unsolicited datagram from a third host (x) to the mapping r1 saw is dropped" probe s1 heard u-s1 0.3
probe r1 send "$X" u-x >/dev/null
expect "none: unsolicited datagram from r1 reaches x directly" probe x heard u-x 0.3

# punch A B: A and B send to each other's mapping as r1 saw it, at once, for
# up to 2 s (a pair that works is through in a few tens of ms); each succeeds
# when its hello is answered. Both succeed or the pair fails.
punch() {
  local a=$1 b=$2 ta="p-$1-$2" tb="p-$2-$1" ra rb
  local to_a=${TO_R1[$a]:-$(nat_public_ip "$a"):${PORT[$a]}}
  local to_b=${TO_R1[$b]:-$(nat_public_ip "$b"):${PORT[$b]}}
  probe "$a" punch "$to_b" "$ta" "$tb" 2.0 >"$MESH_DIR/$ta.out" &
  local pa=$!
  probe "$b" punch "$to_a" "$tb" "$ta" 2.0 >"$MESH_DIR/$tb.out" &
  local pb=$!
  wait "$pa" && ra=0 || ra=$?
  wait "$pb" && rb=0 || rb=$?
  echo "$a: $(cat "$MESH_DIR/$ta.out"); $b: $(cat "$MESH_DIR/$tb.out")"
  [ "$ra" -eq 0 ] && [ "$rb" -eq 0 ]
}

step "hole punching: both sides send to the other's reflected mapping"
expect "easy<->easy: hole punching works" punch e1 e2
expect "easy<->fullcone: hole punching works" punch e2 f
expect "fullcone<->symmetric: hole punching works (the full cone answers the symmetric side's real port)" punch f s1
expect "none<->symmetric: direct works (x answers the symmetric side's real port)" punch x s2
expect_not "symmetric<->symmetric: hole punching fails" punch s1 s2
expect_not "easy<->symmetric: hole punching fails" punch e1 s2

step "nat_block_udp / nat_unblock_udp on the full cone site and on a public host"
nat_block_udp f allow-tcp-443
expect_not "block (fullcone f): its UDP out to r1 is dropped" probe f ask "$R1" 0.5
probe x send "${TO_R1[f]}" b-f >/dev/null
expect_not "block (fullcone f): UDP in from x is dropped" probe f heard b-f 0.3
expect "block (fullcone f) allow-tcp-443: TCP to r1:443 still connects" probe f tcp "$(nat_public_ip r1):443" 1
nat_unblock_udp f
same "unblock (fullcone f): UDP out to r1 works again, same mapping" "$(probe f ask "$R1" 1 | sed -n 's/^ok //p')" "${TO_R1[f]}"
probe x send "${TO_R1[f]}" ub-f >/dev/null
expect "unblock (fullcone f): UDP in from x arrives again" probe f heard ub-f 0.3
nat_block_udp x
expect_not "block (none x): its UDP out to r1 is dropped" probe x ask "$R1" 0.5
probe r1 send "$X" b-x >/dev/null
expect_not "block (none x): UDP in from r1 is dropped" probe x heard b-x 0.3
nat_unblock_udp x
expect "unblock (none x): UDP out to r1 works again" probe x ask "$R1" 1
probe r1 send "$X" ub-x >/dev/null
expect "unblock (none x): UDP in from r1 arrives again" probe x heard ub-x 0.3

if [ "$failures" -ne 0 ]; then echo "FAIL: $failures check(s) failed"; exit 1; fi
echo "PASS"
