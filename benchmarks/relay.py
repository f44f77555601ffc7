"""No-op TAP bridge: the I/O ceiling for a userspace Python forwarder.

Opens two TAP devices with pytun, moves the kernel side of each into a named
network namespace, brings it up, and then copies every Ethernet frame from A
to B and from B to A unchanged, in a single trio event loop.  It does no
parsing, no lookups and no rewriting: whatever pyrouter does per packet comes
on top of this cost, so the relay's throughput is the upper bound a
trio + os.read/os.write design can reach on the machine.

Because it is a bridge, the two hosts must sit in one subnet; addresses are
configured by the caller (benchmarks/forwarding.py), not here.

Usage (as root):

    python benchmarks/relay.py --tap-a NAME --ns-a NETNS --tap-b NAME --ns-b NETNS \
        [--ready-file PATH] [--mtu 1500]

The ready file is written once both TAPs are up in their namespaces.  SIGTERM
or SIGINT stops the loop; the TAPs disappear when their fds are closed.  On
exit a one-line summary of frame counts is printed to stderr.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
from dataclasses import dataclass

import pytun
import trio
from pyroute2 import IPRoute, NetNS

BATCH = 64  # frames read per wakeup before yielding to the scheduler
READ_SIZE = 65536  # larger than any frame a TAP without vnet headers hands us


@dataclass
class Counters:
    frames: int = 0
    dropped: int = 0


def open_tap(name: str, mtu: int) -> pytun.TunTapDevice:
    tap = pytun.TunTapDevice(name=name, flags=pytun.IFF_TAP | pytun.IFF_NO_PI)
    tap.mtu = mtu
    os.set_blocking(tap.fileno(), False)
    return tap


def move_to_netns(ifname: str, netns: str) -> None:
    """Move the kernel side of `ifname` into `netns` and set it up there."""
    with IPRoute() as ipr:
        (index,) = ipr.link_lookup(ifname=ifname)
        ipr.link("set", index=index, net_ns_fd=netns)
    with NetNS(netns) as ns:
        (index,) = ns.link_lookup(ifname=ifname)
        ns.link("set", index=index, state="up")


async def pump(src: int, dst: int, counters: Counters) -> None:
    """Copy frames from fd `src` to fd `dst` forever."""
    read, write = os.read, os.write
    while True:
        for _ in range(BATCH):
            try:
                frame = read(src, READ_SIZE)
            except BlockingIOError:
                await trio.lowlevel.wait_readable(src)
                break
            try:
                write(dst, frame)
                counters.frames += 1
            except BlockingIOError:
                counters.dropped += 1
        else:
            # A full batch: let the other direction (and signals) run.
            await trio.lowlevel.checkpoint()


async def serve(fd_a: int, fd_b: int, ready_file: str | None,
                a_to_b: Counters, b_to_a: Counters) -> None:
    with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(pump, fd_a, fd_b, a_to_b)
            nursery.start_soon(pump, fd_b, fd_a, b_to_a)
            if ready_file:
                with open(ready_file, "w") as f:
                    f.write(f"{os.getpid()}\n")
            async for _ in signals:
                nursery.cancel_scope.cancel()
                break


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tap-a", required=True, help="TAP name for side A (<= 15 chars)")
    parser.add_argument("--ns-a", required=True, help="existing netns for side A")
    parser.add_argument("--tap-b", required=True, help="TAP name for side B (<= 15 chars)")
    parser.add_argument("--ns-b", required=True, help="existing netns for side B")
    parser.add_argument("--ready-file", help="written once both TAPs are up")
    parser.add_argument("--mtu", type=int, default=1500)
    args = parser.parse_args(argv)

    a_to_b, b_to_a = Counters(), Counters()
    tap_a = open_tap(args.tap_a, args.mtu)
    try:
        tap_b = open_tap(args.tap_b, args.mtu)
        try:
            move_to_netns(args.tap_a, args.ns_a)
            move_to_netns(args.tap_b, args.ns_b)
            trio.run(serve, tap_a.fileno(), tap_b.fileno(), args.ready_file,
                     a_to_b, b_to_a)
        finally:
            tap_b.close()
    finally:
        tap_a.close()
    print(f"relay: a->b {a_to_b.frames} frames ({a_to_b.dropped} dropped), "
          f"b->a {b_to_a.frames} frames ({b_to_a.dropped} dropped)",
          file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
