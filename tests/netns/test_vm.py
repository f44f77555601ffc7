"""A real VM behind pyrouter: Debian's kernel with a busybox initramfs (tests/netns/vmimage.py)
under qemu-system-x86_64 (TCG), attached through the qemu socket port, pings a host in a
namespace behind an ordinary TAP port of the router.

Three attachments, one VM boot each (about 7-10 s under TCG):
* ``qemu-listens``: QEMU ``-netdev stream,server=on``, pyrouter ``qemu: {server: false}``
  connects; pyrouter starts first, so it also goes through its reconnect backoff; after
  the guest powers off a second QEMU is started on the same socket and served again;
* ``pyrouter-listens``: pyrouter ``qemu: {server: true}``, QEMU ``server=off`` connects;
* ``dgram``: ``-netdev dgram`` over two Unix datagram sockets.
With PYROUTER_TARGET=kernel one run (``qemu-listens`` only) puts the VM on a QEMU TAP in
the router namespace of a kernel router instead.

The guest gets a static address from its kernel command line (``pyr.ip``/``pyr.gw``);
``pyr.dhcp=1`` makes it run udhcpc instead, as it does on both targets: against busybox
udhcpd on QEMU's TAP (kernel) or pyrouter's own server (``interfaces.vm0.dhcp``).  The test
reads the ping result from the serial console file.  QEMU is killed at teardown.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path
from typing import Any

import pytest

from .conftest import TARGET, ip, nsexec, wait_for
from .lab import Lab, kernel_port, lab_fixture, tap_to  # noqa: F401  (the lab fixture)
from .vmimage import guest

BOOT_TIMEOUT = 50.0
VM_MAC = "52:54:00:00:03:02"
PYROUTER_DHCP = True         # the guest asks pyrouter's DHCP server for its address
UDHCPD_CONF = """start 10.0.3.100
end 10.0.3.110
interface {tap}
lease_file {leases}
pidfile {pidfile}
opt subnet 255.255.255.0
opt router 10.0.3.1
opt lease 600
"""


def qemu_cmd(lab: Lab, netdev: str, serial: Path, append: str) -> list[str]:
    vmlinuz, initrd = guest()
    return ["ip", "netns", "exec", lab.r, "qemu-system-x86_64", "-accel", "tcg", "-m", "256",
            "-smp", "1", "-nodefaults", "-no-user-config", "-display", "none",
            "-serial", f"file:{serial}", "-monitor", "none", "-no-reboot",
            "-kernel", str(vmlinuz), "-initrd", str(initrd),
            "-append", f"console=ttyS0 panic=-1 loglevel=4 ipv6.disable=1 {append}",
            "-netdev", netdev, "-device", f"virtio-net-pci,netdev=n0,romfile=,mac={VM_MAC}"]


def check_guest(lab: Lab, qemu: Any, serial: Path, what: str, dhcp: bool) -> None:
    """Wait for the guest to finish, then check its lease (with DHCP) and its pings."""
    t0 = time.monotonic()

    def done() -> bool:
        if qemu.poll() is not None:
            return True
        return serial.exists() and "PYR-DONE" in serial.read_text(errors="replace")

    wait_for(done, BOOT_TIMEOUT, interval=0.2, what="the guest to finish")
    text = serial.read_text(errors="replace") if serial.exists() else ""
    print(f"{what}: guest done after {time.monotonic() - t0:.1f} s")
    if dhcp:
        assert "PYR-LEASE ip=10.0.3.1" in text and "router=10.0.3.1" in text, text[-3000:]
    assert "PYR-PING-RC=0" in text and "3 packets received" in text, (
        f"serial:\n{text[-3000:]}\nrouter:\n{lab.log_text()[-3000:]}")


@pytest.fixture(scope="module")
def vm_ready() -> None:
    if shutil.which("qemu-system-x86_64") is None:
        pytest.skip("no qemu-system-x86_64 (apt-get install qemu-system-x86)")
    try:
        guest()
    except RuntimeError as e:
        pytest.skip(str(e))


@pytest.mark.parametrize("mode", ["qemu-listens", "pyrouter-listens", "dgram"])
def test_vm_pings_a_host_behind_the_router(lab: Lab, vm_ready: None, mode: str) -> None:
    if TARGET == "kernel" and mode != "qemu-listens":
        pytest.skip("the kernel target has no socket backends: one TAP run suffices")
    h2 = lab.netns("h2")
    b = lab.name("b")
    qsock, psock = f"/tmp/pp-{lab.token}-q.sock", f"/tmp/pp-{lab.token}-p.sock"
    serial = lab.tmp / "serial.log"
    dhcp = TARGET == "kernel" or PYROUTER_DHCP
    addr = "pyr.dhcp=1" if dhcp else "pyr.ip=10.0.3.2/24 pyr.gw=10.0.3.1"
    append = f"{addr} pyr.ping=10.0.2.2 pyr.count=3"
    try:
        if TARGET == "kernel":
            tap = lab.name("q")
            kernel_port(lab, h2, b, "10.0.2.1/24", "10.0.2.2/24")
            nsexec(lab.r, "sysctl", "-qw", "net.ipv4.ip_forward=1", check=True)
            netdev = f"tap,id=n0,ifname={tap},script=no,downscript=no"
            qemu = lab.spawn(qemu_cmd(lab, netdev, serial, append), lab.tmp / "qemu.out")
            wait_for(lambda: nsexec(lab.r, "ip", "link", "show", tap).returncode == 0, 10,
                     what="QEMU's TAP")
            ip("-n", lab.r, "addr", "add", "10.0.3.1/24", "dev", tap)
            ip("-n", lab.r, "link", "set", tap, "up")
            conf = lab.tmp / "udhcpd.conf"
            conf.write_text(UDHCPD_CONF.format(tap=tap, leases=lab.tmp / "leases",
                                               pidfile=lab.tmp / "udhcpd.pid"))
            (lab.tmp / "leases").touch()
            lab.spawn(["ip", "netns", "exec", lab.r, "busybox", "udhcpd", "-f", str(conf)],
                      lab.tmp / "udhcpd.out")
        else:
            qemu_cfg = {
                "qemu-listens": {"mode": "stream", "path": qsock},
                "pyrouter-listens": {"mode": "stream", "path": qsock, "server": True},
                "dgram": {"mode": "dgram", "local": psock, "remote": qsock},
            }[mode]
            netdev = {
                "qemu-listens": f"stream,id=n0,server=on,addr.type=unix,addr.path={qsock}",
                "pyrouter-listens": f"stream,id=n0,server=off,addr.type=unix,addr.path={qsock}",
                "dgram": (f"dgram,id=n0,local.type=unix,local.path={qsock},"
                          f"remote.type=unix,remote.path={psock}"),
            }[mode]
            nsexec(lab.r, "sysctl", "-qw", "net.ipv4.ip_forward=0", check=True)
            lab.start({"interfaces": {
                "vm0": {"kind": "qemu", "qemu": qemu_cfg, "addresses": ["10.0.3.1/24"],
                        "dhcp": {"pool": ["10.0.3.100", "10.0.3.110"]}},
                b: tap_to(h2, "10.0.2.1/24", "10.0.2.2/24")}})
            qemu = lab.spawn(qemu_cmd(lab, netdev, serial, append), lab.tmp / "qemu.out")
        check_guest(lab, qemu, serial, mode, dhcp)
        if TARGET == "pyrouter" and mode != "dgram":
            events = lab.log_text()
            assert '"qemu.connected"' in events and '"link.up"' in events
        if TARGET == "pyrouter" and mode == "qemu-listens":
            # The VM powers off (QEMU exits, its socket goes): pyrouter's carrier drops, it
            # retries with backoff, and a new QEMU on the same socket is served again.
            qemu.wait(10)
            wait_for(lambda: lab.log_text().count('"qemu.disconnected"') == 1, 5,
                     what="pyrouter to notice QEMU's exit")
            serial2 = lab.tmp / "serial2.log"
            qemu = lab.spawn(qemu_cmd(lab, netdev, serial2, append), lab.tmp / "qemu2.out")
            check_guest(lab, qemu, serial2, mode + " (restarted)", dhcp)
            assert lab.log_text().count('"qemu.connected"') == 2
    finally:
        for p in (qsock, psock):
            Path(p).unlink(missing_ok=True)
