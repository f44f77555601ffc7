"""In-process cost of netfilter (no I/O): Router.receive per forwarded 64-byte UDP / TCP
packet with no ruleset (fast path), with a 1-rule and a 100-rule FORWARD chain (the
fast path is off while a FORWARD entry exists), and the slow path without netfilter
(forwarding cache cleared before each packet).  Run: .venv/bin/python benchmarks/netfilter_core.py
"""
import sys, time
sys.path.insert(0, str(__import__("pathlib").Path(__file__).resolve().parent.parent))
from tests.core.helpers import Net, H1, H2, LAN, TOPOLOGY, frame_from, ipv4, udp
def mk(rules):
    cfg = TOPOLOGY
    if rules is not None:
        body = "\n".join("    " + l for l in rules.splitlines())
        cfg += "nftables:\n  ruleset: |\n" + body + "\n"
    net = Net(config=cfg); net.reachable(H1); net.reachable(H2); return net
l3 = ipv4(H1.ip, H2.ip, udp(H1.ip, H2.ip, dport=9, data=b"x"*64), proto=17)
fr = frame_from(H1, l3)
r1 = "table inet filter {\n chain forward {\n  type filter hook forward priority filter; policy accept;\n  counter accept\n }\n}"
r100 = open(__import__("pathlib").Path(__file__).with_name("rules100.nft")).read()
for name, rs in (("none", None), ("1 rule", r1), ("100 rules (udp)", r100)):
    net = mk(rs); r = net.router
    for _ in range(100): r.receive(LAN, fr, 0); r.drain()
    N = 30000
    t = time.perf_counter()
    for _ in range(N):
        r.receive(LAN, fr, 0)
        r.tx.clear()
    dt = (time.perf_counter() - t) / N * 1e6
    print(f"{name}: {dt:.2f} us/packet (fast_forwarded={r.fast_forwarded})")
# 100 rules with TCP packets that walk all 99 tcp dport comparisons
from tests.core.helpers import tcp
l3t = ipv4(H1.ip, H2.ip, tcp(H1.ip, H2.ip, dport=80), proto=6)
frt = frame_from(H1, l3t)
net = mk(r100); r = net.router
N = 30000
t = time.perf_counter()
for _ in range(N):
    r.receive(LAN, frt, 0); r.tx.clear()
print(f"100 rules (tcp, all 99 compared): {(time.perf_counter()-t)/N*1e6:.2f} us/packet")
for name, rs, f in (("slow path, no netfilter (udp)", None, fr), ("slow path, no netfilter (tcp)", None, frt),
                    ("1 rule (tcp)", r1, frt)):
    net = mk(rs); r = net.router
    t = time.perf_counter()
    for _ in range(N):
        r.fwd_cache.clear(); r.receive(LAN, f, 0); r.tx.clear()
    print(f"{name}: {(time.perf_counter()-t)/N*1e6:.2f} us/packet")
