#!/usr/bin/env bash
# The Prometheus endpoint of a real daemon (gossip only, on loopback), scraped
# with a real HTTP client and parsed with a real text-format parser
# (python3-prometheus-client): every family has HELP, and the values follow
# what the node does (an enroll, a revoke).
#
#   tests/maintainer/metrics_test.sh path/to/fortmesh
set -euo pipefail
FM=$(readlink -f "$1")
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
gport=$(python3 -c 'import socket; s=socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
"$FM" run --state-dir "$dir/root" --wg-backend none --gossip-listen "127.0.0.1:$gport" --handover-listen off \
  --metrics-listen "127.0.0.1:$port" >"$dir/log" 2>&1 &
pid=$!
for _ in $(seq 100); do "$FM" status --state-dir "$dir/root" >/dev/null 2>&1 && break; sleep 0.1; done

scrape() {  # scrape EXPR...: each a Python expression over m (family -> {labels: value}) that must hold
  python3 - "$port" "$@" <<'PY'
import sys, urllib.request
from prometheus_client.parser import text_string_to_metric_families
port = sys.argv[1]
with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
    assert r.status == 200, r.status
    assert r.headers["Content-Type"].startswith("text/plain; version=0.0.4"), r.headers["Content-Type"]
    text = r.read().decode()
m = {}
for fam in text_string_to_metric_families(text):
    assert fam.documentation, f"{fam.name} has no HELP"
    for s in fam.samples:  # by sample name: the parser drops a counter family's _total
        m.setdefault(s.name, {})[tuple(sorted(s.labels.items()))] = s.value
def v(name, **labels):
    return m[name][tuple(sorted(labels.items()))]
for expr in sys.argv[2:]:
    if not eval(expr):
        print(f"does not hold: {expr}\n{text}")
        sys.exit(1)
print(f"ok: {len(m)} families")
PY
}

scrape 'v("fortmesh_self_active") == 1' 'v("fortmesh_ops") == 1' 'v("fortmesh_members", standing="active") == 1' \
  'v("fortmesh_revocations_applied_total") == 0' 'len(m["fortmesh_membership_digest_info"]) == 1' ||
  fail "a fresh org's metrics"
"$FM" enroll "$("$FM" pubkey --state-dir "$dir/b")" --name b --out "$dir/b.join" --state-dir "$dir/root" >/dev/null
"$FM" revoke b --reason test --state-dir "$dir/root" >/dev/null
scrape 'v("fortmesh_ops") == 3' 'v("fortmesh_members", standing="revoked") == 1' \
  'v("fortmesh_revocations_applied_total") == 1' 'v("fortmesh_last_revocation_applied_timestamp_seconds") > 0' ||
  fail "metrics after an enroll and a revoke"
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
kill "$pid"; wait "$pid" || true; pid=""
echo "PASS: metrics scraped and parsed; they follow an enroll and a revoke; 404, idle and junk clients handled"
