#!/bin/sh
# Inside the VM (tests/vm/run.sh): the lighthouse relay on the kernel
# WireGuard backend. Three network namespaces: the lighthouse `lh` on two
# links, one to `a` (10.0.1.0/24) and one to `b` (10.0.2.0/24), and it does
# not forward between them, so `a` and `b` have no direct path. All three run
# kernel WireGuard; `lh` runs `--lighthouse` (relay on UDP 51822, TCP 443).
#
#   1. a <-> b go relayed through lh over UDP (`peers --json`: path
#      "relayed", relay "lh udp") and ping each other over the overlay: the
#      kernel's WireGuard sends to the loopback proxy address (127.128.0.0/9)
#      and takes the answers from it, both ways: on a through the shared
#      proxy socket (IP_PKTINFO), on b through its fallback, a socket per
#      relayed peer (--relay-proxy per-peer).
#   2. a (the root) revokes b: a's peer to b is removed and the lighthouse
#      closes b's session; a's pings to b stop.
#
#   relay_in_vm.sh /path/to/fortmesh /path/to/iproute2/ip
set -eu
fm=$1
ip=$2
fail() { echo "FAIL: $*"; for n in lh a b; do echo "---- $n.log"; tail -n 30 /tmp/$n.log; done; exit 1; }
wait_for() {  # seconds, command...
  n=$(( $1 * 5 )); shift
  while ! "$@" >/dev/null 2>&1; do
    n=$(( n - 1 )); [ "$n" -gt 0 ] || return 1
    sleep 0.2
  done
}

for n in lh a b; do $ip netns add $n; done
$ip link add lh0 type veth peer name va
$ip link add lh1 type veth peer name vb
$ip link set lh0 netns lh; $ip link set lh1 netns lh
$ip link set va netns a; $ip link set vb netns b
$ip -n lh addr add 10.0.1.1/24 dev lh0
$ip -n lh addr add 10.0.2.1/24 dev lh1
$ip -n a addr add 10.0.1.2/24 dev va
$ip -n b addr add 10.0.2.2/24 dev vb
for n in lh a b; do
  $ip -n $n link set lo up
  for l in lh0 lh1 va vb; do $ip -n $n link set $l up 2>/dev/null || true; done
  mkdir -m 700 /tmp/$n
  $fm keygen --state-dir /tmp/$n >/dev/null
done
# The lighthouse is enrolled at 10.0.1.1; b reaches that address over its
# own link (a host route; lh answers for any of its addresses), and neither
# a nor b has a route to the other's subnet. lh's route back to b would pick
# 10.0.2.1 as the source: the relay answers b from 10.0.1.1, the address b's
# datagrams came to (IPV6_PKTINFO; docs/relay.md, "Its address"), or b's
# UDP session would fail.
$ip -n a route add 10.0.2.1/32 via 10.0.1.1
$ip -n b route add 10.0.1.1/32 via 10.0.2.1

$fm org init --name vm-relay --state-dir /tmp/a >/dev/null
$fm enroll "$($fm pubkey --state-dir /tmp/lh)" --name lh --role lighthouse --endpoint 10.0.1.1:51820 \
  --out /tmp/lh.join --state-dir /tmp/a >/dev/null
$fm enroll "$($fm pubkey --state-dir /tmp/b)" --name b --out /tmp/b.join --state-dir /tmp/a >/dev/null
$fm join /tmp/lh.join --state-dir /tmp/lh >/dev/null
$fm join /tmp/b.join --state-dir /tmp/b >/dev/null
$ip netns exec lh $fm run --wg-backend kernel --interface wgl --state-dir /tmp/lh --lighthouse \
  --log-level debug >/tmp/lh.log 2>&1 &
$ip netns exec a $fm run --wg-backend kernel --interface wga --state-dir /tmp/a --log-level debug >/tmp/a.log 2>&1 &
# b meets its kernel WireGuard through a socket per relayed peer (the
# fallback), a through the shared socket.
$ip netns exec b $fm run --wg-backend kernel --interface wgb --state-dir /tmp/b --log-level debug \
  --relay-proxy per-peer >/tmp/b.log 2>&1 &

addr_of() { $fm members --json --state-dir /tmp/a | grep -A4 "\"name\": \"$1\"" | sed -n 's/.*"address": "\(.*\)".*/\1/p'; }
a_addr=$(addr_of root)
b_addr=$(addr_of b)
echo "a $a_addr, b $b_addr"
ping6_from() { $ip netns exec "$1" ping -6 -c 1 -W 1 "$2" 2>/dev/null || $ip netns exec "$1" ping6 -c 1 -W 1 "$2"; }
# `peers --json` of $1: the entry named $2 on one line.
peer_of() { $fm peers --json --state-dir "/tmp/$1" | tr -d '\n' | tr '}' '\n' | grep "\"name\": \"$2\""; }
relayed() { peer_of "$1" "$2" | grep '"path": "relayed"' | grep -q '"relay": "lh udp"'; }

wait_for 90 ping6_from a "$b_addr" || fail "a cannot ping b through the relay"
wait_for 30 ping6_from b "$a_addr" || fail "b cannot ping a through the relay"
wait_for 10 relayed a b || fail "a's path to b: $(peer_of a b)"
wait_for 10 relayed b root || fail "b's path to a (root): $(peer_of b root)"
echo "relayed ping both ways over kernel WireGuard: $(peer_of a b | sed -n 's/.*"endpoint": "\([^"]*\)".*/endpoint \1/p')"
grep -q "a socket per relayed peer" /tmp/b.log || fail "b's relay proxy is not per peer"
grep -q "relay proxy on 127.128.0.0/9 port" /tmp/a.log || fail "a's relay proxy is not the shared socket"
relay_line() { $fm status --state-dir /tmp/lh | grep "^$1 "; }
relay_line relay | grep -q "sessions 2 udp" || fail "lighthouse: $(relay_line relay)"
relay_line relayed | grep -q "udp [1-9][0-9]* packets" || fail "lighthouse: $(relay_line relayed)"
echo "lighthouse: $(relay_line relay)"

$fm revoke b --reason vm --state-dir /tmp/a | grep -q "running daemon" || fail "revoke did not go through the daemon"
gone() { ! peer_of a b >/dev/null; }
wait_for 10 gone || fail "the revoked b is still a's peer"
if ping6_from a "$b_addr" >/dev/null 2>&1; then fail "a still reaches the revoked b"; fi
one_session() { relay_line relay | grep -q "sessions 1 udp"; }
wait_for 5 one_session || fail "the lighthouse kept b's session: $(relay_line relay)"
relay_line relayed | grep -q "1 closed by membership" || fail "lighthouse: $(relay_line relayed)"
echo "revoked: b's peer removed at a, ping fails, b's relay session closed"
kill %1 %2 %3 2>/dev/null || true
wait
echo PASS
