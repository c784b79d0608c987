#!/usr/bin/env bash
# The shipped unit at boot, under a real systemd as PID 1, in the qemu VM:
#
#   tests/vm/boot_service.sh path/to/fortmesh UNIT_TEMPLATE SYSUSERS
#
# The guest's root is this host's own, read-only over 9p, with a tmpfs
# overlay for writes; an initramfs mounts it and a virtio ext4 disk at
# /var/lib/fortmesh (a node that is the root of its org, made here), puts in
# the binary, the unit (enabled: multi-user.target.wants), sysusers.d and a
# config file choosing wireguard-go, then hands over to systemd. Nobody logs
# in: a oneshot ordered after fortmesh.service asks `fortmesh status`,
# enrolls a key through the running daemon, prints what it saw and powers
# off. The second boot, from the same disk, must find the same node with
# the enrolled op: a reboot keeps the state. Exits 77 (skipped) without the
# kernel, qemu, busybox, systemd or e2fsprogs. About 2 boots of 30-90 s.
set -euo pipefail
here=$(dirname "$(readlink -f "$0")")
. "$here/lib.sh"
[ $# -eq 3 ] || { echo "usage: $0 path/to/fortmesh UNIT_TEMPLATE SYSUSERS" >&2; exit 2; }
fortmesh=$(readlink -f "$1") template=$2 sysusers=$3
boot_limit=${BOOT_LIMIT:-300}
vm_init_host mkfs.ext4
[ -x /lib/systemd/systemd ] || { echo "SKIP: no systemd here to boot (apt-get install systemd)"; exit 77; }
[ "$(id -u)" -eq 0 ] || { echo "SKIP: needs root"; exit 77; }
command -v wireguard-go >/dev/null || { echo "SKIP: wireguard-go is not installed"; exit 77; }

work=$(mktemp -d /tmp/fortmesh-boot-XXXXXX)
qpid=
cleanup() {
  if [ -n "$qpid" ]; then kill -KILL "$qpid" 2>/dev/null || true; fi
  rm -rf "$work"
}
trap cleanup EXIT
[ -n "${BOOT_KEEP:-}" ] && trap "echo kept \$work" EXIT
trap "exit 1" INT TERM
fail() { echo "FAIL: $*"; exit 1; }

# The node: the root of its own org, on the disk the guest mounts.
mkdir -p "$work/state"
FORTMESH_CONFIG= "$fortmesh" keygen --state-dir "$work/state/node" >/dev/null
FORTMESH_CONFIG= "$fortmesh" org init --name bootorg --state-dir "$work/state/node" >/dev/null
key=$(FORTMESH_CONFIG= "$fortmesh" pubkey --state-dir "$work/state/node")
FORTMESH_CONFIG= "$fortmesh" keygen --state-dir "$work/state/other" >/dev/null
other=$(FORTMESH_CONFIG= "$fortmesh" pubkey --state-dir "$work/state/other")
disk=$work/disk.img
truncate -s 64M "$disk"
mkfs.ext4 -q -F -d "$work/state/node" -E lazy_itable_init=0,lazy_journal_init=0 "$disk"

# What the guest adds to the host's root.
p=$work/root/payload
mkdir -p "$p"/usr/bin "$p"/etc/systemd/system/multi-user.target.wants "$p"/usr/lib/sysusers.d "$p"/etc/fortmesh
cp "$fortmesh" "$p/usr/bin/fortmesh"
sed 's#@FM_BINDIR@#/usr/bin#' "$template" >"$p/etc/systemd/system/fortmesh.service"
ln -s ../fortmesh.service "$p/etc/systemd/system/multi-user.target.wants/fortmesh.service"
cp "$sysusers" "$p/usr/lib/sysusers.d/fortmesh.conf"
printf 'wg-backend = "userspace"\ninterface = "fm0"\nhandover-listen = "off"\n' >"$p/etc/fortmesh/fortmesh.conf"
cat >"$p/etc/systemd/system/fortmesh-vmcheck.service" <<UNIT
[Unit]
After=fortmesh.service
Wants=fortmesh.service
[Service]
Type=oneshot
StandardOutput=tty
TTYPath=/dev/ttyS0
ExecStart=/bin/sh -c 'echo "VMCHECK state \$(systemctl show -P ActiveState fortmesh) restarts \$(systemctl show -P NRestarts fortmesh)"; \
  if fortmesh status --json >/tmp/s.json 2>/tmp/s.err; then echo "VMCHECK status \$(tr -d "\\n " </tmp/s.json)"; else echo "VMCHECK nostatus \$(cat /tmp/s.err)"; fi; \
  [ -e /var/lib/fortmesh/enrolled ] || { fortmesh enroll $other --name other --out /tmp/o.join >/dev/null 2>/tmp/e.err && touch /var/lib/fortmesh/enrolled && echo "VMCHECK enrolled" || echo "VMCHECK noenroll \$(cat /tmp/e.err)"; }; \
  systemctl reload fortmesh && echo "VMCHECK reloaded \$(systemctl show -P ActiveState fortmesh)"; \
  echo "VMCHECK owner \$(stat -c %%U /var/lib/fortmesh/node.key) wg \$(ip -br link show fm0 2>&1 | tr -s " ")"; \
  journalctl -b -u fortmesh --no-pager -o cat | tail -n 20 | sed "s/^/VMLOG /"; echo VMCHECK-DONE; systemctl poweroff'
[Install]
WantedBy=multi-user.target
UNIT
ln -s ../fortmesh-vmcheck.service "$p/etc/systemd/system/multi-user.target.wants/fortmesh-vmcheck.service"
# The host's own services and mounts have no business in the guest.
: >"$p/etc/fstab"
for u in getty.target console-getty.service postgresql.service getty@tty1.service serial-getty@ttyS0.service systemd-timesyncd.service \
         e2scrub_reap.service remote-fs.target apt-daily.timer apt-daily-upgrade.timer dpkg-db-backup.timer \
         e2scrub_all.timer fstrim.timer man-db.timer systemd-pstore.service; do
  ln -sf /dev/null "$p/etc/systemd/system/$u"
done

vm_new_root "$work/root"
mkdir -p "$work/root/lower" "$work/root/upper" "$work/root/newroot"
for m in 9pnet_virtio 9p overlay crc32c_generic virtio_pci virtio_blk ext4; do vm_add_module "$m"; done
cat >"$work/root/init" <<INIT
#!/bin/busybox sh
/bin/busybox --install -s /bin
mount -t proc proc /proc; mount -t sysfs sys /sys; mount -t devtmpfs dev /dev
for m in ${vm_modules[*]}; do insmod \$(ls /lib/modules/\$m.ko* | head -n 1) 2>/dev/null; done
mount -t 9p -o trans=virtio,version=9p2000.L,ro,cache=loose host /lower || { echo "VMCHECK no9p"; poweroff -f; }
mount -t tmpfs upper /upper && mkdir -p /upper/u /upper/w
mount -t overlay overlay -o lowerdir=/lower,upperdir=/upper/u,workdir=/upper/w /newroot || { echo "VMCHECK nooverlay"; poweroff -f; }
cp -a /payload/. /newroot/
mkdir -p /newroot/var/lib/fortmesh && mount -t ext4 /dev/vda /newroot/var/lib/fortmesh || { echo "VMCHECK nodisk"; poweroff -f; }
for d in proc sys dev; do mount --move /\$d /newroot/\$d; done
exec switch_root /newroot /lib/systemd/systemd
INIT
chmod +x "$work/root/init"
(cd "$work/root" && find . | cpio -o -H newc --quiet | gzip -1) >"$work/initramfs.gz"

# boot N: powers the VM on and reads its console until it powers off or
# BOOT_LIMIT passes; the VMCHECK lines go to $work/bootN.
boot() {
  local n=$1 start=$SECONDS
  "${vm_qemu[@]}" -initrd "$work/initramfs.gz" -append "$vm_append systemd.show_status=0 systemd.log_level=warning systemd.unified_cgroup_hierarchy=1" \
    -virtfs "local,path=/,mount_tag=host,security_model=passthrough,readonly=on,multidevs=remap" \
    -drive "file=$disk,format=raw,if=virtio" -nic none >"$work/console$n" 2>&1 &
  qpid=$!
  while kill -0 "$qpid" 2>/dev/null && [ $((SECONDS - start)) -lt "$boot_limit" ]; do sleep 1; done
  kill -KILL "$qpid" 2>/dev/null || true
  wait "$qpid" 2>/dev/null || true
  qpid=
  tr -d '\r' <"$work/console$n" | grep -a '^VM' >"$work/boot$n" || true
  echo "boot $n: $((SECONDS - start)) s"
  grep -q VMCHECK-DONE "$work/boot$n" || { tail -n 40 "$work/console$n"; fail "boot $n did not finish"; }
}
field() { sed -n "s/.*\"$2\":\"\{0,1\}\([^,\"]*\).*/\1/p" "$1" | head -n 1; }

boot 1
cat "$work/boot1"
grep -q "^VMCHECK state active" "$work/boot1" || fail "fortmesh.service is not active after boot 1"
grep -q "^VMCHECK status " "$work/boot1" || fail "no status after boot 1"
[ "$(field "$work/boot1" key)" = "$key" ] || fail "boot 1: status is not this node's"
grep -q "^VMCHECK enrolled" "$work/boot1" || fail "the running daemon did not take an enroll"
grep -q "^VMCHECK owner fortmesh wg fm0 " "$work/boot1" || fail "state dir owner or wireguard-go's fm0"
grep -q "^VMCHECK reloaded active" "$work/boot1" || fail "systemctl reload"
grep -q "^VMLOG SIGHUP: reloaded /etc/fortmesh/fortmesh.conf" "$work/boot1" || fail "the reload is not in the journal"
ops1=$(field "$work/boot1" ops)

boot 2
cat "$work/boot2"
grep -q "^VMCHECK state active" "$work/boot2" || fail "fortmesh.service is not active after the reboot"
[ "$(field "$work/boot2" key)" = "$key" ] || fail "the reboot lost the node's key"
ops2=$(field "$work/boot2" ops)
[ "$ops2" -ge 2 ] || fail "the reboot lost the enrolled op (ops $ops2, $ops1 before it)"
echo "booted twice under systemd: fortmesh.service active, status answered, $ops2 ops kept across the reboot"
