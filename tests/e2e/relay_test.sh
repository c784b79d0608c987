#!/usr/bin/env bash
# End to end, on real WireGuard tunnels (wireguard-go): the lighthouse relay
# (docs/relay.md). One public lighthouse `lh` (`run --lighthouse`, relay on
# UDP 51822 and TCP 443), a public root `root` (an admin daemon, to revoke),
# two nodes behind symmetric NATs (s1, s2: no direct path between them) and
# one behind an easy NAT whose upstream drops all UDP both ways (t1: only TCP
# leaves).
#
#   1. s1 <-> s2 are relayed over UDP: `peers --json` on both shows path
#      relayed, relay "lh udp", and ping -6 over the overlay works both ways.
#      s1's proxy is the shared socket, s2's the fallback (a socket per
#      relayed peer, --relay-proxy per-peer).
#      Figure: the time from the daemons' start to the first relayed ping.
#   2. t1 reaches everyone over its TCP relay session: its lighthouse peer is
#      relayed "lh tcp" (a local channel to the lighthouse's own WireGuard),
#      s1 <-> t1 ping both ways, and the capture on the lighthouse of the
#      relay ports shows no inner plaintext (a marker in the ping payload).
#   4. The root revokes s2: t1, behind its UDP-blocking firewall, learns of it
#      by gossip through the TCP relay; the lighthouse closes s2's session and
#      channels within 1 s of applying the Revoke (its log), s1's pings to s2
#      stop.
#   3. From another host: an unpadded first HANDSHAKE datagram gets no answer
#      (drops.unpadded counts it); a DATA frame with s1's real session id from
#      the wrong source is dropped (drops.bad_source counts it).
#   5. From the root's host, relay_knock (tests/e2e/relay_knock.cc, the real
#      relay client over real sockets): a fresh key no org knows asks for a
#      session over UDP and over TCP, and the revoked s2's key over UDP: each
#      refused by the handshake (not_member, revoked), no session appears on
#      the lighthouse, handshakes{result} counts them; the root's key gets a
#      session and its channel Open to the stranger is refused not_member.
#   Metrics: the lighthouse serves --metrics-listen on its loopback; after
#   3. and after 4. its page is scraped and parsed with prometheus_client
#   (tests/prom_scrape.py, Debian's /usr/bin/python3): sessions by transport,
#   forwarded packets, handshakes, drops.bad_source, closed by membership,
#   and every family listed in docs/metrics.md.
#
#   tests/e2e/relay_test.sh path/to/fortmesh [path/to/relay_knock]
#
# Needs root, iproute2, nftables, wireguard-go, wireguard-tools, ping and
# python3; exit 77 (a skip for ctest) with the reason when they are missing.
set -euo pipefail
here=$(dirname "$(readlink -f "$0")")
source "$here/lib.sh"
source "$here/nat_lib.sh"
command -v ping >/dev/null || { echo "SKIP: ping is not installed (scripts/setup.sh)"; exit 77; }
KNOCK=${2:+$(readlink -f "$2")}
nat_e2e_start "$1"
step() { echo "== $(date +%T) $*"; }
# RELAY_HOLD=1: on a failure, keep everything up for 10 minutes to look at.
fail() { echo "FAIL: $*"; if [ -n "${RELAY_HOLD:-}" ]; then echo "holding (MESH_DIR=$MESH_DIR)"; sleep 600; fi; exit 1; }

ALL=(lh root s1 s2 t1)
declare -A MODE=([lh]=none [root]=none [s1]=symmetric [s2]=symmetric [t1]=easy)

step "sites: ${ALL[*]}; the root enrolls them (lh as lighthouse with its public endpoint)"
for h in "${ALL[@]}"; do nat_add_site "$h" "${MODE[$h]}"; done
for h in lh s1 s2 t1; do fm "$h" keygen >/dev/null; done
fm root keygen >/dev/null
fm root org init --name relay >/dev/null
fm root enroll "$(fm lh pubkey)" --name lh --role lighthouse --endpoint "$(nat_public_ip lh):51820" \
  --out "$MESH_DIR/lh.join" >/dev/null
for h in s1 s2 t1; do fm root enroll "$(fm "$h" pubkey)" --name "$h" --out "$MESH_DIR/$h.join" >/dev/null; done
for h in lh s1 s2 t1; do fm "$h" join "$MESH_DIR/$h.join" >/dev/null; done
nat_block_udp t1 allow-tcp-443

declare -A OVERLAY=()
for h in "${ALL[@]}"; do OVERLAY[$h]=$(overlay_of "$h"); done

