"""Human output for the CLI, modelled on iproute2 (ip -s link, ip addr, ip route,
ip neigh, ip route get), nstat, ping, traceroute and tcpdump -n."""

from __future__ import annotations

import struct
import time
from typing import Any

from ..wire.addr import ip4_str


def _flags(d: dict[str, Any]) -> str:
    return "BROADCAST,MULTICAST,UP,LOWER_UP" if d["operstate"] == "UP" else "BROADCAST,MULTICAST"


# traceroute(8)'s annotations for Destination Unreachable codes.
TRACEROUTE_MARKS = {0: "N", 1: "H", 2: "P", 4: "F", 5: "S", 9: "X", 10: "X", 13: "X", 14: "V",
                    15: "C"}


def links(data: list[dict[str, Any]]) -> str:
    out = []
    for d in data:
        flags = _flags(d)
        s = d["stats"]
        out.append(f"{d['ifindex']}: {d['ifname']}: <{flags}> mtu {d['mtu']} "
                   f"state {d['operstate']}")
        out.append(f"    link/ether {d['address']} brd ff:ff:ff:ff:ff:ff")
        out.append("    RX:  bytes packets dropped")
        out.append(f"    {s['rx_bytes']:>10} {s['rx_packets']:>7} {s['rx_dropped']:>7}")
        out.append("    TX:  bytes packets dropped")
        out.append(f"    {s['tx_bytes']:>10} {s['tx_packets']:>7} {s['tx_dropped']:>7}")
    return "\n".join(out)


def addrs(data: list[dict[str, Any]]) -> str:
    out = []
    for d in data:
        flags = _flags(d)
        out.append(f"{d['ifindex']}: {d['ifname']}: <{flags}> mtu {d['mtu']} "
                   f"state {d['operstate']}")
        out.append(f"    link/ether {d['address']} brd ff:ff:ff:ff:ff:ff")
        for a in d["addr_info"]:
            brd = f" brd {a['broadcast']}" if a.get("broadcast") else ""
            out.append(f"    {a['family']} {a['local']}/{a['prefixlen']}{brd} scope {a['scope']}"
                       f" {d['ifname']}")
    return "\n".join(out)


def route_line(d: dict[str, Any], show_table: bool = False) -> str:
    dst = d["dst"]
    if dst in ("0.0.0.0/0", "::/0"):
        dst = "default"
    elif dst.endswith("/32") or dst.endswith("/128"):
        dst = dst.rsplit("/", 1)[0]
    parts = [] if d["type"] == "unicast" else [d["type"]]
    parts.append(dst)
    if d.get("gateway"):
        parts += ["via", d["gateway"]]
    if d.get("dev"):
        parts += ["dev", d["dev"]]
    if show_table and d["table"] != "main":
        parts += ["table", d["table"]]
    if d["protocol"] != "boot":
        parts += ["proto", d["protocol"]]
    if d["scope"] != "universe":
        parts += ["scope", d["scope"]]
    if d.get("prefsrc"):
        parts += ["src", d["prefsrc"]]
    if d.get("metric"):
        parts += ["metric", str(d["metric"])]
    parts += d.get("flags", [])
    if d.get("mtu"):
        parts += ["mtu", str(d["mtu"])]
    if d.get("advmss"):
        parts += ["advmss", str(d["advmss"])]
    line = " ".join(parts)
    for nh in d.get("nexthops", []):
        via = f"via {nh['gateway']} " if nh.get("gateway") else ""
        line += f"\n\tnexthop {via}dev {nh['dev']} weight {nh['weight']}" \
                + (" dead" if nh.get("dead") else "")
    return line


def routes(data: list[dict[str, Any]], show_table: bool = False) -> str:
    return "\n".join(route_line(d, show_table) for d in data)


def rules(data: list[dict[str, Any]]) -> str:
    """``ip rule`` format: ``PRIO:\tfrom SRC [to DST] [selectors] lookup TABLE``."""
    out = []
    for d in data:
        parts = [f"{d['priority']}:\tfrom {d['src']}"]
        for key in ("dst", "iif", "oif", "fwmark", "tos", "ipproto", "sport", "dport"):
            if key in d:
                parts.append(f"{'to' if key == 'dst' else key} {d[key]}")
        if "table" in d:
            parts.append(f"lookup {d['table']}")
            if "suppress_prefixlength" in d:
                parts.append(f"suppress_prefixlength {d['suppress_prefixlength']}")
        elif "goto" in d:
            parts.append(f"goto {d['goto']}")
        else:
            parts.append(d["action"])
        out.append(" ".join(parts))
    return "\n".join(out)


