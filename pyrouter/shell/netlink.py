"""Link set-up through netlink (pyroute2): MTU, namespace moves, the kernel side's addresses.

Runs before the event loop starts (or in a worker thread): pyroute2's sync API
drives an asyncio loop of its own and must never run on trio's thread while
trio is running.  pyrouter keeps its FIB to itself and never pushes routes
into the kernel, except the optional ``peer`` config of a lab host's side.
"""

from __future__ import annotations

import os
from ipaddress import ip_network
from typing import Any

from pyroute2 import IPRoute, NetNS


IFA_F_NODAD = 0x02   # linux/if_addr.h


def netns_exists(name: str) -> bool:
    return os.path.exists(f"/run/netns/{name}")


def setup_link(name: str, mtu: int, netns: str | None, peer: Any,
               master: str | None = None) -> None:
    """Set the TAP's MTU, move it into *netns* if asked, bring it up there,
    and apply the ``peer`` addresses and routes; or enslave it to the bridge
    *master* (``ip link set dev NAME master BR``) and bring it up."""
    with IPRoute() as ipr:
        idx = ipr.link_lookup(ifname=name)[0]
        ipr.link("set", index=idx, mtu=mtu)
        if master is not None:
            br = ipr.link_lookup(ifname=master)
            if not br:
                raise OSError(f"bridge {master} not found")
            ipr.link("set", index=idx, master=br[0])
        if netns is None:
            ipr.link("set", index=idx, state="up")
            return
        ipr.link("set", index=idx, net_ns_fd=netns)
    with NetNS(netns) as ns:
        idx = ns.link_lookup(ifname=name)[0]
        ns.link("set", index=idx, state="up")
        lo = ns.link_lookup(ifname="lo")
        if lo:
            ns.link("set", index=lo[0], state="up")
        if peer is None:
            return
        for a in peer.addresses:
            # IPv6: IFA_F_NODAD, so that the lab host's address is usable at once (no
            # tentative second, during which the kernel would not even answer NS for it).
            flags = {"flags": IFA_F_NODAD} if a.version == 6 else {}
            ns.addr("add", index=idx, address=str(a.ip), prefixlen=a.network.prefixlen,
                    **flags)
        for rt in peer.routes:
            dst = rt.to if rt.to != "default" else ("::/0" if rt.via.version == 6
                                                    else "0.0.0.0/0")
            net = ip_network(dst)
            # oif: a link-local IPv6 gateway (fe80::...) is only meaningful with a device.
            ns.route("add", dst=str(net.network_address), dst_len=net.prefixlen,
                     gateway=str(rt.via), oif=idx, family=10 if net.version == 6 else 2)


def set_mtu(name: str, mtu: int, netns: str | None) -> None:
    """Change the MTU of a TAP whose kernel side lives in *netns* (None: this namespace)."""
    if netns is None:
        with IPRoute() as ipr:
            ipr.link("set", index=ipr.link_lookup(ifname=name)[0], mtu=mtu)
        return
    with NetNS(netns) as ns:
        ns.link("set", index=ns.link_lookup(ifname=name)[0], mtu=mtu)


IFF_UP = 0x1


def link_states(ports: list[tuple[str, str | None]]) -> dict[str, bool | None]:
    """Whether each TAP's kernel side is administratively up (None: device not found).

    Called once a second from a worker thread by the link monitor; one netlink
    socket per namespace, opened and closed within the call so that no pyroute2
    object crosses threads.
    """
    by_ns: dict[str | None, list[str]] = {}
    for name, ns in ports:
        by_ns.setdefault(ns, []).append(name)
    out: dict[str, bool | None] = {}
    for ns, names in by_ns.items():
        try:
            sock = IPRoute() if ns is None else NetNS(ns)
        except OSError:
            out.update(dict.fromkeys(names))
            continue
        with sock:
            for name in names:
                idx = sock.link_lookup(ifname=name)
                if not idx:
                    out[name] = None
                    continue
                out[name] = bool(sock.get_links(idx[0])[0]["flags"] & IFF_UP)
    return out


def link_kind(name: str) -> str | None:
    """The rtnetlink kind of device *name* in this namespace ("bridge", "veth", "" for
    a physical device), None if there is no such device."""
    with IPRoute() as ipr:
        idx = ipr.link_lookup(ifname=name)
        if not idx:
            return None
        link = ipr.get_links(idx[0])[0]
        info = link.get_attr("IFLA_LINKINFO")
        return (info.get_attr("IFLA_INFO_KIND") or "") if info is not None else ""


def link_facts(name: str) -> dict[str, Any] | None:
    """MAC, MTU, admin state and addresses of device *name* in this namespace
    (None if absent): what an AF_PACKET port needs to know about its device."""
    with IPRoute() as ipr:
        idx = ipr.link_lookup(ifname=name)
        if not idx:
            return None
        link = ipr.get_links(idx[0])[0]
        addrs = [f"{a.get_attr('IFA_ADDRESS')}/{a['prefixlen']}"
                 for a in ipr.get_addr(index=idx[0])]
        return {"ifindex": idx[0], "mac": link.get_attr("IFLA_ADDRESS"),
                "mtu": link.get_attr("IFLA_MTU"), "up": bool(link["flags"] & IFF_UP),
                "addresses": addrs}


def all_local_addresses() -> dict[str, str]:
    """Every address of this namespace (without prefix length) -> its device name."""
    out: dict[str, str] = {}
    with IPRoute() as ipr:
        names = {link["index"]: link.get_attr("IFLA_IFNAME") for link in ipr.get_links()}
        for a in ipr.get_addr():
            out[str(a.get_attr("IFA_ADDRESS"))] = names.get(a["index"], str(a["index"]))
    return out