# The lighthouse's metrics page, scraped inside its namespace and parsed with
# Debian's python3-prometheus-client (a version manager's python3 may come
# first on PATH): each argument a Python expression that must hold.
if [ -x /usr/bin/python3 ] && /usr/bin/python3 -c 'import prometheus_client' 2>/dev/null; then
  lh_scrape() { nat_exec lh /usr/bin/python3 "$here/../prom_scrape.py" --doc "$here/../../docs/metrics.md" 127.0.0.1:9464 "$@"; }
else
  echo "   (python3-prometheus-client not installed: the metrics checks are skipped)"
  lh_scrape() { :; }
fi

step "start the daemons (userspace WireGuard)"
T0=$(date +%s.%N)
mesh_start lh --wg-backend userspace --log-level debug --lighthouse --metrics-listen 127.0.0.1:9464
# s2 meets its WireGuard through a socket per relayed peer (the fallback),
# s1 through the shared one: s1 <-> s2 covers both.
for h in root s1 t1; do mesh_start "$h" --wg-backend userspace --log-level debug; done
mesh_start s2 --wg-backend userspace --log-level debug --relay-proxy per-peer
ping_one() { nat_exec "$1" ping -6 -c 1 -W 1 -p "$3" "${OVERLAY[$2]}" >/dev/null 2>&1; }
MARK=f0e1d2c3b4a5968778695a4b3c2d1e0f  # ping -p pattern: inner plaintext to look for

# path_of HOST PEER: "relayed lh udp", "direct ...", ... from `peers --json`.
path_of() {
  fm "$1" peers --json 2>/dev/null | python3 -c '
import json, sys
for p in json.load(sys.stdin).get("peers", []):
    if p.get("name") == sys.argv[1]:
        print(p.get("path", ""), p.get("relay", ""))
' "$2"
}
is_path() { [ "$(path_of "$1" "$2")" = "$3" ]; }

step "1. s1 <-> s2 (symmetric NATs both) relayed over UDP"
wait_for 40 ping_one s1 s2 "$MARK" || { path_of s1 s2; fail "s1 cannot ping s2 over the relay"; }
T_PING=$(date +%s.%N)
wait_for 10 ping_one s2 s1 "$MARK" || fail "s2 cannot ping s1 over the relay"
wait_for 10 is_path s1 s2 "relayed lh udp" || fail "s1's path to s2 is '$(path_of s1 s2)', not 'relayed lh udp'"
wait_for 10 is_path s2 s1 "relayed lh udp" || fail "s2's path to s1 is '$(path_of s2 s1)', not 'relayed lh udp'"
grep -q "a socket per relayed peer" "$MESH_DIR/s2.log" || fail "s2's relay proxy is not per peer"
grep -q "relay proxy on 127.128.0.0/9 port" "$MESH_DIR/s1.log" || fail "s1's relay proxy is not the shared socket"
echo "   figure: first relayed ping s1 -> s2 $(python3 -c "print(f'{$T_PING - $T0:.1f}')") s after the daemons started"
fm s1 peers | sed 's/^/   s1: /'

step "2. t1 (UDP dropped upstream, TCP allowed) relayed over TCP"
# Capture the relay ports on the lighthouse from here on.
nat_exec lh timeout 25 python3 "$here/relay_capture.py" "$MESH_DIR/capture.bin" 51822 443 &
CAP=$!
sleep 0.5
wait_for 40 ping_one t1 s1 "$MARK" || { path_of t1 lh; path_of t1 s1; fail "t1 cannot ping s1 over the TCP relay"; }
wait_for 10 ping_one s1 t1 "$MARK" || fail "s1 cannot ping t1"
wait_for 10 is_path t1 lh "relayed lh tcp" || fail "t1's path to lh is '$(path_of t1 lh)', not 'relayed lh tcp'"
wait_for 10 is_path t1 s1 "relayed lh tcp" || fail "t1's path to s1 is '$(path_of t1 s1)', not 'relayed lh tcp'"
wait_for 10 ping_one t1 lh "$MARK" || fail "t1 cannot ping the lighthouse over its TCP relay session"
for _ in 1 2 3 4 5; do ping_one s1 s2 "$MARK" || true; ping_one t1 s1 "$MARK" || true; done
kill "$CAP" 2>/dev/null || true
wait "$CAP" 2>/dev/null || true
python3 "$here/relay_capture.py" --check "$MESH_DIR/capture.bin" "$MARK" || fail "the capture on the lighthouse shows inner plaintext"

