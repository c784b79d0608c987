#!/usr/bin/env bash
# Boots Debian's kernel in qemu (TCG) with a busybox initramfs that loads
# wireguard.ko and its dependencies, and runs one test binary inside; passes
# when the binary exits 0 there.
#
#   tests/vm/run.sh path/to/test-binary-or-script [args...]
#
# VM_EXTRA="file ..." copies more programs (with their libraries) in, at the
# same paths.
#
# Needs linux-image-amd64, qemu-system-x86, busybox-static and cpio
# (scripts/setup.sh --tests); exits 77 (skipped) with the reason without them.
set -euo pipefail
. "$(dirname "$(readlink -f "$0")")/lib.sh"
binary=$(readlink -f "$1"); shift
vm_init_host

work=$(mktemp -d /tmp/fortmesh-vm-XXXXXX)
trap 'rm -rf "$work"' EXIT
vm_new_root "$work/root"
vm_add_wireguard
vm_copy_with_libs "$binary"
for extra in ${VM_EXTRA:-}; do vm_copy_with_libs "$(readlink -f "$extra")"; done
vm_pack "$binary $*" "$work/initramfs.gz"

log=$work/console.log
timeout 600 "${vm_qemu[@]}" -initrd "$work/initramfs.gz" -append "$vm_append" >"$log" 2>&1 || true
sed -n '/VM-TEST-START/,/VM-TEST-EXIT/p' "$log" | tr -d '\r'
if grep -q "VM-TEST-EXIT 0" "$log"; then exit 0; fi
echo "---- console (last 40 lines)"
tail -n 40 "$log" | tr -d '\r'
exit 1
