"""pyrouter.wire.errors and the package's public names."""

from __future__ import annotations

import pyrouter.wire as wire
from pyrouter.wire.errors import MalformedError


def test_malformed_error() -> None:
    err = MalformedError("ip_truncated", "12 bytes")
    assert isinstance(err, ValueError)
    assert err.reason == "ip_truncated"
    assert str(err) == "ip_truncated: 12 bytes"
    bare = MalformedError("ip_csum_error")
    assert bare.reason == "ip_csum_error" and str(bare) == "ip_csum_error"


def test_package_exports() -> None:
    for name in wire.__all__:
        assert getattr(wire, name) is not None
    assert wire.MalformedError is MalformedError
    assert set(wire.__all__) == {"ArpRepr", "EthernetRepr", "IcmpRepr", "Icmpv6Repr",
                                 "Ipv4Repr", "Ipv6Repr", "MalformedError", "TcpRepr",
                                 "UdpRepr", "VlanTag"}
