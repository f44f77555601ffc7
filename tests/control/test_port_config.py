"""Config keys of the port kinds (interfaces.X.kind/master/qemu/device): every bad
combination is a ConfigError naming the key path, before anything is touched."""

from __future__ import annotations

import random

import pytest

from pyrouter.control.build import build
from pyrouter.control.load import ConfigError, parse


def err(text: str) -> ConfigError:
    with pytest.raises(ConfigError) as e:
        build(parse(text), random.Random(0), 0)
    return e.value


def test_valid_port_kinds_build() -> None:
    r = build(parse("""
interfaces:
  lan0: {master: br-lan, addresses: [10.0.1.1/24]}
  vm0: {kind: qemu, qemu: {mode: stream, path: /run/vm0.sock, server: true}}
  vm1: {kind: qemu, qemu: {mode: dgram, local: /run/r.sock, remote: /run/q.sock}}
  vm2: {kind: qemu, qemu: {mode: dgram, local: "127.0.0.1:5000", remote: "127.0.0.1:5001"}}
  eth1: {kind: packet, device: eth1, addresses: [10.0.2.1/24]}
"""), random.Random(0), 0)
    assert [p.name for p in r.ports.values()] == ["lan0", "vm0", "vm1", "vm2", "eth1"]


@pytest.mark.parametrize("itf, path, reason", [
    ("{master: br0, netns: h1}", "interfaces.a.netns", "bridge port"),
    ("{master: br0, peer: {addresses: [10.0.1.2/24]}}", "interfaces.a.peer", "bridge port"),
    ("{master: a}", "interfaces.a.master", "own bridge"),
    ("{master: 'bad name!'}", "interfaces.a.master", "interface name"),
    ("{kind: veth}", "interfaces.a.kind", "'tap', 'qemu' or 'packet'"),
    ("{kind: packet}", "interfaces.a.device", "needs device"),
    ("{kind: packet, device: eth1, netns: h1}", "interfaces.a.netns", "no TAP"),
    ("{kind: packet, device: eth1, master: br0}", "interfaces.a.master", "no TAP"),
    ("{device: eth1}", "interfaces.a.device", "only with kind: packet"),
    ("{qemu: {mode: stream, path: /x}}", "interfaces.a.qemu", "only with kind: qemu"),
    ("{kind: qemu}", "interfaces.a.qemu", "needs qemu"),
    ("{kind: qemu, qemu: {mode: stream, path: /x}, peer: {}}", "interfaces.a.peer", "no TAP"),
])
def test_bad_combinations_name_the_key(itf: str, path: str, reason: str) -> None:
    e = err(f"interfaces:\n  a: {itf}\n")
    assert e.path == path and reason in e.reason, (e.path, e.reason)


def test_two_ports_cannot_share_a_device_or_socket() -> None:
    e = err("interfaces:\n  a: {kind: packet, device: eth1}\n  b: {kind: packet, device: eth1}\n")
    assert e.path == "interfaces.b.device" and "already used by a" in e.reason
    e = err("interfaces:\n  eth1: {addresses: [10.0.1.1/24]}\n  b: {kind: packet, device: eth1}\n")
    assert e.path == "interfaces.b.device" and "TAP this config creates" in e.reason
    e = err("interfaces:\n  a: {kind: qemu, qemu: {mode: dgram, local: /a, remote: /b}}\n"
            "  b: {kind: qemu, qemu: {mode: stream, path: /a, server: true}}\n")
    assert e.path == "interfaces.b.qemu" and "already used" in e.reason


def test_socket_paths_must_fit_sun_path() -> None:
    e = err("interfaces:\n  a: {kind: qemu, qemu: {mode: stream, path: /" + "x" * 120 + "}}\n")
    assert e.path == "interfaces.a.qemu.path" and "107 bytes" in e.reason
    e = err("interfaces:\n  a: {kind: qemu, qemu: {mode: dgram, local: 'host', remote: /b}}\n")
    assert e.path == "interfaces.a.qemu.local"
