"""AF_PACKET ports: attach the router to an existing kernel interface (packet(7)), as
containerlab gives a container its eth1..N veths.

Two sockets on the device named by ``device:``:
* rx: ``socket(AF_PACKET, SOCK_RAW, ETH_P_ALL)`` bound to the device, with
  PACKET_IGNORE_OUTGOING (Linux 4.20) so the router never reads its own
  transmissions back (packet_rcv would otherwise see them as PACKET_OUTGOING),
  and PACKET_VNET_HDR so every frame comes with its virtio_net_hdr: a veth
  peer with the default offloads hands over TCP/UDP with a partial checksum
  (CHECKSUM_PARTIAL, VIRTIO_NET_HDR_F_NEEDS_CSUM) and TSO super-frames
  (gso_type TCPV4/TCPV6).  The port completes the checksum
  (skb_checksum_help) and splits TSO frames into gso_size segments as the
  kernel's tcp_gso_segment would (sequence numbers, IPv4 ids, FIN/PSH on the
  last segment, CWR on the first, fresh checksums), so the router sees what a
  wire would carry.  Other GSO kinds (UDP) are counted ``port_protocol_error``.
* tx: ``socket(AF_PACKET, SOCK_RAW, 0)`` bound to the device: protocol 0 takes
  no received frames; the kernel reads skb->protocol from the Ethernet header
  (packet_parse_headers).  Its fd goes to the Transmitter like a TAP fd.

Addresses: without ``macaddress`` the port uses the device's own MAC (what a
containerlab user sees in ``ip link``; no promiscuous mode needed).  With a
different ``macaddress`` the socket joins PACKET_MR_PROMISC.  PACKET_MR_ALLMULTI
is always joined (IPv6 neighbour discovery).

The kernel stack on that device still sees every frame: it must not hold the
router's addresses (it would answer ARP) nor forward (ip_forward=1 would
route the same packets twice).  ``host_warnings`` checks both; the shell logs
them at start and ``pyrouter check`` prints them (docs/deploy-ports.md).

The link monitor follows the device's admin state (IFF_UP).  The kernel reports
a device going down as ENETDOWN on the rx socket once (packet_notifier): the port
goes on reading.  A device that disappears (NETDEV_UNREGISTER: the socket is
unbound for good) takes the port's carrier down; the port looks for a device of
that name every REBIND_POLL seconds and binds to it when it is back (a container
restart), keeping the router's MAC (promiscuous mode if the new device's differs).
"""

from __future__ import annotations

import errno
import os
import socket
import struct
from ipaddress import ip_interface
from typing import TYPE_CHECKING

import trio

from ..control.build import PortPlan
from ..core import DropReason
from ..wire.checksum import inet_checksum
from .netlink import all_local_addresses, link_facts
from .rx import deliver, set_carrier
from .tap import BrokenPortError

if TYPE_CHECKING:
    from ..control.schema import Config
    from .app import App

ETH_P_ALL = 0x0003
SOL_PACKET = 263
PACKET_ADD_MEMBERSHIP = 1
PACKET_MR_PROMISC = 1
PACKET_MR_ALLMULTI = 2
PACKET_VNET_HDR = 15
PACKET_IGNORE_OUTGOING = 23
# virtio_net_hdr: flags, gso_type, hdr_len, gso_size, csum_start, csum_offset
VNET_HDR = struct.Struct("=BBHHHH")
VNET_LEN = VNET_HDR.size
F_NEEDS_CSUM = 1
GSO_NONE, GSO_TCPV4, GSO_UDP, GSO_TCPV6, GSO_ECN = 0, 1, 3, 4, 0x80
BATCH = 64
REBIND_POLL = 1.0          # s between looks for a device that went away
MAX_FRAME = 65535 + 18
READ_SIZE = VNET_LEN + 2 * 65536        # a TSO super-frame is up to 64 KiB of IP plus headers


