#!/usr/bin/env bash
# An offline org walkthrough (no daemon, no root): real
# keys, a real store and real join bundles, in throwaway state directories.
# The main job is scripts/demo.sh, the live mesh.
set -euo pipefail
cd "$(dirname "$0")/.."
[ -x build/fortmesh ] || ./scripts/build.sh
fm="$PWD/build/fortmesh"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

run() { printf '\n$ fortmesh %s\n' "$*" | sed "s#$work/##g"; "$fm" "$@" | sed "s#$work/##g"; }

echo "== an admin creates the org"
run keygen --state-dir "$work/admin"
run org init --name acme --state-dir "$work/admin"

echo; echo "== three machines make their keys; the admin enrolls them"
lh=$("$fm" keygen --state-dir "$work/lighthouse")
alice=$("$fm" keygen --state-dir "$work/alice")
bob=$("$fm" keygen --state-dir "$work/bob")
run enroll "$lh" --name lighthouse-1 --role lighthouse --endpoint 203.0.113.10:51820 --out "$work/lh.join" --state-dir "$work/admin"
run enroll "$alice" --name alice --out "$work/alice.join" --state-dir "$work/admin"
run enroll "$bob" --name bob --expires 30d --out "$work/bob.join" --state-dir "$work/admin"

echo; echo "== each joins from its bundle, offline"
run join "$work/lh.join" --state-dir "$work/lighthouse"
run join "$work/alice.join" --state-dir "$work/alice"
run join "$work/bob.join" --state-dir "$work/bob"

echo; echo "== bob's view of the org"
run members --state-dir "$work/bob"

echo; echo "== the admin revokes bob by name"
run revoke bob --reason "laptop lost" --state-dir "$work/admin"
run members --state-dir "$work/admin"

echo; echo "== a revoked key cannot be enrolled again"
if "$fm" enroll "$bob" --name bob --out "$work/again.join" --state-dir "$work/admin"; then
  echo "unexpected: re-enrolled a revoked key"; exit 1
fi
echo; echo "demo finished (state in $work, removed on exit)"
