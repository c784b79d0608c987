#!/usr/bin/env bash
# The shipped unit (dist/fortmesh.service.in with ExecStart at this build's
# binary): systemd-analyze verify finds nothing wrong, and its offline
# security assessment scores an exposure of at most 2.0. Exit 77 (skipped)
# when systemd-analyze cannot assess offline (before systemd 250).
set -euo pipefail
template=$1 fortmesh=$2
command -v systemd-analyze >/dev/null || { echo "SKIP: no systemd-analyze (apt-get install systemd)"; exit 77; }
systemd-analyze security --help 2>/dev/null | grep -q -- --offline ||
  { echo "SKIP: systemd-analyze $(systemd-analyze --version | head -1) has no --offline"; exit 77; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
sed "s#@FM_BINDIR@#$(dirname "$(realpath "$fortmesh")")#" "$template" >"$tmp/fortmesh.service"
grep -qE '@[A-Z_]+@' "$tmp/fortmesh.service" && { echo "FAIL: unsubstituted @VAR@ in the unit"; exit 1; }
systemd-analyze verify --man=no "$tmp/fortmesh.service"
systemd-analyze security --offline=true --no-pager "$tmp/fortmesh.service" >"$tmp/report" 2>&1 || true
score=$(sed -n 's/.*Overall exposure level for fortmesh.service: \([0-9.]*\).*/\1/p' "$tmp/report")
[ -n "$score" ] || { cat "$tmp/report"; echo "FAIL: no exposure level in the report"; exit 1; }
grep '✗' "$tmp/report" | sed 's/  */ /g' || true
echo "exposure $score (target <= 2.0)"
awk -v s="$score" 'BEGIN { exit !(s <= 2.0) }' || { echo "FAIL: exposure $score > 2.0"; exit 1; }
# What the daemon needs must survive the hardening.
for want in 'Type=notify' 'CapabilityBoundingSet=CAP_NET_ADMIN CAP_NET_BIND_SERVICE' 'DeviceAllow=/dev/net/tun rw' \
            'StateDirectory=fortmesh' 'RuntimeDirectory=fortmesh wireguard' 'Restart=on-failure' 'StartLimitBurst='; do
  grep -qF "$want" "$tmp/fortmesh.service" || { echo "FAIL: the unit lost $want"; exit 1; }
done
echo "unit ok"
