"""DHCPv4 messages (RFC 2131 section 2, options RFC 2132, long options RFC 3396).

Layout: op(1) htype(1) hlen(1) hops(1) xid(4) secs(2) flags(2) ciaddr(4) yiaddr(4)
siaddr(4) giaddr(4) chaddr(16) sname(64) file(128), the magic cookie 99.130.83.99,
then options (code, length, value; 0 is padding, 255 ends them).

Parsing follows what the kernel-facing DHCP servers accept: the fixed part must be
complete and the cookie present; every option must fit inside the message; an
option that appears more than once is the concatenation of its parts (RFC 3396);
with Option Overload (52) the ``file`` and/or ``sname`` fields carry more options,
read after the options field.  Anything else raises MalformedError("dhcp_malformed").

Emitting writes the options in the order given (all in the options field, so
never with Option Overload), splits values longer than 255
octets into consecutive options (RFC 3396), ends with 255 and pads the message to
the 300-octet BOOTP minimum (RFC 1542 section 2.1) that older relays and clients
expect.  Invariants: a parsed message's options are bounded by its size (at most
one entry per code); ``emit(parse(b))`` keeps every field.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field

from .errors import MalformedError

BOOTREQUEST = 1
BOOTREPLY = 2
DHCP_SERVER_PORT = 67
DHCP_CLIENT_PORT = 68
MAGIC_COOKIE = b"\x63\x82\x53\x63"
BROADCAST_FLAG = 0x8000
FIXED_LEN = 236                       # up to and including ``file``
MIN_LEN = FIXED_LEN + 4               # plus the cookie
BOOTP_MIN_LEN = 300

# Message types (option 53).
DHCPDISCOVER, DHCPOFFER, DHCPREQUEST, DHCPDECLINE = 1, 2, 3, 4
DHCPACK, DHCPNAK, DHCPRELEASE, DHCPINFORM = 5, 6, 7, 8
MESSAGE_TYPES = {DHCPDISCOVER: "DISCOVER", DHCPOFFER: "OFFER", DHCPREQUEST: "REQUEST",
                 DHCPDECLINE: "DECLINE", DHCPACK: "ACK", DHCPNAK: "NAK",
                 DHCPRELEASE: "RELEASE", DHCPINFORM: "INFORM"}

# Option codes (RFC 2132).
OPT_PAD = 0
OPT_SUBNET_MASK = 1
OPT_ROUTER = 3
OPT_DNS = 6
OPT_HOSTNAME = 12
OPT_DOMAIN = 15
OPT_BROADCAST = 28
OPT_REQUESTED_IP = 50
OPT_LEASE_TIME = 51
OPT_OVERLOAD = 52
OPT_MSG_TYPE = 53
OPT_SERVER_ID = 54
OPT_PARAM_LIST = 55
OPT_MESSAGE = 56
OPT_MAX_SIZE = 57
OPT_T1 = 58
OPT_T2 = 59
OPT_CLIENT_ID = 61
OPT_END = 255

_FIXED = struct.Struct("!BBBBIHHIIII16s64s128s")


def _parse_options(buf: bytes | bytearray | memoryview, off: int, end: int,
                   opts: dict[int, bytes], where: str) -> None:
    i = off
    while i < end:
        code = buf[i]
        if code == OPT_PAD:
            i += 1
            continue
        if code == OPT_END:
            return
        if i + 1 >= end:
            raise MalformedError("dhcp_malformed", f"option {code} in {where}: no length")
        n = buf[i + 1]
        if i + 2 + n > end:
            raise MalformedError("dhcp_malformed", f"option {code} in {where}: runs past the end")
        value = bytes(buf[i + 2:i + 2 + n])
        opts[code] = opts[code] + value if code in opts else value
        i += 2 + n
    # No end option: accepted, as dnsmasq and ISC dhcpd do (RFC 2131 says clients
    # send one, but a missing one loses no information).


@dataclass(slots=True)
class DhcpMessage:
    op: int = BOOTREQUEST
    htype: int = 1
    hlen: int = 6
    hops: int = 0
    xid: int = 0
    secs: int = 0
    flags: int = 0
    ciaddr: int = 0
    yiaddr: int = 0
    siaddr: int = 0
    giaddr: int = 0
    chaddr: bytes = bytes(16)
    sname: bytes = bytes(64)
    file: bytes = bytes(128)
    options: dict[int, bytes] = field(default_factory=dict)

    @classmethod
    def parse(cls, buf: bytes | bytearray | memoryview) -> DhcpMessage:
        if len(buf) < MIN_LEN:
            raise MalformedError("dhcp_malformed", f"{len(buf)} octets, at least {MIN_LEN}")
        (op, htype, hlen, hops, xid, secs, flags, ciaddr, yiaddr, siaddr, giaddr, chaddr,
         sname, file) = _FIXED.unpack_from(buf, 0)
        if bytes(buf[FIXED_LEN:MIN_LEN]) != MAGIC_COOKIE:
            raise MalformedError("dhcp_malformed", "no magic cookie")
        if op not in (BOOTREQUEST, BOOTREPLY):
            raise MalformedError("dhcp_malformed", f"op {op}")
        if hlen > 16:
            raise MalformedError("dhcp_malformed", f"hlen {hlen}")
        opts: dict[int, bytes] = {}
        _parse_options(buf, MIN_LEN, len(buf), opts, "options")
        overload = opts.get(OPT_OVERLOAD)
        if overload is not None:
            if len(overload) != 1 or overload[0] not in (1, 2, 3):
                raise MalformedError("dhcp_malformed", "option overload value")
            # RFC 2131 section 4.1: options, then file, then sname.
            if overload[0] & 1:
                _parse_options(file, 0, len(file), opts, "file")
            if overload[0] & 2:
                _parse_options(sname, 0, len(sname), opts, "sname")
        return cls(op, htype, hlen, hops, xid, secs, flags, ciaddr, yiaddr, siaddr, giaddr,
                   chaddr, sname, file, opts)

    @property
    def msg_type(self) -> int | None:
        v = self.options.get(OPT_MSG_TYPE)
        return v[0] if v is not None and len(v) == 1 else None

    @property
    def hwaddr(self) -> bytes:
        """The client's hardware address: chaddr's first hlen octets."""
        return self.chaddr[:self.hlen]

    def opt_addr(self, code: int) -> int | None:
        """An option holding one IPv4 address (requested address, server identifier)."""
        v = self.options.get(code)
        return int.from_bytes(v, "big") if v is not None and len(v) == 4 else None

    def emit(self) -> bytes:
        out = bytearray(_FIXED.pack(self.op, self.htype, self.hlen, self.hops, self.xid,
                                    self.secs, self.flags, self.ciaddr, self.yiaddr,
                                    self.siaddr, self.giaddr, self.chaddr.ljust(16, b"\0"),
                                    self.sname.ljust(64, b"\0"), self.file.ljust(128, b"\0")))
        out += MAGIC_COOKIE
        for code, value in self.options.items():
            if code in (OPT_PAD, OPT_END, OPT_OVERLOAD):
                continue            # everything goes in the options field: no overload
            if not value:
                out += bytes((code, 0))
            for i in range(0, len(value), 255):
                part = value[i:i + 255]
                out += bytes((code, len(part))) + part
        out.append(OPT_END)
        if len(out) < BOOTP_MIN_LEN:
            out += bytes(BOOTP_MIN_LEN - len(out))
        return bytes(out)


def addrs_option(addrs: list[int] | tuple[int, ...]) -> bytes:
    """Options 3, 6, ...: a list of IPv4 addresses."""
    return b"".join(a.to_bytes(4, "big") for a in addrs)


def u32_option(value: int) -> bytes:
    return (value & 0xFFFFFFFF).to_bytes(4, "big")
