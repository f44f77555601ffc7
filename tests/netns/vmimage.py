"""A tiny Linux guest for VM tests: Debian's kernel plus a busybox initramfs, cached.

``guest()`` finds the installed kernel (/boot/vmlinuz-*, package linux-image-cloud-amd64
or linux-image-amd64) and builds, once per kernel version and init script, an
initramfs with busybox-static, the virtio-net modules (with their modules.dep
dependencies, loaded in order) and an /init that reads the kernel command line:

    pyr.dhcp=1               take an address with busybox udhcpc (the DHCP server of
                             issue #8), else
    pyr.ip=A/N pyr.gw=G      configure A/N on eth0 and a default route via G;
    pyr.ping=H pyr.count=N   then ping H N times and print ``PYR-PING-RC=<rc>``;
                             afterwards the guest powers off.

Everything the guest reports goes to the serial console (ttyS0) with a ``PYR-``
prefix, which the test reads from the file QEMU writes.  The cache lives under
$PYROUTER_VM_CACHE or /tmp/pyrouter-vm-cache.  Run as a script to build it by hand:
``python tests/netns/vmimage.py`` prints the kernel and initramfs paths.
"""

from __future__ import annotations

import glob
import gzip
import hashlib
import lzma
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

MODULES = ("virtio_pci", "virtio_net")

INIT = r"""#!/bin/busybox sh
/bin/busybox mkdir -p /proc /sys /dev /sbin /usr/bin /usr/sbin /tmp
/bin/busybox --install -s
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev 2>/dev/null
for m in $(cat /modules.order); do insmod /lib/modules/$m || echo "PYR-INSMOD-FAILED $m"; done
arg() { for w in $(cat /proc/cmdline); do case "$w" in "$1"=*) echo "${w#*=}";; esac; done; }
ip link set lo up
ip link set eth0 up || echo "PYR-NO-ETH0"
i=0; while [ "$(cat /sys/class/net/eth0/carrier 2>/dev/null)" != 1 ] && [ $i -lt 50 ]; do
  sleep 0.1; i=$((i+1)); done
if [ "$(arg pyr.dhcp)" = 1 ]; then
  udhcpc -i eth0 -n -q -t 10 -T 1 -s /udhcpc.sh; echo "PYR-DHCP-RC=$?"
else
  ip addr add "$(arg pyr.ip)" dev eth0
  ip route add default via "$(arg pyr.gw)"
fi
echo "PYR-ADDR $(ip -4 -o addr show dev eth0)"
target=$(arg pyr.ping)
if [ -n "$target" ]; then
  ping -c "$(arg pyr.count)" -W 3 "$target" > /tmp/ping.out 2>&1; rc=$?
  sed 's/^/PYR-PING: /' /tmp/ping.out
  echo "PYR-PING-RC=$rc"
fi
echo "PYR-DONE"
poweroff -f
"""

UDHCPC = r"""#!/bin/sh
case "$1" in
  bound|renew)
    ip addr flush dev "$interface"
    ip addr add "$ip/${mask:-24}" dev "$interface"
    [ -n "$router" ] && ip route add default via "${router%% *}"
    echo "PYR-LEASE ip=$ip router=$router dns=$dns lease=$lease"
    ;;
esac
exit 0
"""


def kernel() -> tuple[str, Path] | None:
    """(version, vmlinuz) of the newest installed Debian kernel with its modules."""
    found = []
    for vmlinuz in glob.glob("/boot/vmlinuz-*"):
        ver = vmlinuz.removeprefix("/boot/vmlinuz-")
        if os.path.isdir(f"/lib/modules/{ver}") and os.access(vmlinuz, os.R_OK):
            found.append((ver, Path(vmlinuz)))
    return max(found) if found else None


def _module_order(ver: str) -> list[str]:
    deps: dict[str, list[str]] = {}
    for line in Path(f"/lib/modules/{ver}/modules.dep").read_text().splitlines():
        mod, _, rest = line.partition(":")
        deps[Path(mod).name.split(".ko")[0]] = [mod, *rest.split()]
    order: list[str] = []
    for name in MODULES:
        if name not in deps:
            continue                           # built into this kernel
        mod, *needs = deps[name]
        for m in [*reversed(needs), mod]:
            if m not in order:
                order.append(m)
    return order


def _cache_dir() -> Path:
    return Path(os.environ.get("PYROUTER_VM_CACHE", "/tmp/pyrouter-vm-cache"))


def guest() -> tuple[Path, Path]:
    """(vmlinuz, initramfs.cpio.gz), building the initramfs if not cached.
    Raises RuntimeError naming what is missing."""
    k = kernel()
    if k is None:
        raise RuntimeError("no kernel in /boot with modules "
                           "(apt-get install linux-image-cloud-amd64)")
    ver, vmlinuz = k
    busybox = shutil.which("busybox") or "/bin/busybox"
    if not os.path.exists(busybox):
        raise RuntimeError("no busybox (apt-get install busybox-static)")
    order = _module_order(ver)
    key = hashlib.sha256("\n".join([ver, INIT, UDHCPC, *order,
                                    str(os.path.getsize(busybox))]).encode()).hexdigest()[:12]
    out = _cache_dir() / f"{ver}-{key}" / "initramfs.cpio.gz"
    if out.exists():
        return vmlinuz, out
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out.parent) as td:
        root = Path(td) / "root"
        for d in ("bin", "lib/modules", "usr/share/udhcpc"):
            (root / d).mkdir(parents=True)
        shutil.copy(busybox, root / "bin" / "busybox")
        names = []
        for m in order:
            src = Path(f"/lib/modules/{ver}") / m
            data = src.read_bytes()
            if m.endswith(".xz"):              # busybox insmod takes plain .ko
                data = lzma.decompress(data)
            elif m.endswith(".gz"):
                data = gzip.decompress(data)
            name = src.name.split(".ko")[0] + ".ko"
            (root / "lib/modules" / name).write_bytes(data)
            names.append(name)
        (root / "modules.order").write_text("\n".join(names) + "\n")
        for path, text in (("init", INIT), ("udhcpc.sh", UDHCPC)):
            (root / path).write_text(text)
            (root / path).chmod(0o755)
        files = sorted(str(p.relative_to(root)) for p in root.rglob("*"))
        cpio = ["cpio", "-o", "-H", "newc", "--quiet"] if shutil.which("cpio") \
            else [busybox, "cpio", "-o", "-H", "newc"]
        raw = subprocess.run(cpio, input="\n".join(files).encode(), cwd=root, check=True,
                             capture_output=True).stdout
        tmp = Path(td) / "initramfs.cpio.gz"
        tmp.write_bytes(gzip.compress(raw, 6))
        os.replace(tmp, out)
    return vmlinuz, out


if __name__ == "__main__":
    try:
        k, i = guest()
    except RuntimeError as e:
        print(e, file=sys.stderr)
        sys.exit(1)
    print(k)
    print(i)
