#!/usr/bin/env bash
# The Debian package on this machine: cpack builds it from BUILD_DIR (with
# its fortmesh built); its control file depends on the runtime libraries
# and wireguard-go and on nothing the tests use; it holds what an operator
# needs; `dpkg -i` installs it, the installed `fortmesh version` is this
# build's, and `dpkg --purge` leaves nothing behind but the state directory.
# Root only (exit 77 otherwise), and never over a fortmesh already installed.
set -euo pipefail
build=$1
[ "$(id -u)" -eq 0 ] || { echo "SKIP: installs a package: needs root"; exit 77; }
for t in cpack dpkg dpkg-deb; do command -v $t >/dev/null || { echo "SKIP: no $t"; exit 77; }; done
# One run at a time on a machine (several checkouts may test at once).
exec 9>/run/lock/fortmesh-deb-test.lock
flock -w 300 9 || { echo "FAIL: another deb_test holds the lock for 5 minutes"; exit 1; }
if dpkg-query -W -f='${Status}' fortmesh 2>/dev/null | grep -q "install ok installed"; then
  echo "SKIP: a fortmesh package is installed here already; not touching it"; exit 77
fi

tmp=$(mktemp -d)
user_before=$(getent passwd fortmesh || true)
cleanup() {
  dpkg-query -W -f='${Status}' fortmesh 2>/dev/null | grep -q installed && dpkg --purge fortmesh >/dev/null 2>&1
  [ -n "$user_before" ] || ! getent passwd fortmesh >/dev/null || userdel fortmesh 2>/dev/null || true
  rm -rf "$tmp"
}
trap cleanup EXIT
fail() { echo "FAIL: $*"; exit 1; }
# dpkg refuses at once while apt or another dpkg holds its lock: wait for it.
dpkg_retry() {
  local i out
  for i in $(seq 60); do
    if out=$(dpkg "$@" 2>&1); then return 0; fi
    grep -q "lock" <<<"$out" || { echo "$out"; return 1; }
    sleep 2
  done
  echo "$out"; return 1
}

(cd "$build" && cpack -G DEB -B "$tmp" >"$tmp/cpack.log" 2>&1) || { cat "$tmp/cpack.log"; fail "cpack"; }
deb=$(ls "$tmp"/fortmesh_*.deb)
echo "package: $(basename "$deb"), $(du -k "$deb" | cut -f1) KiB"
depends=$(dpkg-deb -f "$deb" Depends)
echo "Depends: $depends"
for want in wireguard-go libsodium23 libc6 libprotobuf libspdlog; do
  grep -q "$want" <<<"$depends" || fail "Depends lacks $want"
done
grep -Eiq "gtest|gmock|googletest|benchmark|qemu|iperf|linux-image|busybox" <<<"$depends" && fail "Depends has a test dependency"
dpkg-deb -c "$deb" | awk '{print $6}' >"$tmp/files"
for f in ./usr/bin/fortmesh ./usr/lib/systemd/system/fortmesh.service ./usr/share/man/man8/fortmesh.8 \
         ./usr/share/man/man5/fortmesh.conf.5 ./usr/share/bash-completion/completions/fortmesh \
         ./usr/share/zsh/vendor-completions/_fortmesh ./etc/fortmesh/fortmesh.conf ./usr/lib/sysusers.d/fortmesh.conf \
         ./usr/share/doc/fortmesh/install.md; do
  grep -qx "$f" "$tmp/files" || fail "the package lacks $f"
done
grep -q "build\|/tmp" <(dpkg-deb -c "$deb" | awk '{print $6}' | grep -v "^./usr\|^./etc") && fail "stray paths in the package"

dpkg_retry -i "$deb" >/dev/null || fail "dpkg -i"
[ "$(/usr/bin/fortmesh version)" = "$("$build/fortmesh" version)" ] || fail "installed: $(/usr/bin/fortmesh version)"
echo "installed: $(/usr/bin/fortmesh version)"
getent passwd fortmesh >/dev/null || fail "postinst made no fortmesh user"
grep -q "^ExecStart=/usr/bin/fortmesh run" /usr/lib/systemd/system/fortmesh.service || fail "ExecStart"
bash -n /usr/share/bash-completion/completions/fortmesh || fail "bash completion"
/usr/bin/fortmesh --help >/dev/null || fail "fortmesh --help"
# The shipped config, all comments, parses.
/usr/bin/fortmesh --config /etc/fortmesh/fortmesh.conf --state-dir "$tmp/none" version >/dev/null || fail "shipped config"

dpkg_retry --purge fortmesh >/dev/null || fail "dpkg --purge"
for f in /usr/bin/fortmesh /usr/lib/systemd/system/fortmesh.service /etc/fortmesh /usr/share/doc/fortmesh \
         /usr/share/man/man8/fortmesh.8; do
  [ ! -e "$f" ] || fail "$f is left after purge"
done
echo "installed, ran and purged cleanly"
