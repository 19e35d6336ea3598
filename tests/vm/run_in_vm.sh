#!/bin/sh
# Runs a command as root inside a throwaway qemu guest (Debian's 6.1 kernel, TCG) whose
# root is the host's / shared read-only over 9p with a tmpfs overlay, and whose only
# cgroup hierarchy is cgroup v2 at /sys/fs/cgroup with cpu, memory and pids enabled:
# a pure cgroup-v2 node (see MACHINE.md). The guest has no network device.
#   run_in_vm.sh [--systemd] WORKDIR COMMAND [ARGS...]    exit status = the command's
# FERRY_VM_TIMEOUT (seconds, default 840): the guest is killed then, and the console's
# tail printed. FERRY_VM_KEEP_DIRS: more host dirs the guest must see (see KEEP_DIRS).
# WORKDIR (created, writable) receives the initramfs, the guest script and `log`.
# --systemd: the guest boots systemd as PID 1 (the host's own systemd, from the shared /)
# and runs COMMAND as the one unit it starts (ferry-vm-test.service); the host's
# services are masked. Without it a shell script is init and mounts cgroup2 itself.
set -eu
MODE=plain
if [ "${1:-}" = "--systemd" ]; then
  MODE=systemd
  shift
fi
WORK=$1
shift
KVER=$(ls /lib/modules | sort -V | tail -1)
KERNEL=/boot/vmlinuz-$KVER
if [ "$(id -u)" != 0 ]; then
  echo "SKIP: needs root (the guest reads the host's / over 9p as the caller)"
  exit 77
fi
if [ "$MODE" = systemd ] && [ ! -x /lib/systemd/systemd ]; then
  echo "SKIP: --systemd needs /lib/systemd/systemd (the systemd package)"
  exit 77
fi
if ! command -v qemu-system-x86_64 >/dev/null || [ ! -r "$KERNEL" ] || [ ! -x /bin/busybox ]; then
  echo "SKIP: needs qemu-system-x86_64, $KERNEL and /bin/busybox (scripts/setup installs them)"
  exit 77
fi
mkdir -p "$WORK"
WORK=$(cd "$WORK" && pwd)
# What the guest must see at its own path even when it lives in the host's /tmp (a CI
# clone): this source tree, the work dir and FERRY_VM_KEEP_DIRS (e.g. the build dir).
SOURCE_DIR=$(cd "$(dirname "$0")/../.." && pwd)
KEEP_DIRS="$SOURCE_DIR $WORK ${FERRY_VM_KEEP_DIRS:-}"
INITRD_DIR=$(mktemp -d /tmp/ferry-vm-initrd-XXXXXX)
trap 'rm -rf "$INITRD_DIR"' EXIT

# Stage 1 (initramfs): load virtio/9p/overlay, overlay a tmpfs on the host's /, switch root.
mkdir -p "$INITRD_DIR/bin" "$INITRD_DIR/mods"
cp /bin/busybox "$INITRD_DIR/bin/busybox"
MODULES="virtio_ring virtio virtio_pci_modern_dev virtio_pci_legacy_dev virtio_pci netfs fscache 9pnet 9pnet_virtio 9p overlay"
for m in $MODULES; do
  f=$(find "/lib/modules/$KVER/kernel" -name "$m.ko*" | head -1)
  [ -n "$f" ] && cp "$f" "$INITRD_DIR/mods/"
