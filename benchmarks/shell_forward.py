"""In-process forwarding cost of the shell's TAP path (rx_loop + Router + Transmitter).

Two router ports on SOCK_SEQPACKET socketpairs (frame boundaries like a TAP fd); a
feeder keeps up to 512 UDP frames in flight from host 1 to host 2 and the frames
forwarded out of port b are drained.  Reports process CPU time per forwarded frame,
which, unlike benchmarks/forwarding.py, hardly depends on other load on the machine:
use it to compare two trees of the code (before/after a change to the shell).

    .venv/bin/python benchmarks/shell_forward.py [TREE] [N]   # TREE: a checkout, default this one
"""

import random
import socket
import sys
import time
from pathlib import Path

TREE = sys.argv[1] if len(sys.argv) > 1 else str(Path(__file__).resolve().parent.parent)
sys.path.insert(0, TREE)
import trio
from scapy.layers.inet import IP, UDP
from scapy.layers.l2 import ARP, Ether

from pyrouter.control.build import build, plan_ports
from pyrouter.control.load import parse
from pyrouter.shell.app import App, PortTask
from pyrouter.shell.tap import Transmitter

CFG = """
interfaces:
  a: {addresses: [10.0.1.1/24], macaddress: "02:00:00:00:01:01"}
  b: {addresses: [10.0.2.1/24], macaddress: "02:00:00:00:02:01"}
"""
class Log:
    def info(self, *a, **k): pass
    warning = error = exception = info
class Dev:
    def __init__(s, sock): s.sock = sock
    def fileno(s): return s.sock.fileno()
    def close(s): s.sock.close()

N = int(sys.argv[2]) if len(sys.argv) > 2 else 100_000
cfg = parse(CFG); plans = plan_ports(cfg)
app = App("<bench>", cfg, plans, Log())
app.router = build(cfg, random.Random(1), 0)
pairs = {}
for p in plans:
    o, i = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    o.setblocking(False); i.setblocking(False)
    for s in (o, i):
        s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4 << 20)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
    pairs[p.ifindex] = (o, i)
    app.ports[p.ifindex] = PortTask(p, Dev(i))
frame = bytes(Ether(dst="02:00:00:00:01:01", src="02:00:00:00:aa:01")
              / IP(src="10.0.1.2", dst="10.0.2.2") / UDP(sport=1, dport=2) / (b"x" * 18))
arp = bytes(Ether(dst="ff:ff:ff:ff:ff:ff", src="02:00:00:00:bb:01")
            / ARP(op=1, hwsrc="02:00:00:00:bb:01", psrc="10.0.2.2", pdst="10.0.2.1"))

async def main():
    app.tx = Transmitter(app)
    async with trio.open_nursery() as n:
        app.nursery = n
        await n.start(app.timers.run)
        for pt in app.ports.values():
            app.start_port(pt)
        pairs[2][0].send(arp)
        await trio.sleep(0.05)
        while True:
            try: pairs[2][0].recv(70000)
            except BlockingIOError: break
        sent = got = 0
        t0 = time.process_time(); w0 = time.perf_counter()
        o1, o2 = pairs[1][0], pairs[2][0]
        while got < N:
            while sent < N and sent - got < 512:
                try: o1.send(frame); sent += 1
                except BlockingIOError: break
            await trio.lowlevel.checkpoint()
            while True:
                try: o2.recv(70000); got += 1
                except BlockingIOError: break
        t1 = time.process_time(); w1 = time.perf_counter()
        print(f"{TREE}: {N} fwd, cpu {1e6 * (t1 - t0) / N:.2f} us/frame, "
              f"wall {1e6 * (w1 - w0) / N:.2f} us/frame")
        n.cancel_scope.cancel()
trio.run(main)