def complete_csum(frame: bytearray, start: int, offset: int) -> bool:
    """skb_checksum_help(): the field at start+offset holds the pseudo-header sum;
    fold the data from *start* into it.  False if the offsets are outside the frame."""
    at = start + offset
    if start >= len(frame) or at + 2 > len(frame):
        return False
    c = inet_checksum(memoryview(frame)[start:])
    # inet_checksum sums the field as found (the seed); the result replaces it.
    frame[at:at + 2] = c.to_bytes(2, "big")
    return True


def tcp_segment(frame: bytes | bytearray, gso_size: int) -> list[bytes] | None:
    """Split an untagged IPv4/IPv6 TCP super-frame into segments of gso_size payload
    bytes (tcp_gso_segment + inet_gso_segment / ipv6_gso_segment).  None if the
    frame is not an untagged IPv4/IPv6 TCP frame without IPv6 extension headers."""
    if gso_size <= 0 or len(frame) < 14 + 20:
        return None
    et = frame[12:14]
    if et == b"\x08\x00":
        ihl = (frame[14] & 15) * 4
        if ihl < 20 or frame[14 + 9] != 6:
            return None
        l4 = 14 + ihl
        v6 = False
    elif et == b"\x86\xdd":
        if frame[14 + 6] != 6:
            return None
        l4 = 14 + 40
        v6 = True
    else:
        return None
    if len(frame) < l4 + 20:
        return None
    thl = (frame[l4 + 12] >> 4) * 4
    if thl < 20 or len(frame) < l4 + thl:
        return None
    head = bytes(frame[:l4 + thl])
    payload = memoryview(bytes(frame))[l4 + thl:]
    seq = int.from_bytes(head[l4 + 4:l4 + 8], "big")
    flags = head[l4 + 13]
    ident = int.from_bytes(head[18:20], "big")
    if v6:
        src, dst = head[22:38], head[38:54]
    else:
        src, dst = head[26:30], head[30:34]
    ps_base = int.from_bytes(src, "big") + int.from_bytes(dst, "big") + 6
    out = []
    total = len(payload)
    off = 0
    i = 0
    while True:
        chunk = payload[off:off + gso_size]
        last = off + gso_size >= total
        seg = bytearray(head)
        seg += chunk
        f = flags
        if not last:
            f &= ~0x09              # FIN, PSH only on the last segment
        if i:
            f &= ~0x80              # CWR only on the first
        seg[l4 + 13] = f
        seg[l4 + 4:l4 + 8] = ((seq + off) & 0xFFFFFFFF).to_bytes(4, "big")
        tcp_len = thl + len(chunk)
        if v6:
            seg[18:20] = tcp_len.to_bytes(2, "big")
        else:
            seg[16:18] = (l4 - 14 + tcp_len).to_bytes(2, "big")
            seg[18:20] = ((ident + i) & 0xFFFF).to_bytes(2, "big")
            seg[24:26] = b"\x00\x00"
            seg[24:26] = inet_checksum(memoryview(seg)[14:l4]).to_bytes(2, "big")
        seg[l4 + 16:l4 + 18] = b"\x00\x00"
        c = inet_checksum(memoryview(seg)[l4:], ps_base + tcp_len)
        seg[l4 + 16:l4 + 18] = c.to_bytes(2, "big")
        out.append(bytes(seg))
        off += gso_size
        i += 1
        if last:
            return out


def decode(raw: bytes, counters: dict[str, int]) -> list[bytes] | None:
    """One read from the rx socket (virtio_net_hdr + frame) -> the frames to deliver
    (None: malformed/unsupported, counted by the caller)."""
    if len(raw) <= VNET_LEN:
        return None
    flags, gso_type, _hdr_len, gso_size, csum_start, csum_offset = VNET_HDR.unpack_from(raw)
    if not flags and not gso_type:
        return [raw[VNET_LEN:]]
    frame = bytearray(raw[VNET_LEN:])
    kind = gso_type & ~GSO_ECN
    if kind in (GSO_TCPV4, GSO_TCPV6):
        segs = tcp_segment(frame, gso_size)      # fresh checksums: no completion needed
        if segs is not None:
            counters["gso_segmented"] += 1
        return segs
    if kind != GSO_NONE:
        return None
    if flags & F_NEEDS_CSUM:
        if not complete_csum(frame, csum_start, csum_offset):
            return None
        counters["csum_completed"] += 1
    return [bytes(frame)]


