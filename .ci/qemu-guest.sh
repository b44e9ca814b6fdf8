#!/usr/bin/env bash
# Builds the tiny QEMU guest of the end-to-end tests (packages/http/test/Qemu*.ts, Libvirt*.ts) and prints
# the directory that holds it: vmlinuz (Debian's cloud kernel) and initrd.gz (busybox-static, the virtio-net
# and virtio-blk modules, and an /init that brings eth0 up with the address given on the kernel command line,
# prints "vm-metrics-guest: network up", and pings a peer every 0.2 s).
#
# The guest lives in a cache outside the repository, ${VM_METRICS_CI_CACHE:-/var/cache/vm-metrics-ci}/guest,
# and is built only when it is absent (or was made by an older version of this script). The script installs
# its own apt needs when they are missing (qemu-system-x86 busybox-static cpio iputils-ping), running
# `apt-get update` only when something has to be installed. Everything but the path goes to stderr.
#
# Kernel command line understood by /init (all optional):
#   vmm.ip=10.77.0.2/24   address of eth0        vmm.peer=10.77.0.1   address to ping
#   vmm.interval=0.2      ping interval (s)      vmm.size=1000        ping payload (bytes)
#   vmm.work=20000        loop iterations of guest CPU work per second (0: an idle guest, only pinging)
#   vmm.cmd=ttyS1         a command channel on that serial port (QEMU's second -serial, e.g. a unix socket):
#                         each line read is run by `sh -c`, its output and then "vm-metrics-guest: done <status>"
#                         are written back (the deep end-to-end tests make the guest busy, write to its
#                         virtio-blk disk and use its second NIC this way)
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive

CACHE=${VM_METRICS_CI_CACHE:-/var/cache/vm-metrics-ci}
OUT="$CACHE/guest"
# Bump when the guest's contents change, so that caches made by an older script are rebuilt.
GUEST_VERSION=2

log() { echo "qemu-guest: $*" >&2; }

# --- apt needs --------------------------------------------------------------------------------------------
need=()
command -v qemu-system-x86_64 >/dev/null 2>&1 || need+=(qemu-system-x86)
dpkg-query -W -f='${Status}' busybox-static 2>/dev/null | grep -q 'ok installed' || need+=(busybox-static)
command -v cpio >/dev/null 2>&1 || need+=(cpio)
command -v ping >/dev/null 2>&1 || need+=(iputils-ping)
updated=0
if [ "${#need[@]}" -gt 0 ]; then
  log "installing ${need[*]}"
  apt-get update -qq >&2
  updated=1
  apt-get install -y -qq --no-install-recommends "${need[@]}" >&2
fi

# --- the cache --------------------------------------------------------------------------------------------
if [ -s "$OUT/vmlinuz" ] && [ -s "$OUT/initrd.gz" ] && [ "$(cat "$OUT/version" 2>/dev/null)" = "$GUEST_VERSION" ]; then
  echo "$OUT"
  exit 0
fi

mkdir -p "$CACHE"
exec 9>"$CACHE/guest.lock"
flock 9 # one builder at a time; a second one finds the finished guest below
if [ -s "$OUT/vmlinuz" ] && [ -s "$OUT/initrd.gz" ] && [ "$(cat "$OUT/version" 2>/dev/null)" = "$GUEST_VERSION" ]; then
  echo "$OUT"
  exit 0
fi

BUSYBOX=$(dpkg -L busybox-static | grep -E '/bin/busybox$' | head -1)
[ -x "$BUSYBOX" ] || { log "busybox-static installed but its binary was not found"; exit 1; }

W=$(mktemp -d "$CACHE/guest-build.XXXXXX")
trap 'rm -rf "$W"' EXIT

# The kernel: linux-image-cloud-amd64's current dependency (small, virtio drivers as modules).
kernel_pkg() { apt-cache depends linux-image-cloud-amd64 2>/dev/null | sed -n 's/.*Depends: \(linux-image-.*-cloud-amd64\)$/\1/p' | head -1; }
download_kernel() {
  KPKG=${VM_METRICS_GUEST_KERNEL:-$(kernel_pkg)}
  [ -n "$KPKG" ] && (cd "$W" && apt-get download -qq -o APT::Sandbox::User=root "$KPKG" >&2)
}
# Missing or stale apt lists (no such package, or a version the mirror no longer has): update once, retry.
if ! download_kernel; then
  [ "$updated" = 0 ] || { log "cannot download linux-image-cloud-amd64's kernel (${KPKG:-unresolved})"; exit 1; }
  log "apt lists lack a downloadable linux-image-cloud-amd64; running apt-get update"
  apt-get update -qq >&2
  download_kernel || { log "cannot download linux-image-cloud-amd64's kernel (${KPKG:-unresolved})"; exit 1; }
