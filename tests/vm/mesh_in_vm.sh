#!/bin/sh
# Inside the VM (tests/vm/run.sh): two fortmesh daemons on the kernel
# WireGuard backend in two network namespaces. They join, ping each other
# over their overlay addresses, and a revocation removes the peer.
#
#   mesh_in_vm.sh /path/to/fortmesh /path/to/iproute2/ip
set -eu
fm=$1
ip=$2
fail() { echo "FAIL: $*"; exit 1; }
wait_for() {  # seconds, command...
  n=$(( $1 * 5 )); shift
  while ! "$@" >/dev/null 2>&1; do
    n=$(( n - 1 )); [ "$n" -gt 0 ] || return 1
    sleep 0.2
  done
}

$ip netns add a
$ip netns add b
$ip link add va type veth peer name vb
$ip link set va netns a
$ip link set vb netns b
$ip -n a addr add 10.0.0.1/24 dev va
$ip -n b addr add 10.0.0.2/24 dev vb
for n in a b; do $ip -n $n link set lo up; $ip -n $n link set v$n up; mkdir -m 700 /tmp/$n; $fm keygen --state-dir /tmp/$n >/dev/null; done

$fm org init --name vm --state-dir /tmp/a >/dev/null
$fm enroll "$($fm pubkey --state-dir /tmp/b)" --name b --role lighthouse --endpoint 10.0.0.2:51820 \
  --out /tmp/b.join --state-dir /tmp/a >/dev/null
$fm join /tmp/b.join --state-dir /tmp/b >/dev/null
$ip netns exec a $fm run --wg-backend kernel --interface wga --state-dir /tmp/a >/tmp/a.log 2>&1 &
$ip netns exec b $fm run --wg-backend auto --interface wgb --state-dir /tmp/b >/tmp/b.log 2>&1 &

addr_of() { $fm members --json --state-dir /tmp/a | grep -A4 "\"name\": \"$1\"" | sed -n 's/.*"address": "\(.*\)".*/\1/p'; }
a_addr=$(addr_of root)
b_addr=$(addr_of b)
echo "a $a_addr, b $b_addr"
ping6_from() { $ip netns exec "$1" ping -6 -c 1 -W 1 "$2" 2>/dev/null || $ip netns exec "$1" ping6 -c 1 -W 1 "$2"; }
wait_for 60 ping6_from a "$b_addr" || { cat /tmp/a.log /tmp/b.log; fail "a cannot ping b over the overlay"; }
wait_for 30 ping6_from b "$a_addr" || fail "b cannot ping a over the overlay"
echo "overlay ping both ways over kernel WireGuard"
grep -q "auto: the kernel has WireGuard" /tmp/b.log || fail "--wg-backend auto did not pick the kernel"
$fm status --state-dir /tmp/a | grep -q "wireguard wga, 1 peers" || fail "status: $($fm status --state-dir /tmp/a)"

$fm revoke b --reason vm --state-dir /tmp/a | grep -q "running daemon" || fail "revoke did not go through the daemon"
gone() { $fm status --state-dir /tmp/a | grep -q "wireguard wga, 0 peers"; }
wait_for 10 gone || fail "the revoked peer is still configured at a"
if ping6_from a "$b_addr" >/dev/null 2>&1; then fail "a still reaches the revoked b"; fi
echo "revoked: peer removed, ping fails"
kill %1 %2 2>/dev/null || true
wait
echo PASS
