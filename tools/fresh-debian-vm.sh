#!/bin/bash
# usage: tools/fresh-debian-vm.sh CHECKOUT [COMMAND] [TIMEOUT_S]   (as root)
# Runs COMMAND (default: make demo) from CHECKOUT's committed state inside a virtual machine
# that is a stock Debian 12: Debian's own kernel, systemd, and so cgroup v2 (unified), as on
# the machines users have (our own machines are cgroup v1 hybrids). Debian packages and the
# venv are installed natively first (make deps venv, in a chroot of the VM's root), then the VM
# boots under qemu (software emulation: expect Python to be several times slower than here)
# and runs COMMAND in /root/corral. Prints the VM's output and exits with COMMAND's status.
set -u
src=${1:?usage: fresh-debian-vm.sh CHECKOUT [COMMAND] [TIMEOUT_S]}; cmd=${2:-make demo}; limit=${3:-1200}
for fd in /proc/$$/fd/*; do fd=${fd##*/}; [ "$fd" -gt 2 ] 2>/dev/null && eval "exec $fd>&-" 2>/dev/null; done
exec </dev/null
need=""; for p in mmdebstrap qemu-system-x86 e2fsprogs; do dpkg-query -W -f='${Status}' $p 2>/dev/null | grep -q "ok installed" || need="$need $p"; done
[ -z "$need" ] || DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $need >/dev/null
W=$(mktemp -d /var/tmp/fresh-vm.XXXXXX); R=$W/root; IMG=$W/disk.img
cleanup() {
  for m in $(grep " $W" /proc/mounts | awk '{print $2}' | sort -r); do umount -l "$m" 2>/dev/null; done
  grep -q " $W" /proc/mounts || rm -rf "$W"
}
trap cleanup EXIT
mmdebstrap --variant=minbase \
  --include=systemd-sysv,udev,linux-image-amd64,python3,python3-venv,make,git,ca-certificates,iproute2,kmod,procps \
  bookworm "$R" "deb http://deb.debian.org/debian bookworm main" \
  "deb http://deb.debian.org/debian bookworm-updates main" \
  "deb http://deb.debian.org/debian-security bookworm-security main" >"$W/mmdebstrap.log" 2>&1 \
  || { echo "mmdebstrap failed (see $W/mmdebstrap.log)"; trap - EXIT; exit 2; }
git clone -q "$src" "$R/root/corral"
[ -d "$src/../shared" ] && cp -a "$src/../shared" "$R/root/shared"
# install natively, in a chroot of the VM's root, with this machine's package access
cp /etc/resolv.conf "$R/etc/resolv.conf"
cp /etc/ssl/certs/ca-certificates.crt "$R/etc/ssl/certs/ca-certificates.crt"
mkdir -p "$R/root/.config/pip"; cp ~/.config/pip/pip.conf "$R/root/.config/pip/" 2>/dev/null
# the local folders this machine's pip configuration names (find-links, file:// indexes), if any
pipdirs=$( (python3 -m pip config list 2>/dev/null; echo "${PIP_FIND_LINKS:-}") | grep -oE "(file://)?/[^ ',\"]+" | sed 's#^file://##' | sort -u)
for d in $pipdirs; do d=${d%/}; d=${d%/simple}; [ -d "$d" ] && mkdir -p "$R$d" && mount --bind "$d" "$R$d"; done
mount -t proc proc "$R/proc"; mount --rbind /dev "$R/dev"; mount --make-rslave "$R/dev"
chroot "$R" /usr/bin/env -i HOME=/root PATH=/usr/sbin:/usr/bin:/sbin:/bin \
  PIP_CERT=/etc/ssl/certs/ca-certificates.crt PIP_FIND_LINKS="${PIP_FIND_LINKS:-}" PIP_DISABLE_PIP_VERSION_CHECK=1 \
  bash -c "cd /root/corral && make deps venv" >"$W/install.log" 2>&1 \
  || { echo "make deps venv failed in the VM's root:"; tail -20 "$W/install.log"; exit 1; }
for m in $(grep " $R/" /proc/mounts | awk '{print $2}' | sort -r); do umount -l "$m"; done
# the VM: DHCP on its NIC, no login on the serial console, COMMAND at boot, then power off
echo "nameserver 10.0.2.3" > "$R/etc/resolv.conf"; echo freshvm > "$R/etc/hostname"
printf '127.0.0.1 localhost\n127.0.1.1 freshvm\n' > "$R/etc/hosts"
echo "/dev/vda / ext4 rw,errors=remount-ro 0 1" > "$R/etc/fstab"
mkdir -p "$R/etc/systemd/network"; printf '[Match]\nName=en* eth*\n[Network]\nDHCP=yes\n' > "$R/etc/systemd/network/20-wired.network"
ln -sf /lib/systemd/system/systemd-networkd.service "$R/etc/systemd/system/multi-user.target.wants/"
ln -sf /dev/null "$R/etc/systemd/system/serial-getty@ttyS0.service"
printf '%s\n' "$cmd" > "$R/root/vm-command"
cat > "$R/root/vm-run.sh" <<'RUN'
#!/bin/bash
cd /root/corral
echo "=== VM: kernel $(uname -r), /sys/fs/cgroup is $(stat -fc %T /sys/fs/cgroup)"
export HOME=/root CI=true PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
bash -c "$(cat /root/vm-command)" 2>&1 | tee /root/vm-output.log
echo "${PIPESTATUS[0]}" > /root/vm-status
echo "=== VM: command exited $(cat /root/vm-status)"
sync; systemctl poweroff
RUN
chmod +x "$R/root/vm-run.sh"
cat > "$R/etc/systemd/system/vm-run.service" <<'UNIT'
[Unit]
Description=run the command given to the VM
After=network-online.target systemd-networkd.service
Wants=network-online.target
[Service]
Type=oneshot
ExecStart=/root/vm-run.sh
StandardOutput=tty
StandardError=tty
TTYPath=/dev/ttyS0
TimeoutStartSec=infinity
[Install]
WantedBy=multi-user.target
UNIT
ln -sf /etc/systemd/system/vm-run.service "$R/etc/systemd/system/multi-user.target.wants/vm-run.service"
kernel=$(ls "$R"/boot/vmlinuz-* | head -1); initrd=$(ls "$R"/boot/initrd.img-* | head -1)
cp "$kernel" "$W/vmlinuz"; cp "$initrd" "$W/initrd"
mkfs.ext4 -q -d "$R" -L root "$IMG" 12G || { echo "mkfs.ext4 failed"; exit 2; }
rm -rf "$R"
timeout "$limit" qemu-system-x86_64 -accel tcg,thread=multi -cpu max -smp 2 -m 6144 -nographic -no-reboot \
  -kernel "$W/vmlinuz" -initrd "$W/initrd" -append "root=/dev/vda rw console=ttyS0,115200 panic=-1 quiet" \
  -drive "file=$IMG,format=raw,if=virtio" -netdev user,id=n0 -device virtio-net-pci,netdev=n0 \
  2>/dev/null | tr -d '\r' | grep -av '^\s*$' | sed -n '/=== VM: kernel/,$p'
q=${PIPESTATUS[0]}; [ "$q" = 124 ] && echo "=== the VM ran past ${limit}s and was stopped"
mkdir -p "$W/mnt" && mount -o loop,ro "$IMG" "$W/mnt" 2>/dev/null
status=$(cat "$W/mnt/root/vm-status" 2>/dev/null || echo 125)
umount "$W/mnt" 2>/dev/null
exit "$status"
