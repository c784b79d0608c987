# Sourced by the VM tests (run.sh, power_loss.sh): finds Debian's kernel and
# the host tools, and builds a busybox initramfs that loads kernel modules and
# carries programs with their shared libraries at the same paths.
#
#   vm_init_host [TOOL...]  sets vm_kernel, vm_version and vm_qemu (the qemu
#                           command up to -initrd); exits 77 (skipped) with the
#                           reason when the kernel, qemu, busybox or a TOOL is
#                           missing
#   vm_new_root DIR         an empty initramfs tree in DIR
#   vm_add_module NAME      NAME.ko after its dependencies (modinfo -F depends)
#   vm_add_wireguard        wireguard.ko, veth, and the crypto they may choose
#   vm_copy_with_libs FILE  FILE and the libraries ldd names, at the same paths
#   vm_pack COMMAND OUT     writes /init (mounts, insmods, prints VM-TEST-START,
#                           runs COMMAND, prints VM-TEST-EXIT STATUS, powers
#                           off) and the gzipped cpio OUT
# vm_append is the kernel command line the tests start from.

# no_timer_check: under TCG on a busy host the kernel's IO-APIC timer check can
# fail and panic ("IO-APIC + timer doesn't work"), seen here at load 7.
vm_append="console=ttyS0 panic=-1 quiet loglevel=3 no_timer_check"

vm_init_host() {
  local tool
  vm_kernel=$(ls /boot/vmlinuz-* 2>/dev/null | sort -V | tail -n 1 || true)
  [ -n "$vm_kernel" ] || { echo "SKIP: no kernel in /boot (install linux-image-amd64)"; exit 77; }
  vm_version=${vm_kernel#/boot/vmlinuz-}
  for tool in qemu-system-x86_64 cpio modinfo "$@"; do
    command -v "$tool" >/dev/null || { echo "SKIP: $tool is not installed"; exit 77; }
  done
  [ -x /bin/busybox ] || { echo "SKIP: busybox-static is not installed"; exit 77; }
  [ -r "$vm_kernel" ] || { echo "SKIP: $vm_kernel is not readable (run as root)"; exit 77; }
  vm_qemu=(qemu-system-x86_64 -accel tcg -cpu max -m 1024 -smp 1 -nographic -no-reboot -kernel "$vm_kernel")
}

vm_new_root() {
  vm_root=$1
  vm_modules=()
  mkdir -p "$vm_root"/{bin,dev,proc,sys,tmp,run,lib/modules,test}
  cp /bin/busybox "$vm_root/bin/busybox"
}

vm_add_module() {
  local name=$1 path dep seen
  for seen in "${vm_modules[@]:-}"; do [ "$seen" = "$name" ] && return 0; done
  path=$(modinfo -k "$vm_version" -F filename "$name")
  for dep in $(modinfo -k "$vm_version" -F depends "$name" | tr ',' ' '); do vm_add_module "$dep"; done
  vm_modules+=("$name")
  cp "$path" "$vm_root/lib/modules/$name.ko${path##*.ko}"
}

vm_add_wireguard() {
  local extra
  vm_add_module wireguard
  vm_add_module veth  # for tests that build namespaces inside
  # Only crypto that the "generic or arch" choice may want as well.
  for extra in libchacha20poly1305 chacha-x86_64 poly1305-x86_64 curve25519-x86_64; do
    modinfo -k "$vm_version" -F filename "$extra" >/dev/null 2>&1 && vm_add_module "$extra"
  done
  return 0
}

vm_copy_with_libs() {
  local file=$1 lib
  mkdir -p "$vm_root$(dirname "$file")"
  cp -L "$file" "$vm_root$file"
  for lib in $( (ldd "$file" 2>/dev/null || true) | grep -o '/[^ ]*'); do
    mkdir -p "$vm_root$(dirname "$lib")"
    cp -L "$lib" "$vm_root$lib"
  done
}

vm_pack() {
  local command=$1 out=$2
  cat > "$vm_root/init" <<INIT
#!/bin/busybox sh
/bin/busybox --install -s /bin
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
mount -t tmpfs run /run  # (not /tmp: the programs may live under /tmp on the host, and so here)
ip link set lo up
for m in ${vm_modules[*]}; do
  f=\$(ls /lib/modules/\$m.ko* 2>/dev/null | head -n 1)
  insmod "\$f" || echo "insmod \$m failed"
done
echo "VM-TEST-START"
$command 2>&1
echo "VM-TEST-EXIT \$?"
poweroff -f
INIT
  chmod +x "$vm_root/init"
  (cd "$vm_root" && find . | cpio -o -H newc --quiet | gzip -1) > "$out"
}