fi
log "building the guest from $KPKG into $OUT"
dpkg-deb -x "$W"/"$KPKG"_*.deb "$W/kx"
KVER=${KPKG#linux-image-}
MODDIR="$W/kx/lib/modules/$KVER"
[ -f "$W/kx/boot/vmlinuz-$KVER" ] || { log "no vmlinuz-$KVER in $KPKG"; exit 1; }

# --- the initramfs ----------------------------------------------------------------------------------------
R="$W/root"
mkdir -p "$R/bin" "$R/proc" "$R/sys" "$R/dev" "$R/lib/modules"
cp "$BUSYBOX" "$R/bin/busybox"

# virtio_pci and virtio_net with their dependencies, in load order. The .deb ships no modules.dep (depmod
# makes it at install time, and kmod need not be installed), so read each module's own `depends=` from its
# .modinfo strings. Built-in ones (modules.builtin) need no file. Modules are stored uncompressed.
: >"$R/lib/modules/order"
module_file() { # $1: module name (with _) -> its file under $MODDIR, or nothing
  find "$MODDIR/kernel" -type f \( -name "$1.ko*" -o -name "$(echo "$1" | tr _ -).ko*" \) | head -1
}
uncompressed() { # $1: module file -> its bytes on stdout
  case "$1" in
  *.ko) cat "$1" ;;
  *.ko.xz) xz -dc "$1" ;;
  *.ko.zst) zstd -qdc "$1" ;;
  *.ko.gz) gzip -dc "$1" ;;
  *) log "unexpected module file $1"; exit 1 ;;
  esac
}
add_module() { # $1: module name; its dependencies first
  local name=$1 file dep
  grep -qxF "$name.ko" "$R/lib/modules/order" && return 0
  file=$(module_file "$name")
  if [ -z "$file" ]; then
    grep -qE "/$name\.ko$" "$MODDIR/modules.builtin" || { log "$name is neither a module nor built in"; exit 1; }
    return 0
  fi
  uncompressed "$file" >"$R/lib/modules/$name.ko"
  for dep in $(tr '\0' '\n' <"$R/lib/modules/$name.ko" | sed -n 's/^depends=//p' | head -1 | tr ',' ' '); do
    add_module "$(echo "$dep" | tr - _)"
  done
  echo "$name.ko" >>"$R/lib/modules/order"
}
add_module virtio_pci
add_module virtio_net
add_module virtio_blk
log "modules: $(tr '\n' ' ' <"$R/lib/modules/order")"

cat >"$R/init" <<'INIT'
#!/bin/busybox sh
/bin/busybox --install -s /bin
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
while read -r m; do insmod "/lib/modules/$m" || echo "vm-metrics-guest: insmod $m failed"; done </lib/modules/order
ip=""; peer=""; interval=0.2; size=1000; cmd=; work=20000
for a in $(cat /proc/cmdline); do
  case "$a" in
  vmm.ip=*) ip=${a#vmm.ip=} ;;
  vmm.peer=*) peer=${a#vmm.peer=} ;;
  vmm.interval=*) interval=${a#vmm.interval=} ;;
  vmm.size=*) size=${a#vmm.size=} ;;
  vmm.cmd=*) cmd=${a#vmm.cmd=} ;;
  vmm.work=*) work=${a#vmm.work=} ;;
  esac
done
ip link set lo up
i=0
while [ ! -e /sys/class/net/eth0 ] && [ $i -lt 50 ]; do sleep 0.1; i=$((i + 1)); done
ip link set eth0 up
[ -n "$ip" ] && ip addr add "$ip" dev eth0
if [ -n "$cmd" ] && [ -c "/dev/$cmd" ]; then
  # Raw and without echo: the host reads back exactly what the commands print.
  stty -F "/dev/$cmd" raw -echo
  (while read -r line; do
    sh -c "$line" </dev/null
    echo "vm-metrics-guest: done $?"
  done <"/dev/$cmd" >"/dev/$cmd" 2>&1) &
  echo "vm-metrics-guest: commands on $cmd"
fi
echo "vm-metrics-guest: network up eth0 $(cat /sys/class/net/eth0/address) ${ip:-no-address}"
if [ -n "$peer" ]; then ping -q -i "$interval" -s "$size" "$peer" >/dev/null 2>&1 & fi
# A little guest CPU, so that the hypervisor's CPU time keeps moving.
while true; do i=0; while [ $i -lt "$work" ]; do i=$((i + 1)); done; sleep 1; done
INIT
chmod +x "$R/init"

mkdir -p "$W/out"
cp "$W/kx/boot/vmlinuz-$KVER" "$W/out/vmlinuz"
(cd "$R" && find . | cpio -o -H newc --quiet | gzip -1) >"$W/out/initrd.gz"
echo "$KVER" >"$W/out/kernel-version"
echo "$GUEST_VERSION" >"$W/out/version"
rm -rf "$OUT"
mv "$W/out" "$OUT"
log "guest ready: $(du -sh "$OUT" | cut -f1) in $OUT"
echo "$OUT"