def neighbours(data: list[dict[str, Any]]) -> str:
    out = []
    for d in data:
        ll = f" lladdr {d['lladdr']}" if d.get("lladdr") else ""
        conf = d["confirmed"] if d.get("confirmed") is not None else "-"
        line = (f"{d['dst']} dev {d['dev']}{ll} used {d['used']}/{conf}/{d['updated']}"
                f" probes {d['probes']} {d['state']}")
        if d.get("queued"):
            line += f" queued {d['queued']}"
        out.append(line)
    return "\n".join(out)


def neigh_tables(data: list[dict[str, Any]]) -> str:
    """``ip -s ntable show``-like: thresholds, the arp_cache statistics, per-port parms."""
    out = []
    for t in data:
        out.append(f"inet {t['name']}" if t["name"] == "arp_cache" else f"inet6 {t['name']}")
        out.append(f"    thresh1 {t['gc_thresh1']} thresh2 {t['gc_thresh2']} "
                   f"thresh3 {t['gc_thresh3']} gc_int {t['gc_interval'] * 1000}")
        states = " ".join(f"{k} {v}" for k, v in sorted(t["states"].items()))
        out.append(f"    entries {t['entries']} (gc {t['gc_entries']})"
                   + (f" {states}" if states else ""))
        st = t["stats"]
        out.append("    stats " + " ".join(
            f"{k} {'n/a' if v is None else v}" for k, v in st.items() if k != "entries"))
        for p in t["parms"]:
            out.append(f"  dev {p['dev']} reachable {p['reachable_time_ms']} "
                       f"base_reachable {p['base_reachable_time_ms']} "
                       f"retrans {p['retrans_time_ms']} delay_probe "
                       f"{p['delay_first_probe_time'] * 1000} gc_stale {p['gc_stale_time'] * 1000}"
                       f" ucast_probes {p['ucast_probes']} mcast_probes {p['mcast_probes']}"
                       f" app_probes {p['app_probes']} locktime {p['locktime'] * 10}"
                       f" queue_bytes {p['unres_qlen_bytes']} proxy_delay {p['proxy_delay'] * 10}"
                       f" proxy_queue {p['proxy_qlen']}"
                       + (" proxy_arp" if p.get("proxy_arp") else ""))
    return "\n".join(out)


def dhcp_leases(data: list[dict[str, Any]]) -> str:
    """``show dhcp``: one block per DHCP server, one line per lease (like dnsmasq's
    lease file: expiry, MAC, address, hostname)."""
    out = []
    for srv in data:
        st = srv["stats"]
        out.append(f"dhcp4 dev {srv['dev']} server {srv['server']} pool {srv['pool'][0]}-"
                   f"{srv['pool'][1]} lease {srv['lease_time']}s  discover {st['discover']} "
                   f"offer {st['offer']} request {st['request']} ack {st['ack']} nak {st['nak']}")
        for le in srv["leases"]:
            host = f" {le['hostname']}" if le.get("hostname") else ""
            static = " static" if le.get("static") else ""
            out.append(f"    {le['addr']} lladdr {le['mac']} {le['state']}{static} "
                       f"expires {le['expires']}sec{host}")
    return "\n".join(out)


def dns_forwarder(data: dict[str, Any] | None) -> str:
    """``show dns``: the forwarder's upstreams, pending queries and counters."""
    if data is None:
        return "no DNS forwarder configured"
    ups = ", ".join(f"{u}{' (preferred)' if i == data['preferred'] else ''}"
                    for i, u in enumerate(data["upstreams"]))
    st = data["stats"]
    return (f"dns forwarder on {', '.join(data['listen'])} -> {ups}\n"
            f"    pending {data['pending']}/{data['max_pending']}  queries {st['queries']} "
            f"answers {st['answers']} timeouts {st['timeouts']} evicted {st['evicted']}")


