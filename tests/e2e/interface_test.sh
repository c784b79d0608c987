#!/usr/bin/env bash
# One daemon per interface, and wireguard-go's own words in the log:
#  - a second daemon (its own state dir) on a live node's --interface is
#    refused, and the node's wireguard-go is left alone (no restart);
#  - a wireguard-go someone else started on an interface is not taken over;
#  - a wireguard-go that fails says why, in the daemon's error;
#  - an orphaned wireguard-go (its daemon SIGKILLed) is replaced on start.
# About 10 s; root (exit 77 otherwise).
source "$(dirname "$0")/lib.sh"
e2e_start "$1"

mesh_add_host a
fm a keygen >/dev/null
fm a org init --name iface >/dev/null
# b: another node's state on the same host, pointed at a's interface.
mkdir -p "$MESH_DIR/b" && chmod 700 "$MESH_DIR/b"
fm b keygen >/dev/null
fm b org init --name other >/dev/null
ns=$(ns_of a) ifa=${MESH_IF[a]}
run_dir="$MESH_DIR/run"
export RUNTIME_DIRECTORY=$run_dir

mesh_start a --wg-backend userspace --handover-listen off
wait_for 15 fm a status >/dev/null || fail "a did not start"
restarts() { fm a status --json | python3 -c 'import json,sys; print(json.load(sys.stdin).get("wireguard_restarts", 0))'; }
before=$(restarts)

out=$(ip netns exec "$ns" "$FM_BIN" run --state-dir "$MESH_DIR/b" --interface "$ifa" --wg-backend userspace \
  --handover-listen off 2>&1) && fail "a second daemon on $ifa ran"
grep -q "belongs to another running fortmesh (pid ${MESH_PID[a]}" <<<"$out" || fail "refusal: $out"
sleep 6  # past a drift repair: a's wireguard-go must not have been touched
[ "$(restarts)" = "$before" ] || fail "a's wireguard-go restarted"
fm a status >/dev/null || fail "a stopped answering"
echo "a second daemon on a live interface is refused; the live one is untouched"

# A wireguard-go this shell started (its parent is alive): not taken over.
ifx="fmx$MESH_ID"
ip netns exec "$ns" wireguard-go -f "$ifx" >/dev/null 2>&1 &
hand=$!
wait_for 5 test -S "/var/run/wireguard/$ifx.sock" || fail "wireguard-go $ifx"
out=$(ip netns exec "$ns" "$FM_BIN" run --state-dir "$MESH_DIR/b" --interface "$ifx" --wg-backend userspace \
  --handover-listen off 2>&1) && fail "took over a hand-started wireguard-go"
grep -q "live wireguard-go" <<<"$out" || fail "refusal: $out"
kill "$hand"; wait "$hand" 2>/dev/null || true
rm -f "/var/run/wireguard/$ifx.sock"
echo "a hand-started wireguard-go is not taken over"

# A wireguard-go that fails: its own error is the daemon's.
printf '#!/bin/sh\necho "ERROR: (%s) cannot create TUN: no such device" >&2\nexit 1\n' "$ifx" >"$MESH_DIR/bad-wg"
chmod +x "$MESH_DIR/bad-wg"
out=$(ip netns exec "$ns" "$FM_BIN" run --state-dir "$MESH_DIR/b" --interface "$ifx" --wg-backend userspace \
  --wireguard-go "$MESH_DIR/bad-wg" --handover-listen off 2>&1) && fail "ran with a failing wireguard-go"
grep -q "exited at once: ERROR: ($ifx) cannot create TUN: no such device" <<<"$out" || fail "error: $out"
echo "wireguard-go's error is shown: $(grep -o 'exited at once.*' <<<"$out")"

# a dies without cleaning up: its wireguard-go lives on, orphaned; a new
# daemon on the same interface replaces it.
orphan=$(pgrep -P "${MESH_PID[a]}" -f "wireguard-go -f $ifa" || true)
[ -n "$orphan" ] || fail "no wireguard-go under a"
kill -KILL "${MESH_PID[a]}"; wait "${MESH_PID[a]}" 2>/dev/null || true
unset "MESH_PID[a]"
wait_for 5 test "$(ps -o ppid= -p "$orphan" | tr -d ' ')" = 1 || fail "wireguard-go $orphan is not an orphan"
mesh_start a --wg-backend userspace --handover-listen off
wait_for 15 fm a status >/dev/null || fail "a did not start again over its orphan"
! kill -0 "$orphan" 2>/dev/null || fail "the orphan $orphan still runs"
grep -q "was left by a daemon that died: replacing it" "$MESH_DIR/a.log" || fail "no word of the orphan"
echo "an orphaned wireguard-go is replaced on start"
echo "interface ownership ok"
