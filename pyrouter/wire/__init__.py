"""pyrouter.wire: pure codecs for the protocols the router speaks.

No state, no time, no I/O.  Each protocol module has offsets/constants, a
hot-path helper where the core needs one, and a frozen ``*Repr`` value with
``parse`` (raises only MalformedError) and ``emit``.
"""

from __future__ import annotations

from .arp import ArpRepr as ArpRepr
from .errors import MalformedError as MalformedError
from .ethernet import EthernetRepr as EthernetRepr
from .ethernet import VlanTag as VlanTag
from .icmpv4 import IcmpRepr as IcmpRepr
from .icmpv6 import Icmpv6Repr as Icmpv6Repr
from .ipv4 import Ipv4Repr as Ipv4Repr
from .ipv6 import Ipv6Repr as Ipv6Repr
from .tcp import TcpRepr as TcpRepr
from .udp import UdpRepr as UdpRepr

__all__ = ["ArpRepr", "EthernetRepr", "IcmpRepr", "Icmpv6Repr", "Ipv4Repr", "Ipv6Repr",
           "MalformedError", "TcpRepr", "UdpRepr", "VlanTag"]
