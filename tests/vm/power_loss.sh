#!/usr/bin/env bash
# Power loss in the qemu VM: are acknowledged revocations durable?
#
#   tests/vm/power_loss.sh path/to/fortmesh [TRIALS]     (TRIALS defaults to 3)
#
# The node's state dir lives on a virtio disk (a raw ext4 image in a temp dir
# here). Boot 0 makes the org and enrolls m1..mTRIALS; boot k revokes m(k+1)
# through the running daemon (kernel WireGuard backend), and the moment the
# guest prints "ACKED m(k+1)" this script SIGKILLs qemu: the guest's page
# cache is lost as in a power cut, while what qemu already wrote to the image
# (what the guest flushed to its disk) stays in the host's page cache. Boot
# k+1 first reads the store as the crash left it (fortmesh members --json,
# read-only) and reports it; this script checks that the store opens, that
# m(k+1) and every earlier acknowledged revocation are revoked and that the
# members not yet revoked are still there. So TRIALS trials take TRIALS+1
# boots; the last one stops the daemon and unmounts cleanly, and e2fsck then
# checks the image.
#
# Prints one line per trial and a summary; exits 1 if an acknowledged
# revocation was lost or a boot went wrong, 77 (skipped) without the kernel,
# qemu, busybox, cpio or e2fsprogs. PL_BOOT_LIMIT (seconds, default 180) bounds
# one boot.
set -euo pipefail
here=$(dirname "$(readlink -f "$0")")
. "$here/lib.sh"
[ $# -ge 1 ] || { echo "usage: $0 path/to/fortmesh [TRIALS]" >&2; exit 2; }
fortmesh=$(readlink -f "$1")
trials=${2:-3}
[[ $trials =~ ^[1-9][0-9]*$ ]] || { echo "TRIALS must be a positive number" >&2; exit 2; }
boot_limit=${PL_BOOT_LIMIT:-180}
vm_init_host mkfs.ext4 e2fsck

work=$(mktemp -d /tmp/fortmesh-pl-XXXXXX)
qpid=
cleanup() {
  if [ -n "$qpid" ]; then kill -KILL "$qpid" 2>/dev/null || true; fi
  rm -rf "$work"
}
trap cleanup EXIT
trap "exit 1" INT TERM

vm_new_root "$work/root"
vm_add_wireguard
# The disk: virtio-blk over PCI, ext4 (which wants crc32c from the crypto API).
for m in crc32c_generic virtio_pci virtio_blk ext4; do vm_add_module "$m"; done
vm_copy_with_libs "$fortmesh"
vm_copy_with_libs "$here/power_loss_in_vm.sh"
vm_pack "$here/power_loss_in_vm.sh $fortmesh" "$work/initramfs.gz"

disk=$work/disk.img
truncate -s 512M "$disk"  # sparse; RocksDB preallocates its WAL (about 70 MB)
mkfs.ext4 -q -F -E lazy_itable_init=0,lazy_journal_init=0 "$disk"

# On one console line: the marker first, so that nothing runs between the
# guest's acknowledgement reaching the host and the kill.
on_line() {
  local line=${1%$'\r'} t=${EPOCHREALTIME/./}
  if [[ $line == "ACKED "* ]]; then
    kill -KILL "$qpid" 2>/dev/null || true
    acked=${line#ACKED }
    t_ack=$(( t - start ))
  fi
  printf '%s\n' "$line" >>"$log"
  case $line in
    PL-BOOT) t_boot=$(( t - start )) ;;
    "PL-STORE "*) store=${line#PL-STORE } ;;
    "PL-MEMBER "*) read -r _ name status <<<"$line"; standing[$name]=$status ;;
    "PL-FAIL "*) failed=${line#PL-FAIL } ;;
    PL-DONE) finished=1 ;;
  esac
}

# boot N LIMIT ARGS: powers the VM on with the disk and ARGS on the kernel
# command line, and reads its console until qemu is gone (killed on ACKED,
# powered off, or killed after LIMIT seconds). Sets acked, t_ack, t_boot
# (microseconds after power-on), store, standing[NAME], failed, finished,
# timed_out.
declare -A standing
boot() {
  local n=$1 limit=$2 args=$3 chunk buf= rc con
  acked= t_ack= t_boot= store= failed= finished= timed_out=
  standing=()
  log=$work/boot-$n.log
  : >"$log"
  rm -f "$work/console"
  mkfifo "$work/console"
  start=${EPOCHREALTIME/./}
  "${vm_qemu[@]}" -initrd "$work/initramfs.gz" \
    -drive "file=$disk,format=raw,if=virtio,cache=writeback" \
    -append "$vm_append $args" </dev/null >"$work/console" 2>&1 &
  qpid=$!
  exec {con}<"$work/console"
  while :; do
    if IFS= read -r -t 2 -u "$con" chunk; then
      on_line "$buf$chunk"
      buf=
      continue
    else
      rc=$?
    fi
    buf=$buf$chunk  # a timed-out read keeps the partial line
    if [ "$rc" -le 128 ]; then  # end of file: qemu is gone
      [ -z "$buf" ] || on_line "$buf"
      break
    fi
    if [ -z "$timed_out" ] && [ $(( ${EPOCHREALTIME/./} - start )) -gt $(( limit * 1000000 )) ]; then
      timed_out=1
      kill -KILL "$qpid" 2>/dev/null || true
    fi
  done
  exec {con}<&-
  wait "$qpid" 2>/dev/null || true
  qpid=
}