done
cat > "$INITRD_DIR/init" <<INIT
#!/bin/busybox sh
B=/bin/busybox
\$B mkdir -p /proc /sys /dev /lower /upper /newroot
\$B mount -t proc proc /proc
\$B mount -t devtmpfs dev /dev
for m in $MODULES; do [ -e /mods/\$m.ko ] && \$B insmod /mods/\$m.ko; done
\$B mount -t 9p -o trans=virtio,version=9p2000.L,ro host /lower
\$B mount -t tmpfs tmpfs /upper
\$B mkdir -p /upper/u /upper/w
\$B mount -t overlay overlay -o lowerdir=/lower,upperdir=/upper/u,workdir=/upper/w /newroot
\$B mkdir -p /newroot/ferry-vm
\$B mount -t 9p -o trans=virtio,version=9p2000.L out /newroot/ferry-vm
\$B mount --move /dev /newroot/dev
\$B umount /proc
if [ -e /newroot/ferry-vm/systemd-units ]; then
  # systemd mode: the test unit and the masks go into the guest's writable /etc.
  \$B cp /newroot/ferry-vm/systemd-units/* /newroot/etc/systemd/system/
  for unit in \$(\$B cat /newroot/ferry-vm/masked-units); do
    \$B ln -sf /dev/null /newroot/etc/systemd/system/\$unit
  done
  # systemd-tmpfiles would empty /tmp, which is the host's (a CI clone may live there).
  \$B mkdir -p /newroot/etc/tmpfiles.d
  \$B ln -sf /dev/null /newroot/etc/tmpfiles.d/tmp.conf
  # The host is a container (/.dockerenv): systemd would believe it is one too and
  # ignore the kernel command line. The guest is a VM; hide the marker.
  \$B rm -f /newroot/.dockerenv
  exec \$B switch_root /newroot /lib/systemd/systemd --unit=ferry-vm-test.service --show-status=0
fi
exec \$B switch_root /newroot /bin/sh /ferry-vm/guest.sh
INIT
chmod +x "$INITRD_DIR/init"
(cd "$INITRD_DIR" && find . | cpio -o -H newc 2>/dev/null | gzip -1 > "$WORK/initramfs.cpio.gz")

# Stage 2 (on the overlay root): a pure cgroup-v2 node, then the command.
rm -rf "$WORK/systemd-units" "$WORK/masked-units"
{
  echo '#!/bin/sh'
  if [ "$MODE" = plain ]; then
    echo 'mount -t proc proc /proc; mount -t sysfs sys /sys; mount -t cgroup2 cgroup2 /sys/fs/cgroup'
    echo 'mount -t tmpfs tmpfs /run'
    # Terminals for exec -t, as on any node; and a PATH, which init does not get.
    echo 'mkdir -p /dev/pts /dev/shm && mount -t devpts -o ptmxmode=0666 devpts /dev/pts && mount -t tmpfs tmpfs /dev/shm'
    echo 'export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin'
    echo 'echo "+cpu +memory +pids" > /sys/fs/cgroup/cgroup.subtree_control'
    # Container rootfs overlays cannot put their upper dirs on the guest's overlay root
    # (EINVAL), and the tests keep theirs under /tmp: /tmp becomes a tmpfs, as a node's
    # disk would be, with the trees under test bound back at their own paths.
    echo 'mkdir -p /run/host-tmp && mount --bind /tmp /run/host-tmp && mount -t tmpfs -o mode=1777 tmpfs /tmp'
    for dir in $KEEP_DIRS; do
      case $dir in
        /tmp/*) echo "mkdir -p '$dir' && mount --bind '/run/host-tmp/${dir#/tmp/}' '$dir'" ;;
      esac
    done
  fi
  # What a node's agent needs: pod veths on a bridge, nftables NAT (masquerade, NodePort).
  echo 'modprobe -qa veth bridge br_netfilter nf_tables nft_nat nft_masq nft_chain_nat nft_ct nft_numgen nft_fib_ipv4'
  echo 'echo "guest: $(uname -r), cgroup controllers: $(cat /sys/fs/cgroup/cgroup.subtree_control)"'
  echo 'echo "vm: guest booted, command starts at $(cut -d" " -f1 /proc/uptime) s of uptime" > /ferry-vm/log'
  printf 'cd /tmp && ('
  for arg in "$@"; do printf "'%s' " "$(printf '%s' "$arg" | sed "s/'/'\\\\''/g")"; done
  echo ') >> /ferry-vm/log 2>&1; echo $? > /ferry-vm/rc'
  echo 'sync; echo o > /proc/sysrq-trigger; sleep 30'
} > "$WORK/guest.sh"
APPEND="console=ttyS0 quiet panic=-1 rdinit=/init"
if [ "$MODE" = systemd ]; then
  mkdir -p "$WORK/systemd-units"
  cat > "$WORK/systemd-units/ferry-vm-test.service" <<UNIT
[Unit]
Description=Ferry VM test command
[Service]
Type=oneshot
ExecStart=/bin/sh /ferry-vm/guest.sh
UNIT
  # Whatever the host enables would start in the guest too: only the test runs.
  ls /etc/systemd/system/*.wants/ 2>/dev/null | grep -E '\.(service|timer|target|socket)$' | sort -u > "$WORK/masked-units"
  echo "getty@tty1.service serial-getty@ttyS0.service" >> "$WORK/masked-units"
fi

# A guest that hangs is stopped here, before CTest's own timeout (which would kill this
# script too, and lose the console tail): set FERRY_VM_TIMEOUT below the test's TIMEOUT.
# The guest kernel panics on a soft lockup (softlockup_panic=1): once in CI both vCPUs of
# a TCG guest sat in the kernel for 600+ s (kubectl and ferry, no progress, no trace in
# the tail). A kernel hang is not the command's verdict: it is reported with its first
# trace and the guest is booted once more within the same time budget.
VM_TIMEOUT=${FERRY_VM_TIMEOUT:-840}
started=$(date +%s)
boot_guest() {
  rm -f "$WORK/rc" "$WORK/log"
  status=0
  timeout "$1" qemu-system-x86_64 -accel tcg -m 1536 -smp 2 -nographic -no-reboot -net none \
    -kernel "$KERNEL" -initrd "$WORK/initramfs.cpio.gz" \
    -append "$APPEND softlockup_panic=1" \
    -fsdev local,id=hostroot,path=/,security_model=none,readonly=on,multidevs=remap \
    -device virtio-9p-pci,fsdev=hostroot,mount_tag=host \
    -fsdev local,id=out,path="$WORK",security_model=none,multidevs=remap \
    -device virtio-9p-pci,fsdev=out,mount_tag=out > "$WORK/console" 2>&1 || status=$?
}
boot_guest "$VM_TIMEOUT"
if [ ! -s "$WORK/rc" ] && [ "$status" != 124 ] && grep -q "Kernel panic" "$WORK/console"; then
  echo "vm: the guest kernel failed after $(($(date +%s) - started)) s (not the command); its log and first trace:"
  cat "$WORK/log" 2>/dev/null || true
  grep -m1 -A40 -E "soft lockup|Kernel panic|rcu.*stall" "$WORK/console" || true
  cp "$WORK/console" "$WORK/console.failed-boot"
  left=$((VM_TIMEOUT - ($(date +%s) - started)))
  if [ "$left" -gt 60 ]; then
    echo "vm: booting the guest again ($left s left)"
    boot_guest "$left"
  fi
fi
cat "$WORK/log" 2>/dev/null || true
echo "vm: guest ran $(($(date +%s) - started)) s"
if [ ! -s "$WORK/rc" ]; then
  if [ "$status" = 124 ]; then
    echo "guest killed after ${VM_TIMEOUT} s without a result; console:"
  else
    echo "guest did not report a result (qemu exit status $status); console:"
  fi
  tail -30 "$WORK/console"
  exit 1
fi
exit "$(cat "$WORK/rc")"
