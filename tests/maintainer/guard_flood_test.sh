#!/usr/bin/env bash
# `fortmesh guard` under a flood of idle, unauthenticated connections from 8
# loopback addresses, with few file descriptors (prlimit): it must refuse what
# is over its limits, survive running out of descriptors, and serve again once
# the flood is gone (before, one EMFILE stopped its accept loop for good).
# Loopback only; no root needed.
#
#   tests/maintainer/guard_flood_test.sh path/to/fortmesh
set -euo pipefail
fm=$(readlink -f "$1")
command -v python3 >/dev/null || { echo "SKIP: python3 is not installed"; exit 77; }
command -v prlimit >/dev/null || { echo "SKIP: prlimit (util-linux) is not installed"; exit 77; }
dir=$(mktemp -d /tmp/fortmesh-flood-XXXXXX)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$dir"
}
trap cleanup EXIT
fail() { echo "FAIL: $*"; for l in "$dir"/*.log; do echo "---- $l"; tail -n 20 "$l"; done; exit 1; }

base=$(( 20000 + $$ % 20000 ))
"$fm" keygen --state-dir "$dir/n" >/dev/null
"$fm" org init --name flood --state-dir "$dir/n" >/dev/null
"$fm" run --state-dir "$dir/n" --wg-backend none --gossip-listen "127.0.0.1:$base" >"$dir/daemon.log" 2>&1 &
pids+=($!)
for _ in $(seq 50); do "$fm" status --state-dir "$dir/n" >/dev/null 2>&1 && break; sleep 0.1; done
# The guard with 128 descriptors, far fewer than the flood's 320 connections.
prlimit --nofile=128 "$fm" guard --listen "127.0.0.1:$(( base + 1 ))" --to "127.0.0.1:$(( base + 2 ))" \
  --state-dir "$dir/n" >"$dir/guard.log" 2>&1 &
pids+=($!)
for _ in $(seq 50); do grep -q "guard: server side" "$dir/guard.log" && break; sleep 0.1; done

python3 - "$(( base + 1 ))" <<'PY' || fail "the guard did not survive the flood"
import socket, sys, time
port = int(sys.argv[1])

def probe():
    """A fresh connection with garbage must be answered (error frame or close) within 3 s."""
    s = socket.create_connection(("127.0.0.1", port), timeout=3)
    s.sendall(b"\x00\x05hello")
    try:
        s.recv(100)  # the guard's error reply, or EOF: either means it accepted and answered
        return True
    except socket.timeout:
        return False
    finally:
        s.close()

assert probe(), "no answer before the flood"
idle = []
for i in range(320):
    s = socket.socket()
    s.bind((f"127.0.0.{1 + i % 8}", 0))
    s.setblocking(False)
    try:
        s.connect(("127.0.0.1", port))
    except BlockingIOError:
        pass
    idle.append(s)
time.sleep(1.5)  # the guard accepts what it can and runs out of descriptors
for s in idle:
    s.close()
time.sleep(1.5)  # within its backoff (at most 1 s), it accepts again
ok = probe()
print("after the flood:", "answered" if ok else "no answer")
sys.exit(0 if ok else 1)
PY
grep -q "too many unauthenticated\|accept failed" "$dir/guard.log" || fail "the guard logged neither refusal nor accept failure"
echo "PASS: the guard refused or outlived 320 idle connections and serves again"