def stats(data: dict[str, Any], all_: bool = False) -> str:
    out = ["#kernel-style counters (nstat names)"]
    for k, v in data["snmp"].items():
        if v or all_:
            out.append(f"{k:<28}{v:>14}")
    out.append("#drop reasons")
    for k, v in sorted(data["drops"].items()):
        if v or all_:
            out.append(f"{k:<28}{v:>14}")
    loop = data.get("loop", {})
    if loop:
        out.append("#event loop")
        out.append(f"{'wakeups':<28}{loop['wakeups']:>14}")
        out.append(f"{'frames':<28}{loop['frames']:>14}")
        out.append(f"{'busy_seconds':<28}{loop['busy_seconds']:>14.3f}")
    out.append(f"{'fast_forwarded':<28}{data.get('fast_forwarded', 0):>14}")
    for k in ("flow_forwarded", "flow_entries", "flow_mismatch"):
        if k in data:
            out.append(f"{k:<28}{data[k]:>14}")
    nf = data.get("netfilter") or {}
    for p in nf.get("plugins", []):
        out.append(f"#plugin {p['plugin']} ({p.get('hook', '')})"
                   + ("  DISABLED (over its time budget)" if p.get("disabled") else ""))
        for k in ("calls", "errors", "slow", "skipped", "trips"):
            out.append(f"{k:<28}{p.get(k, 0):>14}")
        out.append(f"{'time_ms':<28}{p.get('time_ms', 0):>14.3f}")
        for k, v in (p.get("verdicts") or {}).items():
            if v or all_:
                out.append(f"{'verdict_' + k:<28}{v:>14}")
    for q in nf.get("queues", []):
        out.append(f"#queue {q['num']} consumer {q.get('consumer')}")
        for k in ("waiting", "total", "accepted", "rejected", "timeouts", "dropped", "errors"):
            out.append(f"{k:<28}{q.get(k, 0):>14}")
    return "\n".join(out)


def route_get(d: dict[str, Any]) -> str:
    if d.get("error") and "type" not in d:
        if d["error"].startswith("Cannot find device"):
            return d["error"]
        return f"RTNETLINK answers: {d['error']}"
    if d.get("error"):
        return f"RTNETLINK answers: {d['error']}  ({d['type']} {d['prefix']} table {d['table']})"
    parts = [d["type"]] if d["type"] != "unicast" else []
    parts.append(d["dst"])
    if d.get("from"):
        parts += ["from", d["from"]]
    if d.get("gateway"):
        parts += ["via", d["gateway"]]
    if d.get("dev"):
        parts += ["dev", d["dev"]]
    if d["table"] != "main":
        parts += ["table", d["table"]]
    if d.get("prefsrc"):
        parts += ["src", d["prefsrc"]]
    if d.get("iif"):
        parts += ["iif", d["iif"]]
    if d.get("mark"):
        parts += ["mark", hex(d["mark"])]
    line = " ".join(parts)
    if d.get("cache"):
        c = d["cache"]
        lock = "lock " if c["locked"] else ""
        red = "<redirected> " if c.get("redirected") else ""
        mtu = f" mtu {lock}{c['mtu']}" if c["mtu"] else ""
        line += f"\n    cache {red}expires {c['expires']}sec{mtu}"
    extra = []
    if d.get("mtu"):
        extra.append(f"mtu {d['mtu']}")
    if d.get("prefix"):
        extra.append(f"route {d['prefix']}")
    if d.get("neigh"):
        n = d["neigh"]
        extra.append(f"neigh {n['addr']}" + (f" lladdr {n['lladdr']}" if n.get("lladdr") else "")
                     + f" {n['state']}")
    return line + ("\n    " + " ".join(extra) if extra else "")


def ping_line(it: dict[str, Any]) -> str:
    if it.get("timeout"):
        return f"no answer yet for icmp_seq={it['seq']}"
    if "error" in it:
        return f"ping: {it['error']}"
    if "rtt_ms" in it:
        return (f"{it['bytes']} bytes from {it['from']}: icmp_seq={it['seq']} ttl={it['ttl']}"
                f" time={it['rtt_ms']:.3f} ms")
    t, c = it["icmp_type"], it["icmp_code"]
    what = {(11, 0): "Time to live exceeded", (3, 0): "Destination Net Unreachable",
            (3, 1): "Destination Host Unreachable", (3, 3): "Destination Port Unreachable",
            (3, 13): "Packet filtered"}.get((t, c), f"ICMP type {t} code {c}")
    if (t, c) == (3, 4):
        what = f"Frag needed and DF set (mtu = {it.get('mtu')})"
    return f"From {it['from']} icmp_seq={it['seq']} {what}"


