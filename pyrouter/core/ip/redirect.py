"""ICMP Redirect generation (RFC 1812 section 5.2.7.2; net/ipv4/route.c ip_rt_send_redirect).

A forwarded packet that leaves by the port it came in on, from a source that is
on-link there together with the next hop, gets a Redirect (Host, code 1) to
that next hop, as __mkroute_input() marks it (RTCF_DOREDIRECT) and ip_forward()
sends it after the TTL decrement; the packet is still forwarded.

Back-off per source (the kernel's inet_peer n_redirects/rate_last):
* after ip_rt_redirect_silence (20.48 s) without redirected packets, start again;
* at most ip_rt_redirect_number (9) redirects; after that every redirected
  packet only pushes rate_last forward, so steady traffic keeps it silent;
* the k-th redirect waits ip_rt_redirect_load << k (20 ms, 40 ms, 80 ms, ...)
  after the previous one.
Redirect is not in icmp_ratemask, so the ICMP rate limits do not apply.

Deviation: the kernel keeps this state in the same inet_peer entry as the ICMP
rate limiter (sharing rate_last); here the two tables are separate.  The table
is an LRU bounded at MAX_PEERS sources.
"""

from __future__ import annotations

from collections import OrderedDict

from ..time import MILLISECOND

REDIRECT_NUMBER = 9
REDIRECT_LOAD = 20 * MILLISECOND              # HZ / 50
REDIRECT_SILENCE = REDIRECT_LOAD << 10        # (HZ / 50) << 10 = 20.48 s
MAX_PEERS = 4096


class RedirectLimiter:
    def __init__(self) -> None:
        self.peers: OrderedDict[int, tuple[int, int]] = OrderedDict()   # src -> (n, rate_last)

    def allow(self, src: int, now: int) -> bool:
        entry = self.peers.pop(src, None)
        if entry is None:
            if len(self.peers) >= MAX_PEERS:
                self.peers.popitem(last=False)
            n, last = 0, now
        else:
            n, last = entry
            if now > last + REDIRECT_SILENCE:
                n = 0
        if n >= REDIRECT_NUMBER:
            self.peers[src] = (n, now)
            return False
        if n == 0 or now > last + (REDIRECT_LOAD << n):
            self.peers[src] = (n + 1, now)
            return True
        self.peers[src] = (n, last)
        return False
