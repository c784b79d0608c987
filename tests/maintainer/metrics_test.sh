#!/usr/bin/env bash
# The Prometheus endpoint of a real daemon (gossip only, on loopback), scraped
# with a real HTTP client and parsed with a real text-format parser
# (python3-prometheus-client): every family has HELP, and the values follow
# what the node does (an enroll, a revoke).
#
#   tests/maintainer/metrics_test.sh path/to/fortmesh
set -euo pipefail
FM=$(readlink -f "$1")
# In a network namespace of its own when it can (root): a real WireGuard
# interface, so that the reconcile and per-peer metrics are there too.
if [ -z "${FM_METRICS_NETNS:-}" ] && [ "$(id -u)" = 0 ] && unshare -n true 2>/dev/null; then
  exec unshare -n env FM_METRICS_NETNS=1 bash "$0" "$@"
fi
backend=none
if [ -n "${FM_METRICS_NETNS:-}" ]; then
  ip link set lo up
  if ip link add fmprobe0 type wireguard 2>/dev/null; then
    ip link del fmprobe0
    backend=kernel
  elif [ -c /dev/net/tun ] && [ -x /usr/bin/wireguard-go ]; then
    backend=userspace
  fi
fi
# Debian's interpreter, where Debian's python3-prometheus-client lives (a
# version manager's python3 may come first on PATH).
python3() { if [ -x /usr/bin/python3 ]; then /usr/bin/python3 "$@"; else command python3 "$@"; fi; }
python3 -c 'import prometheus_client' 2>/dev/null ||
  { echo "SKIP: python3-prometheus-client is not installed (scripts/setup.sh --tests)"; exit 77; }
dir=$(mktemp -d)
pid=""
trap '[ -z "$pid" ] || kill "$pid" 2>/dev/null; wait 2>/dev/null; rm -rf "$dir"' EXIT
fail() { echo "FAIL: $*"; echo "---- daemon log"; tail -20 "$dir/log"; exit 1; }

"$FM" keygen --state-dir "$dir/root" >/dev/null
"$FM" keygen --state-dir "$dir/b" >/dev/null
"$FM" org init --name metrics --state-dir "$dir/root" >/dev/null
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
free_udp() { python3 -c 'import socket; s=socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
gport=$(free_udp)
bport=$(free_udp)  # where b's gossip comes from (this script sends it)
echo "$("$FM" pubkey --state-dir "$dir/b") 127.0.0.1:$bport" >"$dir/peers"
"$FM" run --state-dir "$dir/root" --wg-backend "$backend" --interface fmmetrics0 --listen-port 51999 \
  --gossip-listen "127.0.0.1:$gport" --gossip-peers "$dir/peers" --handover-listen off \
  --metrics-listen "127.0.0.1:$port" >"$dir/log" 2>&1 &
pid=$!
for _ in $(seq 100); do "$FM" status --state-dir "$dir/root" >/dev/null 2>&1 && break; sleep 0.1; done

scrape() {  # scrape EXPR...: each a Python expression over m (family -> {labels: value}) that must hold
  python3 "$(dirname "$0")/../prom_scrape.py" "127.0.0.1:${scrape_port:-$port}" "$@"
}

reasons='["malformed", "oversized", "bad_signature", "wrong_org", "second_genesis", "no_org", "pending_full", "inadmissible"]'
kinds='["other", "ops", "summary", "want", "ranges", "records", "reflection"]'
scrape 'v("fortmesh_self_active") == 1' 'v("fortmesh_ops") == 1' 'v("fortmesh_members", standing="active") == 1' \
  'v("fortmesh_revocations_applied_total") == 0' 'len(m["fortmesh_membership_digest_info"]) == 1' \
  'list(m["fortmesh_build_info"])[0][0][1] == "'"$("$FM" --version | cut -d' ' -f2)"'"' \
  "all(v('fortmesh_ops_rejected_total', reason=r) == 0 for r in $reasons)" \
  "all(v('fortmesh_gossip_datagrams_by_kind_total', direction=d, kind=k) >= 0 for d in ['in', 'out'] for k in $kinds)" \
  "all(v('fortmesh_gossip_bytes_by_kind_total', direction=d, kind=k) >= 0 for d in ['in', 'out'] for k in $kinds)" \
  'v("fortmesh_member_checks_total", answer="active") == 0' 'v("fortmesh_member_checks_total", answer="refused") == 0' \
  'not [k for k in m if k.startswith("fortmesh_relay_")]' ||
  fail "a fresh org's metrics (and nothing relay: this node serves none)"
"$FM" enroll "$("$FM" pubkey --state-dir "$dir/b")" --name b --out "$dir/b.join" --state-dir "$dir/root" >/dev/null
if [ "$backend" != none ]; then
  scrape 'v("fortmesh_reconcile_runs_total") >= 1' 'v("fortmesh_reconcile_changes_total") >= 1' \
    'v("fortmesh_reconcile_errors_total") == 0' 'v("fortmesh_wireguard_peers") == 1' \
    "v('fortmesh_peer_handshake_age_seconds', peer='$("$FM" pubkey --state-dir "$dir/b" | cut -c1-8)', name='b') == -1" ||
    fail "the reconcile and peer metrics after an enroll"
fi
if [ "$backend" != none ]; then
  "$FM" peers --state-dir "$dir/root" | grep -q "^b  .*  never  " || fail "peers does not list b, never handshaken"
fi
# From b's address: a Gossip Ops holding one op that does not parse, then a
# datagram that is not gossip at all.
python3 - "$bport" "$gport" <<'PY'
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("127.0.0.1", int(sys.argv[1])))
ops = b"\x0a\x07garbage"                          # Ops { ops: "garbage" }
s.sendto(b"\x0a" + bytes([len(ops)]) + ops, ("127.0.0.1", int(sys.argv[2])))  # Gossip { ops }
s.sendto(b"\xff\xff\xff", ("127.0.0.1", int(sys.argv[2])))
PY
sleep 0.5
scrape 'v("fortmesh_ops_rejected_total", reason="malformed") == 1' 'v("fortmesh_ops_rejected_total", reason="bad_signature") == 0' \
  'v("fortmesh_gossip_datagrams_by_kind_total", direction="in", kind="ops") == 1' \
  'v("fortmesh_gossip_bytes_by_kind_total", direction="in", kind="ops") == 11' \
  'v("fortmesh_gossip_datagrams_by_kind_total", direction="in", kind="other") == 1' \
  'v("fortmesh_gossip_datagrams_total", direction="in") == 2' \
  'v("fortmesh_gossip_datagrams_by_kind_total", direction="out", kind="ops") >= 1' ||
  fail "gossip from b: a malformed op and a junk datagram"