step "3. hostile datagrams to the relay's UDP port, from the root's host: counted and dropped"
drops_of() { fm lh status --json | python3 -c '
import json, sys
print(json.load(sys.stdin).get("relay", {}).get("drops", {}).get(sys.argv[1], 0))' "$1"; }
sid=$(grep -o 'session over UDP (id [0-9a-f]*)' "$MESH_DIR/s1.log" | tail -1 | grep -o '[0-9a-f]\{8\}')
[ -n "$sid" ] || fail "no UDP session id in s1's log"
before_spoof=$(drops_of bad_source) before_unpadded=$(drops_of unpadded)
nat_exec root python3 "$here/relay_probe.py" unpadded "$(nat_public_ip lh)" 51822 || fail "an unpadded first datagram was answered"
nat_exec root python3 "$here/relay_probe.py" spoof "$(nat_public_ip lh)" 51822 "$sid"
sleep 0.3
[ "$(drops_of unpadded)" -gt "$before_unpadded" ] || fail "the unpadded datagram was not counted (drops.unpadded)"
[ "$(drops_of bad_source)" -gt "$before_spoof" ] || fail "the spoofed-source data frame (session $sid) was not counted (drops.bad_source)"
echo "   spoofed-source DATA with s1's session id $sid: dropped, bad_source $(drops_of bad_source); unpadded: $(drops_of unpadded)"
# Every reason lighthouse/relay_server.h knows, zeros included: a fixed label set.
drops='["malformed", "unknown_session", "bad_source", "no_channel", "wrong_transport", "bad_control", "unpadded",
  "rate_limited", "pending_full", "sessions_full", "amplification", "duplicate", "control_limited"]'
lh_scrape 'v("fortmesh_relay_sessions", transport="udp") >= 2' 'v("fortmesh_relay_sessions", transport="tcp") >= 1' \
  'v("fortmesh_relay_channels") >= 1' 'v("fortmesh_relay_pending_handshakes") >= 0' \
  'v("fortmesh_relay_forwarded_packets_total", transport="udp") > 0' \
  'v("fortmesh_relay_forwarded_packets_total", transport="tcp") > 0' \
  'v("fortmesh_relay_forwarded_bytes_total", transport="udp") > v("fortmesh_relay_forwarded_packets_total", transport="udp")' \
  'v("fortmesh_relay_handshakes_total", result="ok") >= 3' \
  'v("fortmesh_relay_handshakes_total", result="ok") == v("fortmesh_relay_sessions_opened_total")' \
  'v("fortmesh_relay_drops_total", reason="bad_source") >= 1' 'v("fortmesh_relay_drops_total", reason="unpadded") >= 1' \
  "sorted(dict(k)['reason'] for k in m['fortmesh_relay_drops_total']) == sorted($drops)" \
  'len(m["fortmesh_relay_refusals_total"]) == 9' 'v("fortmesh_relay_sessions_closed_membership_total") == 0' \
  'v("fortmesh_relay_tcp_queue_drops_total") >= 0' 'v("fortmesh_relay_tcp_refused_total") == 0' ||
  fail "the lighthouse's relay metrics after the relayed pings and the hostile datagrams"