class PacketPort:
    """``kind: packet, device: eth1``."""

    kind = "packet"
    # The link monitor follows this device's own admin state (its down is the kernel's
    # NETDEV_DOWN on the router's device, not a carrier loss: Router.set_link admin).
    OWN_DEVICE = True

    def __init__(self, plan: PortPlan) -> None:
        assert plan.config.device is not None
        self.plan = plan
        self.device: str = plan.config.device
        self.scope = trio.CancelScope()
        self.rx: socket.socket | None = None
        self.tx: socket.socket | None = None
        self.promisc = False
        self.counters = {"csum_completed": 0, "gso_segmented": 0}
        self.app: App | None = None
        self.ifindex = 0

    def open(self) -> None:
        facts = link_facts(self.device)
        if facts is None:
            raise OSError(f"interface {self.device} not found")
        rx = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
        tx = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0)
        try:
            rx.setsockopt(SOL_PACKET, PACKET_VNET_HDR, 1)
            rx.setsockopt(SOL_PACKET, PACKET_IGNORE_OUTGOING, 1)
            rx.bind((self.device, ETH_P_ALL))
            tx.bind((self.device, 0))
            mr = [PACKET_MR_ALLMULTI]
            dev_mac = bytes.fromhex(facts["mac"].replace(":", ""))
            if dev_mac != self.plan.mac:
                mr.append(PACKET_MR_PROMISC)
                self.promisc = True
            for t in mr:
                rx.setsockopt(SOL_PACKET, PACKET_ADD_MEMBERSHIP,
                              struct.pack("iHH8s", facts["ifindex"], t, 0, b""))
            rx.setblocking(False)
            tx.setblocking(False)
        except BaseException:
            rx.close()
            tx.close()
            raise
        self.rx, self.tx = rx, tx
        self.ifindex = facts["ifindex"]

    def attach(self, app: App) -> None:
        assert self.tx is not None
        self.app = app
        app.fds[self.plan.ifindex] = self.tx.fileno()

    def link_ref(self) -> tuple[str, str | None] | None:
        return (self.device, None)

    def close(self) -> None:
        if self.app is not None and self.rx is not None:
            self.app.log.info("port.closed", port=self.plan.name, device=self.device,
                              promisc=self.promisc, **self.counters)
        self._close_sockets()

    def _close_sockets(self) -> None:
        for s in (self.rx, self.tx):
            if s is not None:
                try:
                    trio.lowlevel.notify_closing(s)
                except (RuntimeError, ValueError):
                    pass
                s.close()
        self.rx = self.tx = None

    async def run(self, app: App) -> None:
        idx = self.plan.ifindex
        while True:
            err = await self._rx(app)
            # ENETDOWN: the device went down (packet_notifier NETDEV_DOWN; the socket
            # delivers again once it is up) or away (NETDEV_UNREGISTER: never again).
            facts = await trio.to_thread.run_sync(link_facts, self.device)
            if facts is not None and facts["ifindex"] == self.ifindex:
                app.log.info("packet.device_down", port=self.plan.name, device=self.device)
                continue
            app.log.warning("packet.device_gone", port=self.plan.name, device=self.device,
                            error=err)
            set_carrier(app, idx, False)
            app.fds.pop(idx, None)
            self._close_sockets()
            while True:
                await trio.sleep(REBIND_POLL)
                try:
                    await trio.to_thread.run_sync(self.open)
                except OSError:
                    continue
                break
            self.attach(app)
            app.log.info("packet.device_rebound", port=self.plan.name, device=self.device,
                         promisc=self.promisc)
            facts = await trio.to_thread.run_sync(link_facts, self.device)
            set_carrier(app, idx, bool(facts and facts["up"]))

    async def _rx(self, app: App) -> str:
        """Deliver frames until the socket reports ENETDOWN/ENXIO (returned)."""
        assert self.rx is not None
        fd = self.rx.fileno()
        idx = self.plan.ifindex
        read = os.read
        counters = self.counters
        frames: list[bytes] = []
        while True:
            frames.clear()
            n = 0
            gone = None
            try:
                while n < BATCH:
                    raw = read(fd, READ_SIZE)
                    n += 1
                    if len(raw) > VNET_LEN and raw[0] == 0 and raw[1] == 0:
                        frames.append(raw[VNET_LEN:])
                        continue
                    got = decode(raw, counters)
                    if got is None:
                        app.router.drop(DropReason.PORT_PROTOCOL_ERROR,
                                        app.router.ports.get(idx))
                    else:
                        frames.extend(got)
            except BlockingIOError:
                pass
            except OSError as e:
                if e.errno not in (errno.ENETDOWN, errno.ENXIO, errno.ENODEV):
                    app.log.error("port.broken", port=self.plan.name, device=self.device,
                                  error=str(e))
                    raise BrokenPortError(f"read from {self.device}: {e}") from e
                gone = e.strerror or str(e)
            if frames:
                deliver(app, idx, frames)
            if gone is not None:
                return gone
            if n < BATCH:
                await trio.lowlevel.wait_readable(fd)
            else:
                await trio.lowlevel.checkpoint()


