"""IPv4 options on received packets: ip_options_compile() and ip_forward_options()
(net/ipv4/ip_options.c; RFC 791 section 3.1, RFC 1812 section 5.2.4, RFC 781).

At ip_rcv (no route yet, as in the kernel): the option list is walked; bytes
after EOL become EOL; a malformed option (length < 2 or past the end, a
duplicated RR/TS/source route, a pointer below its minimum or leaving no room)
gives Parameter Problem with the pointer at the offending byte.  Record Route
with room left gets its pointer advanced and an address owed (filled on
forwarding with the egress address, as ip_rt_get_source does); Timestamp with
room left gets the time (ms since midnight UTC) for the timestamp-only flavour,
a timestamp and an owed address for tsandaddr, a timestamp if the prespecified
address is ours; a full Timestamp option has its overflow counter bumped
(overflow 15 is a Parameter Problem).  Source-routed packets are dropped
(accept_source_route = 0, the default).

Invariants: the header length never changes; whenever a byte changes, the
caller recomputes the header checksum (``OptState.changed``).
"""

from __future__ import annotations

from dataclasses import dataclass

IPOPT_END, IPOPT_NOOP, IPOPT_RR, IPOPT_TIMESTAMP = 0, 1, 7, 68
IPOPT_LSRR, IPOPT_SSRR, IPOPT_RA = 131, 137, 148
IPOPT_TS_TSONLY, IPOPT_TS_TSANDADDR, IPOPT_TS_PRESPEC = 0, 1, 3


@dataclass(slots=True)
class OptState:
    rr: int = 0                  # offsets within the header (0 = absent)
    ts: int = 0
    srr: int = 0
    router_alert: int = 0
    rr_needaddr: bool = False
    ts_needaddr: bool = False
    changed: bool = False


class OptionError(Exception):
    def __init__(self, pointer: int) -> None:
        super().__init__(pointer)
        self.pointer = pointer


def ip_options_compile(data: bytearray, ihl: int, ms_of_day: int, local: set[int]) -> OptState:
    """Walk and update the options of the header in *data*; raise OptionError(pointer)."""
    st = OptState()
    p = 20
    while p < ihl:
        t = data[p]
        if t == IPOPT_END:
            for q in range(p + 1, ihl):
                if data[q] != IPOPT_END:
                    data[q] = IPOPT_END
                    st.changed = True
            break
        if t == IPOPT_NOOP:
            p += 1
            continue
        left = ihl - p
        if left < 2:
            raise OptionError(p)
        optlen = data[p + 1]
        if optlen < 2 or optlen > left:
            raise OptionError(p)
        if t in (IPOPT_LSRR, IPOPT_SSRR):
            if optlen < 3:
                raise OptionError(p + 1)
            if data[p + 2] < 4:
                raise OptionError(p + 2)
            if st.srr:
                raise OptionError(p)
            st.srr = p
        elif t == IPOPT_RR:
            if st.rr:
                raise OptionError(p)
            if optlen < 3:
                raise OptionError(p + 1)
            ptr = data[p + 2]
            if ptr < 4:
                raise OptionError(p + 2)
            if ptr <= optlen:
                if ptr + 3 > optlen:
                    raise OptionError(p + 2)
                data[p + 2] = ptr + 4
                st.rr_needaddr = True
                st.changed = True
            st.rr = p
        elif t == IPOPT_TIMESTAMP:
            _timestamp(data, p, optlen, st, ms_of_day, local)
        elif t == IPOPT_RA:
            if optlen < 4:
                raise OptionError(p + 1)
            if data[p + 2] == 0 and data[p + 3] == 0:
                st.router_alert = p
        p += optlen
    return st


def _timestamp(data: bytearray, p: int, optlen: int, st: OptState, ms_of_day: int,
               local: set[int]) -> None:
    if st.ts:
        raise OptionError(p)
    if optlen < 4:
        raise OptionError(p + 1)
    ptr = data[p + 2]
    if ptr < 5:
        raise OptionError(p + 2)
    flag = data[p + 3] & 0x0F
    if ptr <= optlen:
        if ptr + 3 > optlen:
            raise OptionError(p + 2)
        timeptr = -1
        if flag == IPOPT_TS_TSONLY:
            timeptr = p + ptr - 1
            data[p + 2] = ptr + 4
        elif flag == IPOPT_TS_TSANDADDR:
            if ptr + 7 > optlen:
                raise OptionError(p + 2)
            st.ts_needaddr = True            # the address (and so the time) at forwarding
            data[p + 2] = ptr + 8
        elif flag == IPOPT_TS_PRESPEC:
            if ptr + 7 > optlen:
                raise OptionError(p + 2)
            addr = int.from_bytes(data[p + ptr - 1:p + ptr + 3], "big")
            if addr in local:
                timeptr = p + ptr + 3
                data[p + 2] = ptr + 8
        if timeptr >= 0:
            data[timeptr:timeptr + 4] = (ms_of_day & 0xFFFFFFFF).to_bytes(4, "big")
        st.changed = True
    elif flag != IPOPT_TS_PRESPEC:
        overflow = data[p + 3] >> 4
        if overflow == 15:
            raise OptionError(p + 3)
        data[p + 3] = flag | ((overflow + 1) << 4)
        st.changed = True
    st.ts = p


def ip_forward_options(data: bytearray, st: OptState, egress_addr: int, ms_of_day: int) -> bool:
    """Fill what ip_options_compile left owed, with the egress address; True if changed."""
    changed = False
    a = egress_addr.to_bytes(4, "big")
    if st.rr_needaddr:
        ptr = data[st.rr + 2]
        data[st.rr + ptr - 5:st.rr + ptr - 1] = a
        changed = True
    if st.ts_needaddr:
        ptr = data[st.ts + 2]
        data[st.ts + ptr - 9:st.ts + ptr - 5] = a
        data[st.ts + ptr - 5:st.ts + ptr - 1] = (ms_of_day & 0xFFFFFFFF).to_bytes(4, "big")
        changed = True
    return changed