"$FM" status --state-dir "$dir/root" | grep -q '^rejected  1 malformed' || fail "status does not show the rejected op"
"$FM" status --json --state-dir "$dir/root" | grep -q '"malformed": "1"' || fail "status --json: not a string 64-bit count"
"$FM" revoke b --reason test --state-dir "$dir/root" >/dev/null
scrape 'v("fortmesh_ops") == 3' 'v("fortmesh_members", standing="revoked") == 1' \
  'v("fortmesh_revocations_applied_total") == 1' 'v("fortmesh_last_revocation_applied_timestamp_seconds") > 0' ||
  fail "metrics after an enroll and a revoke"
"$FM" status --state-dir "$dir/root" | grep -q "^revoked   1 applied since start; last: b ($("$FM" pubkey --state-dir "$dir/b" | cut -c1-8)) at 20" ||
  fail "status does not name the last revocation applied"
# What fortmesh guard asks after a conn_auth handshake: is this key an active
# member? The root's is, the revoked b's is not; the all-zero ping is no check.
python3 - "$dir/root/control.sock" "$("$FM" pubkey --state-dir "$dir/root")" "$("$FM" pubkey --state-dir "$dir/b")" <<'PY'
import base64, socket, struct, sys
for key in [base64.b64decode(sys.argv[2]), base64.b64decode(sys.argv[3]), bytes(32)]:
    req = b"\x22\x20" + key  # ControlRequest { member_status: key }
    s = socket.socket(socket.AF_UNIX)
    s.connect(sys.argv[1])
    s.sendall(struct.pack(">I", len(req)) + req)
    s.recv(4096)
    s.close()
PY
scrape 'v("fortmesh_member_checks_total", answer="active") == 1' 'v("fortmesh_member_checks_total", answer="refused") == 1' ||
  fail "the membership checks a guard makes are not counted by answer"
