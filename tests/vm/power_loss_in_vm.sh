#!/bin/sh
# Inside the VM, one boot of tests/vm/power_loss.sh. The node's state dir is
# on the virtio disk /dev/vda (ext4); the host gives this boot's orders on the
# kernel command line:
#   plsetup=N      first boot: make the org and enroll members m1..mN
#   plrevoke=NAME  revoke NAME through the running daemon, print ACKED NAME and
#                  wait for the host to cut the power
# Every boot after the first prints what the store holds after the crash
# (PL-STORE, then PL-MEMBER NAME STATUS lines) before it writes anything, and
# starts the daemon on it. Without plrevoke it stops the daemon, unmounts and
# prints PL-DONE. The host judges; this script only reports.
#
#   power_loss_in_vm.sh /path/to/fortmesh
set -u
fm=$1
dir=/mnt/fm
setup=
revoke=
for word in $(cat /proc/cmdline); do
  case $word in
    plsetup=*) setup=${word#plsetup=} ;;
    plrevoke=*) revoke=${word#plrevoke=} ;;
  esac
done
echo "PL-BOOT"
fail() { echo "PL-FAIL $*"; [ -f /run/fm.log ] && tail -n 20 /run/fm.log; exit 1; }
wait_for() {  # seconds, command...
  n=$(( $1 * 10 )); shift
  while ! "$@" >/dev/null 2>&1; do
    n=$(( n - 1 )); [ "$n" -gt 0 ] || return 1
    sleep 0.1
  done
}

wait_for 10 test -b /dev/vda || fail "no /dev/vda"
mkdir -p /mnt
mount -t ext4 /dev/vda /mnt || fail "cannot mount /dev/vda"

if [ -n "$setup" ]; then
  [ ! -e "$dir" ] || fail "plsetup on a disk that already has $dir"
  $fm keygen --state-dir "$dir" >/dev/null || fail "keygen"
  $fm org init --name vm --state-dir "$dir" >/dev/null || fail "org init"
  mkdir -p /run/keys
  i=1
  while [ "$i" -le "$setup" ]; do
    $fm keygen --state-dir "/run/keys/m$i" >/dev/null || fail "keygen m$i"
    $fm enroll "$($fm pubkey --state-dir "/run/keys/m$i")" --name "m$i" --out "/run/m$i.join" \
      --state-dir "$dir" >/dev/null || fail "enroll m$i"
    i=$(( i + 1 ))
  done
  echo "PL-SETUP $setup"
else
  # Read-only, before the daemon replays or writes anything.
  if json=$($fm members --json --state-dir "$dir" 2>&1); then
    echo "PL-STORE ok"
  else
    echo "PL-STORE failed: $(echo "$json" | head -n 3 | tr '\n' ' ')"
    fail "the store does not open"
  fi
  echo "$json" | awk -F'"' '$2 == "name" { name = $4 } $2 == "status" { print "PL-MEMBER " name " " $4 }'
fi

$fm run --state-dir "$dir" --wg-backend kernel --interface fm0 >/run/fm.log 2>&1 &
daemon=$!
wait_for 60 $fm status --state-dir "$dir" || fail "the daemon does not answer"
echo "PL-DAEMON up"

if [ -n "$revoke" ]; then
  out=$($fm revoke "$revoke" --reason t --state-dir "$dir" 2>&1) || fail "revoke $revoke: $out"
  case $out in
    *"running daemon"*) ;;
    *) fail "the revoke did not go through the daemon: $out" ;;
  esac
  echo "ACKED $revoke"
  # Nothing here syncs or unmounts: the host kills qemu on the line above.
  sleep 120
  echo "PL-FAIL the host did not cut the power"
  exit 1
fi

kill -TERM "$daemon"
wait "$daemon" || fail "the daemon did not stop cleanly"
umount /mnt || fail "umount"
echo "PL-DONE"
