"""MLDv2 Reports for the groups the router listens to (RFC 3810; net/ipv6/mcast.c).

A port joins all-nodes, all-routers and the solicited-node group of each of its
addresses (addrconf.py).  As the kernel does on joining, a port reports its groups
(all but ff02::1, which is never reported) in an unsolicited Report of
CHANGE_TO_EXCLUDE records, sent MLD robustness (2) times at random moments within
unsolicited_report_interval (1 s); a General Query from a querier is answered after
a random delay below its Maximum Response Delay (capped at 10 s).  Reports go to
ff02::16 with hop limit 1 and a Router Alert Hop-by-Hop option, from the port's
link-local address or :: while it is tentative (RFC 3590).  Snooping bridges need
them to keep delivering NS and DAD probes to the router.

Timers: ("mld", ifindex) in the core's TimerQueue; ``Router.mld_due[ifindex]`` holds
the pending deadlines (at most MLD_MAX_PENDING per port).
Invariant: nothing is sent on a port that is down or has no IPv6.
"""

from __future__ import annotations

import struct
from typing import TYPE_CHECKING

from ...wire.checksum import inet_checksum
from ...wire.ipv6 import ALL_MLDV2_ROUTERS, ALL_NODES
from ..time import SECOND
from .output import ip6_local_out

if TYPE_CHECKING:
    from ..router import Router

MLD2_CHANGE_TO_EXCLUDE = 4
MLD_ROBUSTNESS = 2
UNSOLICITED_REPORT_INTERVAL = SECOND
MLD_MAX_PENDING = 4
_HBH_RA = bytes([58, 0, 5, 2, 0, 0, 1, 0])     # next header ICMPv6; Router Alert (MLD); PadN


def mld_schedule(r: Router, ifindex: int, now: int, within: int = UNSOLICITED_REPORT_INTERVAL,
                 times: int = MLD_ROBUSTNESS) -> None:
    if not r.sysctl6.mld_reports:
        return
    due = r.mld_due.setdefault(ifindex, [])
    for _ in range(times):
        if len(due) >= MLD_MAX_PENDING:
            return
        at = now + int(r.rng.random() * within)
        due.append(at)
        r.timers.schedule(at, ("mld", ifindex))


def mld_timer(r: Router, ifindex: int, deadline: int, now: int) -> None:
    due = r.mld_due.get(ifindex)
    if not due or deadline not in due:
        return
    due.remove(deadline)
    mld_send_report(r, ifindex, now)


def mld_send_report(r: Router, ifindex: int, now: int) -> bool:
    port = r.ports.get(ifindex)
    dev = r.in6.get(ifindex)
    if port is None or dev is None or not port.up:
        return False
    groups = sorted(g for g in dev.groups | r.proxy_groups6.get(ifindex, frozenset())
                    if g != ALL_NODES)
    if not groups:
        return False
    body = b"".join(struct.pack("!BBH", MLD2_CHANGE_TO_EXCLUDE, 0, 0) + g.to_bytes(16, "big")
                    for g in groups)
    msg = bytearray(struct.pack("!BBHHH", 143, 0, 0, 0, len(groups)) + body)
    src = dev.linklocal() or 0
    c = inet_checksum(msg, src + ALL_MLDV2_ROUTERS + 58 + len(msg))
    msg[2], msg[3] = c >> 8, c & 0xFF
    ok = ip6_local_out(r, ALL_MLDV2_ROUTERS, src, 0, _HBH_RA + bytes(msg), now, hop_limit=1,
                       oif=ifindex)
    if ok:
        r.counters.snmp["Icmp6OutMsgs"] += 1
        r.counters.snmp["Icmp6OutMLDv2Reports"] += 1
    return ok


def mld_query_rcv(r: Router, ifindex: int, data: bytes | bytearray, off: int, now: int) -> None:
    """A Query (type 130): a General Query (group ::) is answered with every group."""
    if len(data) - off < 24:
        return
    group = int.from_bytes(data[off + 8:off + 24], "big")
    dev = r.in6.get(ifindex)
    if dev is None or (group and group not in dev.groups):
        return
    maxresp = (data[off + 4] << 8) | data[off + 5]           # ms (MLDv1 and small MLDv2)
    within = min(max(maxresp, 1) * 1_000_000, 10 * SECOND)
    mld_schedule(r, ifindex, now, within, times=1)
