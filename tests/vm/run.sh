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
# (scripts/setup.sh); exits 77 (skipped) with the reason without them.
set -euo pipefail
binary=$(readlink -f "$1"); shift
kernel=$(ls /boot/vmlinuz-* 2>/dev/null | sort -V | tail -n 1 || true)
[ -n "$kernel" ] || { echo "SKIP: no kernel in /boot (install linux-image-amd64)"; exit 77; }
version=${kernel#/boot/vmlinuz-}
moddir=/lib/modules/$version
for tool in qemu-system-x86_64 cpio modinfo; do
  command -v "$tool" >/dev/null || { echo "SKIP: $tool is not installed"; exit 77; }
done
[ -x /bin/busybox ] || { echo "SKIP: busybox-static is not installed"; exit 77; }
[ -r "$kernel" ] || { echo "SKIP: $kernel is not readable (run as root)"; exit 77; }

work=$(mktemp -d /tmp/fortmesh-vm-XXXXXX)
trap 'rm -rf "$work"' EXIT
root=$work/root
mkdir -p "$root"/{bin,dev,proc,sys,tmp,run,lib/modules,test}

# wireguard.ko and what it needs, dependencies first.
order=()
add_module() {
  local name=$1 path dep
  for seen in "${order[@]:-}"; do [ "$seen" = "$name" ] && return 0; done
  path=$(modinfo -k "$version" -F filename "$name")
  for dep in $(modinfo -k "$version" -F depends "$name" | tr ',' ' '); do add_module "$dep"; done
  order+=("$name")
  cp "$path" "$root/lib/modules/$name.ko${path##*.ko}"
}
add_module wireguard
add_module veth  # for tests that build namespaces inside
# Only crypto that the "generic or arch" choice may want as well.
for extra in libchacha20poly1305 chacha-x86_64 poly1305-x86_64 curve25519-x86_64; do
  modinfo -k "$version" -F filename "$extra" >/dev/null 2>&1 && add_module "$extra"
done

# The binary and the shared libraries it loads, at the same paths.
copy_with_libs() {
  local file=$1 lib
  mkdir -p "$root$(dirname "$file")"
  cp -L "$file" "$root$file"
  for lib in $( (ldd "$file" 2>/dev/null || true) | grep -o '/[^ ]*'); do
    mkdir -p "$root$(dirname "$lib")"
    cp -L "$lib" "$root$lib"
  done
}
copy_with_libs "$binary"
for extra in ${VM_EXTRA:-}; do copy_with_libs "$(readlink -f "$extra")"; done
cp /bin/busybox "$root/bin/busybox"

cat > "$root/init" <<INIT
#!/bin/busybox sh
/bin/busybox --install -s /bin
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
mount -t tmpfs run /run  # (not /tmp: the programs may live under /tmp on the host, and so here)
ip link set lo up
for m in ${order[*]}; do
  f=\$(ls /lib/modules/\$m.ko* 2>/dev/null | head -n 1)
  insmod "\$f" || echo "insmod \$m failed"
done
echo "VM-TEST-START"
$binary $* 2>&1
echo "VM-TEST-EXIT \$?"
poweroff -f
INIT
chmod +x "$root/init"
(cd "$root" && find . | cpio -o -H newc --quiet | gzip -1) > "$work/initramfs.gz"

log=$work/console.log
timeout 600 qemu-system-x86_64 -accel tcg -cpu max -m 1024 -smp 1 -nographic -no-reboot \
  -kernel "$kernel" -initrd "$work/initramfs.gz" \
  -append "console=ttyS0 panic=-1 quiet loglevel=3" >"$log" 2>&1 || true
sed -n '/VM-TEST-START/,/VM-TEST-EXIT/p' "$log" | tr -d '\r'
if grep -q "VM-TEST-EXIT 0" "$log"; then exit 0; fi
echo "---- console (last 40 lines)"
tail -n 40 "$log" | tr -d '\r'
exit 1