def host_warnings(cfg: Config) -> list[tuple[str, str]]:
    """What the kernel on a packet port's device would do besides pyrouter:
    (key path, warning) for addresses of the router that the kernel holds too
    (it would answer ARP / ND for them) and for IPv4/IPv6 forwarding enabled
    in pyrouter's namespace (the kernel would route the same frames)."""
    packet = {n: i for n, i in cfg.interfaces.items() if i.kind == "packet"}
    if not packet:
        return []
    out: list[tuple[str, str]] = []
    try:
        local = all_local_addresses()
    except OSError as e:
        return [("", f"cannot read this namespace's addresses: {e}")]
    for name, itf in packet.items():
        for j, a in enumerate(itf.addresses):
            dev = local.get(str(a.ip))
            if dev is not None:
                why = (f"the kernel has {a.ip} too (on {dev}): it would answer ARP/ND "
                       f"for it on {itf.device}; remove it from the kernel")
                out.append((f"interfaces.{name}.addresses[{j}]", why))
        facts = link_facts(str(itf.device))
        for kaddr in (facts or {}).get("addresses", []):
            k = ip_interface(kaddr)
            if k.ip.is_link_local or k.ip in {a.ip for a in itf.addresses}:
                continue
            for j, a in enumerate(itf.addresses):
                if a.version == k.version and (k.ip in a.network or a.ip in k.network):
                    why = (f"{itf.device} has {kaddr} in the router's subnet {a.network}: "
                           "the kernel would answer ARP/ND and send from the same link; "
                           f"remove it (ip addr del {kaddr} dev {itf.device})")
                    out.append((f"interfaces.{name}.addresses[{j}]", why))
                    break
    first = next(iter(packet))
    for key, path in (("net.ipv4.ip_forward", "/proc/sys/net/ipv4/ip_forward"),
                      ("net.ipv6.conf.all.forwarding", "/proc/sys/net/ipv6/conf/all/forwarding")):
        if _read_flag(path):
            devs = ", ".join(str(i.device) for i in packet.values())
            why = (f"{key}=1 in this namespace: the kernel would forward what arrives "
                   f"on {devs} as well; set it to 0")
            out.append((f"interfaces.{first}.device", why))
    return out


def _read_flag(path: str) -> bool:
    try:
        with open(path) as f:
            return f.read().strip() not in ("", "0")
    except OSError:
        return False