secs() { awk -v us="$1" 'BEGIN { printf "%.1f", us / 1e6 }'; }
# abort WHAT: a boot did not do its part; the trials cannot go on.
abort() {
  echo "ERROR: $1"
  [ -z "$failed" ] || echo "  the guest says: $failed"
  [ -z "$timed_out" ] || echo "  killed after $limit s"
  echo "---- console of boot $b (last 30 lines)"
  tail -n 30 "$log"
  exit 1
}

lost=0
errors=0
confirmed=()  # acknowledged revocations seen revoked after their crash
boot_us=()
ack_us=()
t0=${EPOCHREALTIME/./}
echo "power_loss: $trials trials, $((trials + 1)) boots, state dir on a virtio ext4 disk, kernel WireGuard backend"
for (( b = 0; b <= trials; b++ )); do
  args="plboot=$b"
  limit=$boot_limit
  if [ "$b" -eq 0 ]; then
    args+=" plsetup=$trials"
    limit=$(( boot_limit + 3 * trials ))  # about a second per enrollment under TCG
  fi
  [ "$b" -ge "$trials" ] || args+=" plrevoke=m$((b + 1))"
  boot "$b" "$limit" "$args"
  [ -n "$t_boot" ] || abort "boot $b did not reach the guest script"
  boot_us+=("$t_boot")

  if [ "$b" -gt 0 ]; then  # judge trial b: m$b was acknowledged in boot b-1
    [ "$store" = ok ] || abort "after trial $b the store does not open: ${store:-no report}"
    verdict=ok
    s=${standing[m$b]:-missing}
    if [ "$s" = revoked ]; then
      confirmed+=("m$b")
    else
      lost=$((lost + 1))
      verdict="LOST: m$b is $s"
    fi
    for name in "${confirmed[@]}"; do
      s=${standing[$name]:-missing}
      [ "$s" = revoked ] && continue
      lost=$((lost + 1))
      verdict+="; LOST: $name, revoked in an earlier trial, is $s"
    done
    for (( i = b + 1; i <= trials; i++ )); do
      s=${standing[m$i]:-missing}
      [ "$s" = active ] && continue
      errors=$((errors + 1))
      verdict+="; ERROR: m$i, not revoked yet, is $s"
    done
    echo "trial $b: revoked m$b, acked $(secs "$prev_ack") s after power-on (boot $(secs "$prev_boot") s), killed; after the crash: store opens, $verdict"
  fi

  if [ "$b" -lt "$trials" ]; then
    [ "$acked" = "m$((b + 1))" ] || abort "boot $b did not acknowledge the revocation of m$((b + 1))"
    if [ "$b" -eq 0 ]; then setup_us=$t_ack; else ack_us+=("$t_ack"); fi
    prev_ack=$t_ack
    prev_boot=$t_boot
  else
    [ -n "$finished" ] || abort "the last boot did not stop the daemon and unmount"
  fi
done
t1=${EPOCHREALTIME/./}

if e2fsck -fn "$disk" >"$work/fsck.log" 2>&1; then
  fsck=clean
else
  fsck="NOT clean"
  errors=$((errors + 1))
  tail -n 20 "$work/fsck.log"
fi
mean() { printf '%s\n' "$@" | awk 'NF { s += $1; n++ } END { if (n) printf "%.1f s", s / n / 1e6; else printf "n/a" }'; }
echo "summary: trials $trials, acknowledged revocations lost $lost, errors $errors;" \
  "power-on to guest script $(mean "${boot_us[@]}"), to ACKED $(mean "${ack_us[@]:-}") (means; the first boot," \
  "which also enrolls $trials members, acked at $(secs "$setup_us") s); $(secs $(( (t1 - t0) / trials ))) s per trial," \
  "$(secs $(( t1 - t0 ))) s in all; file system after the last boot $fsck"
[ "$lost" -eq 0 ] && [ "$errors" -eq 0 ]