step "4. revoke s2: t1 learns it by gossip over TCP; lh closes s2's relay within 1 s; pings stop"
ping_one s1 s2 "$MARK" || fail "s1 does not ping s2 before the revocation"
fm root revoke s2 --reason "relay test" >/dev/null
gone_on() { fm "$1" members --json | python3 -c '
import json, sys
for m in json.load(sys.stdin).get("members", []):
    if m.get("name") == "s2" and m.get("status", "active") != "active": sys.exit(0)
sys.exit(1)'; }
wait_for 20 gone_on lh || fail "the lighthouse did not learn of the revocation"
wait_for 20 gone_on t1 || fail "t1 (UDP blocked) did not learn of the revocation by gossip"
python3 - "$MESH_DIR/lh.log" <<'EOF' || fail "the lighthouse did not close s2's relay session within 1 s"
import re, sys, datetime
applied = closed = None
for line in open(sys.argv[1], errors="replace"):
    t = re.match(r"^\[?(\d{4}-\d\d-\d\d[ T]\d\d:\d\d:\d\d\.\d+)", line)
    if not t: continue
    ts = datetime.datetime.fromisoformat(t.group(1).replace(" ", "T"))
    if applied is None and "revocation of" in line and "s2" in line: applied = ts
    if applied and closed is None and "relay: closed" in line: closed = ts
if applied is None or closed is None:
    print("   (log lines: applied", applied, "closed", closed, ")"); sys.exit(1)
d = (closed - applied).total_seconds()
print(f"   figure: lighthouse closed the revoked member's relay session {d*1000:.0f} ms after applying the Revoke")
sys.exit(0 if d <= 1.0 else 1)
EOF
sleep 1
if ping_one s1 s2 "$MARK"; then fail "s1 still pings s2 after its revocation"; fi
if ping_one s2 s1 "$MARK"; then fail "s2 still pings s1 after its revocation"; fi
lh_scrape 'v("fortmesh_relay_sessions_closed_membership_total") >= 1' \
  'v("fortmesh_relay_sessions", transport="udp") + v("fortmesh_relay_sessions", transport="tcp") >= 2' ||
  fail "the lighthouse's relay metrics after the revocation"

step "5. a key no org knows, and the revoked s2's, ask the relay for a session: refused, counted, none appears"
if [ -n "$KNOCK" ]; then
  org=$(fm lh members --json | python3 -c 'import json, sys; print(json.load(sys.stdin)["org_id"])')
  lhkey=$(fm lh pubkey)
  "$FM_BIN" keygen --state-dir "$MESH_DIR/stranger" >/dev/null
  stranger=$("$FM_BIN" pubkey --state-dir "$MESH_DIR/stranger")
  knock() { nat_exec root "$KNOCK" "$1" "$(nat_public_ip lh)" "$2" "$lhkey" "$org" "${@:3}"; }
  relay_sessions() { fm lh status --json | python3 -c '
import json, sys
r = json.load(sys.stdin).get("relay", {})
print(int(r.get("sessions_udp", 0)) + int(r.get("sessions_tcp", 0)))'; }
  # relay_count MAP KEY: a count from status --json (handshakes by label, refusals by text).
  relay_count() { fm lh status --json | python3 -c '
import json, sys
print(int(json.load(sys.stdin).get("relay", {}).get(sys.argv[1], {}).get(sys.argv[2], 0)))' "$1" "$2"; }
  # (The members' first attempts may have been refused not_member too: the
  # lighthouse's join bundle predates their Enrolls.)
  nm=$(relay_count handshakes not_member) rv=$(relay_count handshakes revoked) rn=$(relay_count refusals "not a member")
  before=$(relay_sessions)
  out=$(knock udp 51822 "$MESH_DIR/stranger/node.key") || fail "the stranger's UDP attempt got no answer ($out)"
  [ "$out" = "session refused not_member" ] || fail "the stranger over UDP: '$out', not 'session refused not_member'"
  out=$(knock tcp 443 "$MESH_DIR/stranger/node.key") || fail "the stranger's TCP attempt got no answer ($out)"
  [ "$out" = "session refused not_member" ] || fail "the stranger over TCP: '$out', not 'session refused not_member'"
  out=$(knock udp 51822 "$MESH_DIR/s2/node.key") || fail "the revoked s2's attempt got no answer ($out)"
  [ "$out" = "session refused revoked" ] || fail "the revoked s2 over UDP: '$out', not 'session refused revoked'"
  [ "$(relay_sessions)" = "$before" ] || fail "the lighthouse's sessions went from '$before' to '$(relay_sessions)'"
  [ "$(relay_count handshakes not_member)" = $((nm + 2)) ] && [ "$(relay_count handshakes revoked)" -gt "$rv" ] ||
    fail "fortmesh status does not count the refused handshakes"
  fm lh status | grep -q "^handshake .*not_member $((nm + 2))" || fail "fortmesh status's handshake line"

  echo "   stranger (UDP, TCP) and revoked s2 (UDP): refused by the handshake; sessions: $before before and after"
  out=$(knock udp 51822 "$MESH_DIR/root/node.key" "$stranger") || fail "the root's Open got no answer ($out)"
  [ "$out" = $'session ok\nchannel refused not_member' ] ||
    fail "the root's Open to the stranger: '$out', not a session and 'channel refused not_member'"
  echo "   the root's channel Open to the stranger: refused not_member"
  [ "$(relay_count refusals "not a member")" = $((rn + 1)) ] || fail "fortmesh status does not count the refused Open"
  lh_scrape "v('fortmesh_relay_handshakes_total', result='not_member') == $((nm + 2))" \
    "v('fortmesh_relay_handshakes_total', result='revoked') > $rv" \
    "v('fortmesh_relay_refusals_total', code='not_member') == $((rn + 1))" ||
    fail "the lighthouse's metrics do not count the refused handshakes and the refused Open"
else
  echo "   (no relay_knock given: skipped)"
fi

step "lighthouse status"
fm lh status | grep -E '^(relay|relayed|drops|handshake)' | sed 's/^/   lh: /'
echo "PASS: relay: s1<->s2 over UDP, t1 over TCP (ping both ways), no plaintext at the relay, revocation through the TCP relay, revoked member cut off; $(python3 -c "import time; print(f'{time.time() - $T0:.0f}')") s"
