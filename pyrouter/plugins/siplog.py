"""A SIP/RTP flow logger: a netfilter hook plugin in the spirit of the VoIP-capture
hook modules of the seed posts, without a kernel module.

Register it in the config:

    plugins:
      - {module: pyrouter.plugins.siplog, function: hook, hook: forward}

For each SIP request or response over UDP port 5060 (RFC 3261) it reports an Event
``plugin.sip`` (method or status, Call-ID, From, To); when the body is SDP
(RFC 4566) with a ``c=IN IP4|IP6 ADDR`` line and ``m=audio PORT`` / ``m=video PORT``
it remembers the RTP flow (address, port -> Call-ID) and reports ``plugin.rtp_flow``;
RTP packets of known flows are counted per flow.  It never changes or drops a
packet (always ACCEPT).  Bounded: at most MAX_FLOWS flows, the oldest forgotten.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

SIP_PORT = 5060
MAX_FLOWS = 1024

flows: OrderedDict[tuple[str, int], dict[str, Any]] = OrderedDict()


def _headers(text: str) -> tuple[str, dict[str, str], str]:
    head, _, body = text.partition("\r\n\r\n")
    lines = head.split("\r\n")
    hdrs: dict[str, str] = {}
    for ln in lines[1:]:
        k, sep, v = ln.partition(":")
        if sep:
            hdrs[k.strip().lower()] = v.strip()
    return lines[0], hdrs, body


def hook(pkt: Any) -> str:
    if pkt.l4proto != 17:
        return "accept"
    sport, dport = pkt.sport, pkt.dport
    if sport is None:
        return "accept"
    if SIP_PORT in (sport, dport):
        try:
            text = pkt.payload.decode("utf-8", "replace")
        except Exception:                       # noqa: BLE001
            return "accept"
        first, hdrs, body = _headers(text)
        if not first:
            return "accept"
        call_id = hdrs.get("call-id", hdrs.get("i", ""))
        pkt.event("sip", start=first[:100], call_id=call_id, src=pkt.saddr, dst=pkt.daddr,
                  frm=hdrs.get("from", hdrs.get("f", ""))[:100],
                  to=hdrs.get("to", hdrs.get("t", ""))[:100])
        addr = None
        for ln in body.split("\r\n"):
            if ln.startswith("c=IN IP"):
                addr = ln.split()[-1]
            elif ln.startswith(("m=audio ", "m=video ")) and addr is not None:
                parts = ln.split()
                if len(parts) > 1 and parts[1].isdigit():
                    key = (addr, int(parts[1]))
                    flows[key] = {"call_id": call_id, "packets": 0}
                    flows.move_to_end(key)
                    while len(flows) > MAX_FLOWS:
                        flows.popitem(last=False)
                    pkt.event("rtp_flow", addr=addr, port=int(parts[1]), call_id=call_id,
                              media=parts[0][2:])
        return "accept"
    f = flows.get((pkt.daddr, dport))
    if f is not None:
        f["packets"] += 1
    return "accept"