def ping_summary(res: dict[str, Any]) -> str:
    out = [f"--- {res['dst']} ping statistics ---",
           f"{res['transmitted']} packets transmitted, {res['received']} received, "
           f"{res['loss_pct']:g}% packet loss"]
    if "rtt_ms" in res:
        r = res["rtt_ms"]
        out.append(f"rtt min/avg/max = {r['min']:.3f}/{r['avg']:.3f}/{r['max']:.3f} ms")
    return "\n".join(out)


def traceroute_line(it: dict[str, Any]) -> str:
    parts = [f"{it['hop']:>2}"]
    last = None
    for p in it["probes"]:
        if p is None:
            parts.append("*")
            continue
        if p["from"] != last:
            parts.append(p["from"])
            last = p["from"]
        mark = ""
        if p["icmp_type"] == 3 and p["icmp_code"] != 3:
            code = p["icmp_code"]
            mark = " !" + TRACEROUTE_MARKS.get(code, f"<{code}>")
        parts.append(f"{p['rtt_ms']:.3f} ms{mark}")
    return "  ".join(parts)


def frame_summary(ts_ns: int, direction: str, port: str, frame: bytes) -> str:
    """One line per frame, in the spirit of ``tcpdump -n``."""
    t = time.strftime("%H:%M:%S", time.localtime(ts_ns / 1e9)) + f".{(ts_ns // 1000) % 1000000:06d}"
    head = f"{t} {port} {direction:<3}"
    if len(frame) < 14:
        return f"{head} [truncated frame, {len(frame)} bytes]"
    etype = struct.unpack_from("!H", frame, 12)[0]
    if etype == 0x0806 and len(frame) >= 42:
        op = struct.unpack_from("!H", frame, 20)[0]
        spa, tpa = ip4_str(frame[28:32]), ip4_str(frame[38:42])
        if op == 1:
            return f"{head} ARP, Request who-has {tpa} tell {spa}, length {len(frame) - 14}"
        return f"{head} ARP, Reply {spa} is-at {frame[22:28].hex(':')}, length {len(frame) - 14}"
    if etype == 0x0800 and len(frame) >= 34:
        ihl = (frame[14] & 0x0F) * 4
        src, dst, proto, ttl = ip4_str(frame[26:30]), ip4_str(frame[30:34]), frame[23], frame[22]
        total = struct.unpack_from("!H", frame, 16)[0]
        l4 = 14 + ihl
        if proto == 1 and len(frame) >= l4 + 4:
            t, c = frame[l4], frame[l4 + 1]
            kind = {0: "echo reply", 8: "echo request", 11: "time exceeded in-transit",
                    3: f"unreachable code {c}"}.get(t, f"type {t} code {c}")
            return f"{head} IP {src} > {dst}: ICMP {kind}, ttl {ttl}, length {total}"
        if proto in (6, 17) and len(frame) >= l4 + 4:
            sp, dp = struct.unpack_from("!HH", frame, l4)
            name = "UDP" if proto == 17 else "TCP"
            return f"{head} IP {src}.{sp} > {dst}.{dp}: {name}, ttl {ttl}, length {total}"
        return f"{head} IP {src} > {dst}: proto {proto}, ttl {ttl}, length {total}"
    if etype == 0x86DD:
        return f"{head} IP6, length {len(frame) - 14}"
    return f"{head} ethertype 0x{etype:04x}, length {len(frame)}"


def trace_record(rec: dict[str, Any]) -> str:
    out = [f"packet on {rec['iif']} ({rec['len']} bytes)"]
    for st in rec["steps"]:
        fields = " ".join(f"{k}={v}" for k, v in st.items() if k != "stage")
        out.append(f"  {st['stage']:<18} {fields}")
    return "\n".join(out)


def explain(res: dict[str, Any]) -> str:
    p = res["packet"]
    ports = f" {p['sport']} > {p['dport']}" if "sport" in p else ""
    out = [f"explain: {p['src']} > {p['dst']} proto {p['proto']}{ports} ttl {p['ttl']} "
           f"len {p['len']}{' DF' if p['df'] else ''} arriving on {p['iif']}"]
    for st in res["steps"]:
        fields = " ".join(f"{k}={v}" for k, v in st.items() if k != "stage")
        out.append(f"  {st['stage']:<18} {fields}")
    if res["would_transmit"]:
        for w in res["would_transmit"]:
            out.append(f"  => would transmit {w['len']} bytes on {w['dev']}")
    else:
        out.append("  => nothing would be transmitted")
    return "\n".join(out)


