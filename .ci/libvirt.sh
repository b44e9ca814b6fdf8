#!/usr/bin/env bash
# Makes a real libvirtd (qemu:///system) available for packages/http/test/Libvirt.e2e.test.ts and prints OK:
# installs libvirt-daemon, its QEMU driver and virsh when missing (`apt-get update` only then), prepares what a
# machine without systemd lacks (directories, the libvirt-qemu user), writes /etc/libvirt/qemu.conf so that
# QEMU runs as root without namespaces, cgroups or a security driver (a CI machine: nothing is backed up), and
# starts `libvirtd -d` unless it is already running. No libvirt network is defined: the test brings its own TAP.
# Needs root. The guest itself comes from .ci/qemu-guest.sh.
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive

log() { echo "libvirt: $*" >&2; }

need=()
for pkg in libvirt-daemon libvirt-daemon-driver-qemu libvirt-clients; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'ok installed' || need+=("$pkg")
done
if [ "${#need[@]}" -gt 0 ]; then
  log "installing ${need[*]}"
  apt-get update -qq >&2
  apt-get install -y -qq --no-install-recommends "${need[@]}" >&2
fi

mkdir -p /var/log/libvirt/qemu /var/lib/libvirt/qemu /run/libvirt /var/cache/libvirt
getent group libvirt-qemu >/dev/null || groupadd -r libvirt-qemu
getent passwd libvirt-qemu >/dev/null ||
  useradd -r -g libvirt-qemu -d /var/lib/libvirt -s /usr/sbin/nologin libvirt-qemu

conf=$(cat <<'CONF'
# Written by .ci/libvirt.sh for the end-to-end tests (a CI machine without systemd or cgroup delegation).
user="root"
group="root"
dynamic_ownership=0
remember_owner=0
security_driver="none"
stdio_handler="file"
namespaces=[]
cgroup_controllers=[]
CONF
)
restart=0
if [ "$(cat /etc/libvirt/qemu.conf 2>/dev/null)" != "$conf" ]; then
  mkdir -p /etc/libvirt
  printf '%s\n' "$conf" >/etc/libvirt/qemu.conf
  restart=1
fi

running() { [ -f /run/libvirtd.pid ] && kill -0 "$(cat /run/libvirtd.pid)" 2>/dev/null; }
if running && [ "$restart" = 1 ]; then
  pid=$(cat /run/libvirtd.pid)
  log "qemu.conf changed: restarting libvirtd (pid $pid)"
  kill -TERM "$pid"
  for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
fi
if ! running; then
  log "starting libvirtd -d"
  /usr/sbin/libvirtd -d
fi
for _ in $(seq 100); do
  if virsh -c qemu:///system version >/dev/null 2>&1; then
    log "$(virsh -c qemu:///system version | tr '\n' ' ' | tr -s ' ')"
    echo OK
    exit 0
  fi
  sleep 0.1
done
log "libvirtd did not answer on qemu:///system within 10 s; /var/log/libvirt/libvirtd.log:"
tail -20 /var/log/libvirt/libvirtd.log >&2 2>/dev/null || true
exit 1