if [ "$backend" != none ]; then
  scrape 'v("fortmesh_wireguard_peers") == 0' 'v("fortmesh_reconcile_changes_total") >= 2' \
    '"fortmesh_peer_handshake_age_seconds" not in m' || fail "the revoked peer is still on the interface or in the metrics"
fi
code=$(python3 - "$port" <<'PY'
import sys, urllib.request, urllib.error
try:
    urllib.request.urlopen(f"http://127.0.0.1:{sys.argv[1]}/nothing", timeout=5)
    print(200)
except urllib.error.HTTPError as e:
    print(e.code)
PY
)
[ "$code" = 404 ] || fail "GET /nothing answered $code, not 404"
# A client that sends nothing holds no slot for ever, and a junk request is not answered.
python3 - "$port" <<'PY' || fail "the server misbehaved with idle or junk clients"
import socket, sys
idle = [socket.create_connection(("127.0.0.1", int(sys.argv[1]))) for _ in range(20)]
junk = socket.create_connection(("127.0.0.1", int(sys.argv[1])))
junk.sendall(b"\x00\xff garbage\r\n\r\n")
junk.settimeout(6)
try:
    answer = junk.recv(100)
except ConnectionResetError:  # closed with the junk unread: no answer either
    answer = b""
assert answer == b"", "junk got an answer"
PY
scrape 'v("fortmesh_ops") == 3' || fail "the server stopped serving after idle and junk clients"
# Every family served is listed in docs/metrics.md.
python3 "$(dirname "$0")/../prom_scrape.py" --doc "$(dirname "$0")/../../docs/metrics.md" "127.0.0.1:$port" ||
  fail "docs/metrics.md does not list every metric"
# fortmesh guard's own endpoint: conn_auth handshakes by result. A client
# that sends junk instead of a handshake is counted as a protocol failure.
gmport=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
glport=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
"$FM" guard --state-dir "$dir/root" --listen "127.0.0.1:$glport" --to 127.0.0.1:9 \
  --metrics-listen "127.0.0.1:$gmport" >"$dir/guard.log" 2>&1 &
gpid=$!
for _ in $(seq 100); do grep -q "metrics on" "$dir/guard.log" && break; sleep 0.1; done
scrape_port=$gmport scrape 'v("fortmesh_guard_handshakes_total", side="server", result="protocol") == 0' \
  'v("fortmesh_guard_sessions_open") == 0' || { cat "$dir/guard.log"; kill $gpid; fail "the guard's metrics"; }
python3 - "$glport" <<'PY'
import socket, sys, struct
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])))
s.sendall(struct.pack(">H", 5) + b"junk!")
s.settimeout(6)
try:
    s.recv(100)
except (ConnectionResetError, socket.timeout):
    pass
PY
for _ in $(seq 50); do grep -q "guard: refused" "$dir/guard.log" && break; sleep 0.1; done
scrape_port=$gmport scrape 'v("fortmesh_guard_handshakes_total", side="server", result="protocol") == 1' \
  'v("fortmesh_guard_handshakes_total", side="server", result="ok") == 0' ||
  { cat "$dir/guard.log"; kill $gpid; fail "a junk handshake is not counted by the guard"; }
kill "$gpid"; wait "$gpid" || true

kill "$pid"; wait "$pid" || true; pid=""
# The log names what happened: the version and digest at start, each admin
# op's kind and subject (name and short key), peer counts before and after.
bkey=$("$FM" pubkey --state-dir "$dir/b" | cut -c1-8)
grep -q "fortmesh $("$FM" --version | cut -d' ' -f2) started: .*digest [0-9a-f]\{64\}" "$dir/log" || fail "no startup line"
grep -q "gossip on 127.0.0.1:$gport" "$dir/log" || fail "the startup line does not name the gossip port"
grep -q "admin: member b ($bkey) is now active (2 ops): Enroll of b ($bkey) as member by root (" "$dir/log" ||
  fail "the enroll's log line does not name its kind and subject"
grep -q "admin: member b ($bkey) is now revoked (3 ops): Revoke of b ($bkey) by root (" "$dir/log" ||
  fail "the revoke's log line does not name its kind and subject"
if [ "$backend" != none ]; then
  grep -q "peers 0 -> 1" "$dir/log" && grep -q "peers 1 -> 0" "$dir/log" || fail "no peer counts before and after"
fi
echo "PASS ($backend backend): metrics scraped and parsed; they follow an enroll, a revoke, bad gossip, a guard's failed handshake; 404, idle and junk clients handled"
