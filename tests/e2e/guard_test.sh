#!/usr/bin/env bash
# End to end: `fortmesh guard` puts a TCP echo service on n1 behind org
# membership; n2 reaches it through its own guard over the overlay; when the
# root revokes n2, n1's guard closes the open session within 1 s, and n2
# cannot open a new one.
#
#   tests/e2e/guard_test.sh path/to/fortmesh
set -euo pipefail
here=$(dirname "$(readlink -f "$0")")
source "$here/lib.sh"
e2e_start "$1"

ALL=(root lh n1 n2)
for h in "${ALL[@]}"; do mesh_add_host "$h"; fm "$h" keygen >/dev/null; done
fm root org init --name guard >/dev/null
fm root enroll "$(fm lh pubkey)" --name lh --role lighthouse --endpoint "${MESH_IP[lh]}:51820" --out "$MESH_DIR/lh.join" >/dev/null
for n in n1 n2; do fm root enroll "$(fm "$n" pubkey)" --name "$n" --out "$MESH_DIR/$n.join" >/dev/null; done
for h in lh n1 n2; do fm "$h" join "$MESH_DIR/$h.join" >/dev/null; done
for h in "${ALL[@]}"; do mesh_start "$h"; done
wait_for 60 ping_overlay n2 n1 || fail "n2 cannot reach n1"

# The service: a line echo on n1's loopback.
ip netns exec "$(ns_of n1)" python3 -c '
import socketserver
class Echo(socketserver.StreamRequestHandler):
    def handle(self):
        for line in self.rfile:
            self.wfile.write(line)
socketserver.ThreadingTCPServer.allow_reuse_address = True
socketserver.ThreadingTCPServer(("127.0.0.1", 8000), Echo).serve_forever()
' >/dev/null 2>&1 &
MESH_PID[echo]=$!
n1_addr=$(overlay_of n1)
ip netns exec "$(ns_of n1)" "$FM_BIN" guard --listen "[$n1_addr]:9000" --to 127.0.0.1:8000 \
  --state-dir "$MESH_DIR/n1" >>"$MESH_DIR/n1-guard.log" 2>&1 &
MESH_PID[n1-guard]=$!
ip netns exec "$(ns_of n2)" "$FM_BIN" guard --listen 127.0.0.1:7000 --connect "[$n1_addr]:9000" \
  --server-key "$(fm n1 pubkey)" --state-dir "$MESH_DIR/n2" >>"$MESH_DIR/n2-guard.log" 2>&1 &
MESH_PID[n2-guard]=$!

# A client on n2 that keeps a session open, echoing a line every 20 ms, and
# reports when the session closes (Unix time) or "timeout".
client() {
  ip netns exec "$(ns_of n2)" python3 -c '
import socket, sys, time
s = socket.create_connection(("127.0.0.1", 7000), timeout=5)
s.sendall(b"hello\n")
if s.recv(64) != b"hello\n":
    print("no echo"); sys.exit(1)
print("open", flush=True)
s.settimeout(0.5)
end = time.time() + float(sys.argv[1])
while time.time() < end:
    try:
        s.sendall(b"x\n")
        if s.recv(64) == b"":
            break
    except OSError:
        break
    time.sleep(0.02)
else:
    print("timeout"); sys.exit(0)
print("closed %.3f" % time.time())
' "$1"
}
wait_for 30 client 0.1 || fail "no echo through the guards"
echo "== a session through both guards echoes"

out=$MESH_DIR/client.out
client 20 >"$out" &
client_pid=$!
wait_for 10 grep -q open "$out" || fail "the long session did not open"
t0=$(date +%s.%N)
fm root revoke n2 --reason guard-test >/dev/null
wait "$client_pid" || true
grep -q closed "$out" || fail "the session was not closed after the revocation: $(cat "$out")"
closed=$(sed -n 's/closed //p' "$out")
ms=$(python3 -c "print(int(($closed - $t0) * 1000))")
echo "== revoked n2: its open session closed $ms ms after the revoke started"
[ "$ms" -le 1000 ] || fail "closed after $ms ms (target 1 s)"
if client 0.1 >/dev/null 2>&1; then fail "the revoked n2 opened a new session"; fi
echo "== n2 cannot open a new session"
grep -q "no longer an active member" "$MESH_DIR/n1-guard.log" || fail "n1's guard did not log the cut"
echo PASS
