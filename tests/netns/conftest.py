"""Network-namespace integration harness for pyrouter.

Every test gets its own topology: uniquely named network namespaces for the
hosts (``pr-<8 hex>-h1`` ...), uniquely named ports (``p<6 hex>a`` ...), a YAML
config in ``tmp_path`` and a router started as described in docs/contract.md::

    python -m pyrouter run -c CFG --log-format json --ready-file R --stats-file S

The target can be switched to the Linux kernel with ``PYROUTER_TARGET=kernel``:
the same topology is then built with a router namespace (``pr-<hex>-r``,
ip_forward=1) and veth pairs whose two ends both carry the port name.  Running
the suite against the kernel proves that the tests themselves are right.

Requirements: root and /dev/net/tun (pyrouter target), plus ip, ping, tcpdump,
traceroute, tracepath and socat on PATH (and radvd for the kernel target of ports
with ``ra:``).  Without root or the TUN device the whole directory is skipped.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

import pytest
import yaml

HERE = Path(__file__).resolve().parent
REPO_ROOT = HERE.parent.parent
TARGET = os.environ.get("PYROUTER_TARGET", "pyrouter").strip().lower() or "pyrouter"
READY_TIMEOUT = 20.0
STOP_TIMEOUT = 10.0

# Every namespace / router process created by this harness, so that a
# session-level safety net can clean up whatever a crashed fixture left behind.
_CREATED_NETNS: set[str] = set()
_LIVE_ROUTERS: set[subprocess.Popen] = set()


# --------------------------------------------------------------------------
# pytest hooks: marker, skip conditions
# --------------------------------------------------------------------------

def _skip_reason() -> str | None:
    if TARGET not in ("pyrouter", "kernel"):
        return f"unknown PYROUTER_TARGET={TARGET!r} (use pyrouter or kernel)"
    if os.geteuid() != 0:
        return "netns tests need root"
    if TARGET == "pyrouter" and not os.path.exists("/dev/net/tun"):
        return "netns tests need /dev/net/tun"
    if shutil.which("ip") is None:
        return "netns tests need iproute2 (ip)"
    return None


def pytest_configure(config: pytest.Config) -> None:
    if any(str(m).split(":")[0].strip() == "netns" for m in config.getini("markers")):
        return  # already registered (pyproject.toml)
    config.addinivalue_line(
        "markers",
        "netns: integration test that builds network namespaces around a router "
        "(needs root and /dev/net/tun)",
    )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    reason = _skip_reason()
    for item in items:
        try:
            Path(str(item.fspath)).resolve().relative_to(HERE)
        except ValueError:
            continue
        item.add_marker(pytest.mark.netns)
        if reason:
            item.add_marker(pytest.mark.skip(reason=reason))


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo):
    """On a failed test, attach the router's non-zero drop counters and log tail
    (collected while the router still runs, i.e. before fixture teardown)."""
    outcome = yield
    rep = outcome.get_result()
    if rep.when != "call" or not rep.failed:
        return
    for topo in getattr(item, "_pyrouter_topologies", []):
        try:
            topo.add_diagnostics(rep)
        except BaseException as e:  # diagnostics must never mask the failure
            rep.sections.append((f"router diagnostics {topo.token}", f"unavailable: {e!r}"))


def pytest_report_header(config: pytest.Config) -> str:
    return f"pyrouter netns target: {TARGET}"


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    # Safety net: normally every fixture cleans up after itself.
    for proc in list(_LIVE_ROUTERS):
        if proc.poll() is None:
            proc.kill()
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                pass
        _LIVE_ROUTERS.discard(proc)
    for ns in sorted(_CREATED_NETNS):
        _del_netns(ns)


# --------------------------------------------------------------------------
# small process helpers
# --------------------------------------------------------------------------

def run(cmd: Sequence[str], *, timeout: float = 30.0, check: bool = False,
        input: str | bytes | None = None, text: bool = True) -> subprocess.CompletedProcess:
    """Run a command, capturing output; never raises on timeout (rc=124 instead)."""
    cmd = [str(c) for c in cmd]
    try:
        cp = subprocess.run(cmd, capture_output=True, timeout=timeout, input=input, text=text)
    except subprocess.TimeoutExpired as e:
        out = e.stdout or ("" if text else b"")
        err = e.stderr or ("" if text else b"")
        if text:
            out = out.decode(errors="replace") if isinstance(out, bytes) else out
            err = err.decode(errors="replace") if isinstance(err, bytes) else err
        cp = subprocess.CompletedProcess(cmd, 124, out, err)
    if check and cp.returncode != 0:
        raise AssertionError(
            f"command failed (rc={cp.returncode}): {' '.join(cmd)}\n"
            f"stdout:\n{cp.stdout}\nstderr:\n{cp.stderr}"
        )
    return cp


def nsexec(ns: str, *cmd: Any, timeout: float = 30.0, check: bool = False,
           input: str | bytes | None = None, text: bool = True) -> subprocess.CompletedProcess:
    """Run ``cmd`` inside network namespace ``ns`` (``ip netns exec``)."""
    return run(["ip", "netns", "exec", ns, *cmd], timeout=timeout, check=check,
               input=input, text=text)


def ip(*args: Any, check: bool = True) -> subprocess.CompletedProcess:
    return run(["ip", *args], check=check, timeout=15)


def _del_netns(ns: str) -> None:
    # Kill anything still running inside (tcpdump, socat, ...): `ip netns pids`.
    cp = run(["ip", "netns", "pids", ns], timeout=10)
    if cp.returncode == 0:
        for pid in cp.stdout.split():
            try:
                os.kill(int(pid), signal.SIGKILL)
            except (ProcessLookupError, ValueError):
                pass
    run(["ip", "netns", "del", ns], timeout=15)
    if not os.path.exists(f"/run/netns/{ns}"):
        _CREATED_NETNS.discard(ns)


def json_stream(text: str) -> list[Any]:
    """Every JSON value of a stream of (indented) JSON documents, as ``--json`` prints."""
    dec, out, i = json.JSONDecoder(), [], 0
    while True:
        while i < len(text) and text[i].isspace():
            i += 1
        if i >= len(text):
            return out
        obj, i = dec.raw_decode(text, i)
        out.append(obj)


def wait_for(pred: Callable[[], Any], timeout: float, interval: float = 0.05,
             what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while True:
        v = pred()
        if v:
            return v
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


# --------------------------------------------------------------------------
# topology description
# --------------------------------------------------------------------------

@dataclasses.dataclass
class Port:
    """One router port and the host on its other side."""
    key: str                               # "a", "b", ... (suffix of the TAP name)
    host: str                              # short host name, e.g. "h1"
    addresses: list[str]                   # router side CIDRs
    peer_addresses: list[str]              # host side CIDRs
    peer_routes: list[dict] = dataclasses.field(default_factory=list)
    mtu: int | None = None
    macaddress: str | None = None
    # Extra router-side interface keys merged into the YAML (e.g. ``{"ra": {...}}``); the
    # kernel target translates ``ra`` into radvd.conf (see _radvd_conf).
    config: dict = dataclasses.field(default_factory=dict)
    # more keys of the router's interface (pyrouter target), e.g. {"dhcp": {...}}
    iface: dict = dataclasses.field(default_factory=dict)
    # filled in by the factory
    name: str = ""                         # TAP / veth name (<= 15 chars)
    netns: str = ""                        # full netns name of the host


def default_ports() -> list[Port]:
    return [
        Port("a", "h1", ["10.0.1.1/24"], ["10.0.1.2/24"], [{"to": "default", "via": "10.0.1.1"}]),
        Port("b", "h2", ["10.0.2.1/24"], ["10.0.2.2/24"], [{"to": "default", "via": "10.0.2.1"}]),
    ]


def _is_v6(addr: str) -> bool:
    return ":" in str(addr)


def _route_args(r: dict) -> list[str]:
    """Translate a contract route dict into `ip route add` arguments."""
    args: list[str] = []  # iproute2 infers the family from `to` / `via`

    rtype = r.get("type", "unicast")
    if rtype != "unicast":
        args.append(rtype)
    args.append(str(r["to"]))
    for nh in r.get("nexthops") or ():
        args += ["nexthop", "via", str(nh["via"]), "weight", str(nh.get("weight", 1))]
    if r.get("via"):
        args += ["via", str(r["via"])]
    if r.get("dev"):
        args += ["dev", str(r["dev"])]
    if r.get("metric") is not None:
        args += ["metric", str(r["metric"])]
    if r.get("mtu") is not None:
        args += ["mtu", "lock", str(r["mtu"])]
    if r.get("table") is not None:
        args += ["table", str(r["table"])]
    return args


def _rule_args(r: dict) -> list[str]:
    """Translate a contract rule dict into `ip rule add` arguments."""
    args = ["pref", str(r["priority"])]
    for key, word in (("from", "from"), ("to", "to"), ("iif", "iif"), ("oif", "oif"),
                      ("fwmark", "fwmark"), ("tos", "tos"), ("ipproto", "ipproto"),
                      ("sport", "sport"), ("dport", "dport")):
        if r.get(key) is not None:
            args += [word, str(r[key])]
    if r.get("table") is not None:
        args += ["lookup", str(r["table"])]
    elif r.get("goto") is not None:
        args += ["goto", str(r["goto"])]
    else:
        args.append(str(r["type"]))
    if r.get("suppress_prefixlength") is not None:
        args += ["suppress_prefixlength", str(r["suppress_prefixlength"])]
    return args


def _onoff(v: Any) -> str:
    return "on" if v else "off"


def _radvd_conf(dev: str, ra: dict, addresses: Sequence[str]) -> str:
    """Translate the contract's ``interfaces.X.ra`` section (keys.md) into radvd.conf.

    Every key is written explicitly, with the contract's defaults (RFC 4861 ones) where
    the key is absent, so that radvd's own defaults (e.g. a 1-day valid lifetime) never
    leak in and both targets advertise the same thing.
    """
    known = {"max_rtr_adv_interval", "min_rtr_adv_interval", "default_lifetime", "managed",
             "other_config", "cur_hop_limit", "reachable_time", "retrans_timer", "mtu",
             "prefixes", "rdnss", "rdnss_lifetime"}
    unknown = set(ra) - known
    assert not unknown, f"ra keys without a radvd translation: {sorted(unknown)}"
    mx = ra.get("max_rtr_adv_interval", 600)
    mn = ra.get("min_rtr_adv_interval", max(3, round(0.33 * mx, 3)))
    lines = [f"interface {dev} {{",
             "  AdvSendAdvert on;",
             f"  MaxRtrAdvInterval {mx};",
             f"  MinRtrAdvInterval {mn};",
             f"  AdvDefaultLifetime {ra.get('default_lifetime', 3 * mx)};",
             f"  AdvManagedFlag {_onoff(ra.get('managed', False))};",
             f"  AdvOtherConfigFlag {_onoff(ra.get('other_config', False))};",
             f"  AdvCurHopLimit {ra.get('cur_hop_limit', 64)};",
             f"  AdvReachableTime {ra.get('reachable_time', 0)};",
             f"  AdvRetransTimer {ra.get('retrans_timer', 0)};",
             f"  AdvLinkMTU {ra.get('mtu') or 0};",      # 0: no MTU option
             "  AdvSourceLLAddress on;"]
    prefixes = ra.get("prefixes")
    if prefixes is None:  # default: each global /64 of the interface, L=1 A=1
        prefixes = []
        for a in addresses:
            net = ipaddress.ip_interface(a).network
            if net.version == 6 and net.prefixlen == 64 and not net.is_link_local \
                    and {"prefix": str(net)} not in prefixes:
                prefixes.append({"prefix": str(net)})
    for pfx in prefixes:
        lines += [f"  prefix {pfx['prefix']} {{",
                  f"    AdvOnLink {_onoff(pfx.get('on_link', True))};",
                  f"    AdvAutonomous {_onoff(pfx.get('autonomous', True))};",
                  f"    AdvValidLifetime {pfx.get('valid_lifetime', 2592000)};",
                  f"    AdvPreferredLifetime {pfx.get('preferred_lifetime', 604800)};",
                  "  };"]
    if ra.get("rdnss"):
        lines += [f"  RDNSS {' '.join(ra['rdnss'])} {{",
                  f"    AdvRDNSSLifetime {ra.get('rdnss_lifetime', 2 * mx)};",
                  "  };"]
    lines.append("};")
    return "\n".join(lines) + "\n"


def eui64_lladdr(mac: str) -> str:
    """The kernel's default (addr_gen_mode 0, EUI-64) link-local address for a MAC."""
    b = bytearray(int(x, 16) for x in mac.split(":"))
    b[0] ^= 0x02
    return str(ipaddress.IPv6Address(b"\xfe\x80" + bytes(6) + bytes(b[:3]) + b"\xff\xfe"
                                     + bytes(b[3:])))


def _v6_addrs(ns: str, dev: str) -> list[dict]:
    """The IPv6 addr_info entries of ``dev`` in ``ns`` (``ip -j -6 addr``)."""
    cp = nsexec(ns, "ip", "-j", "-6", "addr", "show", "dev", dev)
    if cp.returncode != 0:
        return []
    return [ai for link in json.loads(cp.stdout or "[]") for ai in link.get("addr_info", [])]


class Capture:
    """tcpdump running in a namespace, writing a pcap read back with scapy."""

    def __init__(self, ns: str, dev: str, bpf: str, path: Path):
        self.ns, self.dev, self.bpf, self.path = ns, dev, bpf, path
        self.err_path = path.with_suffix(".stderr")
        self._err = open(self.err_path, "w+")
        self.proc = subprocess.Popen(
            ["ip", "netns", "exec", ns, "tcpdump", "--immediate-mode", "-Z", "root",
             "-i", dev, "-n", "-U",
             "-s", "0", "-w", str(path), *([bpf] if bpf else [])],
            stdout=subprocess.DEVNULL, stderr=self._err,
        )
        try:
            wait_for(lambda: "listening on" in self.err_path.read_text() or self.proc.poll() is not None,
                     10, what=f"tcpdump in {ns} to start")
        except AssertionError:
            self.proc.kill()
            raise
        if self.proc.poll() is not None:
            raise AssertionError(f"tcpdump failed: {self.err_path.read_text()}")
        self._packets: list | None = None

    def stop(self, settle: float = 0.3) -> list:
        if self._packets is not None:
            return self._packets
        time.sleep(settle)
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self._err.close()
        self._packets = self.read()
        return self._packets

    def read(self) -> list:
        from scapy.utils import rdpcap
        try:
            if not self.path.exists() or self.path.stat().st_size < 24:
                return []
            return list(rdpcap(str(self.path)))
        except EOFError:
            return []

    def wait_for(self, pred: Callable[[Any], bool], timeout: float = 5.0) -> bool:
        """Poll the pcap until a packet satisfies ``pred``."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                if any(pred(p) for p in self.read()):
                    return True
            except Exception:
                pass
            time.sleep(0.1)
        return False

    def __enter__(self) -> "Capture":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop(settle=0.0 if exc[0] else 0.3)


class Topology:
    """A running router with hosts attached, built by the ``topology`` factory."""

    def __init__(self, tmp_path: Path, token: str, ports: list[Port], routes: list[dict],
                 target: str, extra_config: dict | None = None):
        self.tmp = tmp_path
        self.token = token
        self.ports = {p.key: p for p in ports}
        self.routes = routes
        self.target = target
        # Extra top-level config keys (e.g. ``metrics: {listen: ...}``), merged last.
        self.extra_config: dict[str, Any] = dict(extra_config or {})
        self.netns: list[str] = []          # every namespace this topology created
        self.hosts: dict[str, str] = {}     # "h1" -> "pr-<hex>-h1"
        self.router_ns: str | None = None   # kernel target only
        self.proc: subprocess.Popen | None = None
        self.cfg_path = tmp_path / "router.yaml"
        self.ready_path = tmp_path / "router.ready"
        self.stats_path = tmp_path / "router.stats.json"
        self.log_path = tmp_path / "router.log"
        # The router's control socket (``--socket``), unique per topology.  AF_UNIX paths
        # are limited to 107 bytes: fall back to a private directory under /tmp.
        self.socket_path = tmp_path / "ctl.sock"
        self._socket_dir: Path | None = None
        if len(str(self.socket_path)) > 100:
            self._socket_dir = Path(f"/tmp/pyrouter-{token}")
            self.socket_path = self._socket_dir / "ctl.sock"
        self._log_fh = None
        self.stopped = False
        self.exit_code: int | None = None
        self._ncap = 0
        self._bg: list[subprocess.Popen] = []   # background CLI clients (cli_popen)

    # ---- names -----------------------------------------------------------
    def ns(self, host: str) -> str:
        return self.hosts[host]

    def dev(self, key: str) -> str:
        return self.ports[key].name

    def port_of(self, host: str) -> Port:
        for p in self.ports.values():
            if p.host == host:
                return p
        raise KeyError(host)

    def exec(self, host: str, *cmd: Any, **kw: Any) -> subprocess.CompletedProcess:
        return nsexec(self.ns(host), *cmd, **kw)

    # ---- construction ------------------------------------------------------
    def add_host_netns(self, host: str) -> str:
        """Create one more namespace ``pr-<token>-<host>`` (removed at teardown), e.g. for
        a host behind another host; returns its name."""
        ns = f"pr-{self.token}-{host}"
        self._add_netns(ns)
        self.hosts[host] = ns
        return ns

    def _add_netns(self, ns: str) -> None:
        ip("netns", "add", ns)
        _CREATED_NETNS.add(ns)
        self.netns.append(ns)
        ip("-n", ns, "link", "set", "lo", "up")
        # A new namespace copies the IPv4 knobs of the initial one (devconf_inherit_init_net
        # 0), so a machine whose root namespace forwards (dockerd turns ip_forward on) would
        # make every host a router: forwarding loops, redirects ignored.  Hosts are hosts.
        nsexec(ns, "sysctl", "-qw", "net.ipv4.ip_forward=0", check=True)

    def config_dict(self) -> dict:
        interfaces: dict[str, dict] = {}
        for p in self.ports.values():
            d: dict[str, Any] = {"addresses": list(p.addresses)}
            if p.mtu is not None:
                d["mtu"] = p.mtu
            if p.macaddress:
                d["macaddress"] = p.macaddress
            d["netns"] = p.netns
            d["peer"] = {"addresses": list(p.peer_addresses)}
            if p.peer_routes:
                d["peer"]["routes"] = [dict(r) for r in p.peer_routes]
            d.update(p.config)
            d.update(p.iface)
            interfaces[p.name] = d
        cfg: dict[str, Any] = {"interfaces": interfaces}
        if self.routes:
            cfg["routes"] = [dict(r) for r in self.routes]
        for k, v in self.extra_config.items():
            cfg[k] = v
        return cfg

    def write_config(self, cfg: dict | str | None = None) -> None:
        """Rewrite the config file: a dict (YAML-dumped), raw text (possibly invalid),
        or None for ``config_dict()`` (after changing ``routes``/``extra_config``)."""
        if cfg is None:
            cfg = self.config_dict()
        text = cfg if isinstance(cfg, str) else yaml.safe_dump(cfg, sort_keys=False)
        tmp = self.cfg_path.with_suffix(".tmp")
        tmp.write_text(text)
        os.replace(tmp, self.cfg_path)

    def cli(self, *args: Any, check: bool = True, timeout: float = 30.0,
            user: str | None = None, input: str | None = None) -> subprocess.CompletedProcess:
        """``python -m pyrouter --socket S ARGS...`` against this topology's router.

        ``user="nobody"`` runs the client unprivileged (setpriv, uid/gid 65534)."""
        assert self.target == "pyrouter", "the operator CLI exists only for pyrouter"
        cmd: list[Any] = [sys.executable, "-m", "pyrouter", "--socket", str(self.socket_path),
                          *args]
        if user is not None:
            assert user == "nobody", user
            cmd = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", *cmd]
        cp = subprocess.run([str(c) for c in cmd], capture_output=True, text=True,
                            timeout=timeout, cwd=str(REPO_ROOT), input=input)
        if check and cp.returncode != 0:
            raise AssertionError(
                f"command failed (rc={cp.returncode}): {' '.join(map(str, cmd))}\n"
                f"stdout:\n{cp.stdout}\nstderr:\n{cp.stderr}")
        return cp

    def cli_popen(self, *args: Any) -> subprocess.Popen:
        """Start ``pyrouter --socket S ARGS...`` in the background (stdout/stderr piped,
        text); killed at teardown if still running."""
        assert self.target == "pyrouter", "the operator CLI exists only for pyrouter"
        cmd = [sys.executable, "-m", "pyrouter", "--socket", str(self.socket_path), *args]
        proc = subprocess.Popen([str(c) for c in cmd], stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True, cwd=str(REPO_ROOT),
                                stdin=subprocess.DEVNULL)
        self._bg.append(proc)
        return proc

    def cli_json(self, *args: Any, **kw: Any) -> Any:
        """``cli(*args, "--json")`` parsed."""
        cp = self.cli(*args, "--json", **kw)
        try:
            return json.loads(cp.stdout)
        except ValueError:
            raise AssertionError(f"not JSON from pyrouter {' '.join(map(str, args))} --json:\n"
                                 f"{cp.stdout}\n{cp.stderr}") from None

    def reload(self, how: str = "cli", check: bool = True) -> subprocess.CompletedProcess | None:
        """Reload the config file: ``pyrouter reload`` (returns the CompletedProcess) or
        ``how="sighup"`` (returns None once the router logged the reload outcome)."""
        if how == "cli":
            return self.cli("reload", check=check)
        assert how == "sighup" and self.proc is not None
        n = len(self._reload_events())
        self.proc.send_signal(signal.SIGHUP)
        wait_for(lambda: len(self._reload_events()) > n, 10, what="the router to log a reload")
        return None

    def _reload_events(self) -> list[dict]:
        return [e for e in self.log_events() if str(e.get("event", "")).startswith("reload")]

    def start(self) -> None:
        for p in self.ports.values():
            if p.host not in self.hosts:
                ns = f"pr-{self.token}-{p.host}"
                self._add_netns(ns)
                self.hosts[p.host] = ns
            p.netns = self.hosts[p.host]
            if p.config.get("ra") is not None:
                # A SLAAC host (RFC 4862), whatever devconf_inherit_init_net gives a new
                # namespace: the port's device takes these defaults when it appears in (or
                # moves into) the namespace.
                for knob in ("forwarding=0", "accept_ra=1", "autoconf=1"):
                    nsexec(p.netns, "sysctl", "-qw", f"net.ipv6.conf.default.{knob}",
                           check=True)
        self.cfg_path.write_text(yaml.safe_dump(self.config_dict(), sort_keys=False))
        if self.target == "kernel":
            self._start_kernel()
        else:
            self._start_pyrouter()
        self._check_hosts_configured()
        if self.target == "pyrouter":
            self._settle_v6_pyrouter()

    def _settle_v6_pyrouter(self) -> None:
        """Best effort: give pyrouter's link-local addresses time to leave DAD, as the
        kernel target waits for (``ip addr``) - here seen from outside, by pinging the
        router's EUI-64 link-local from the host's own link-local (ports with a fixed
        macaddress only: the router's MAC is not otherwise known).  Never fails."""
        for p in self.ports.values():
            if not p.macaddress or not any(_is_v6(a) for a in p.addresses):
                continue
            ll = f"{eui64_lladdr(p.macaddress)}%{p.name}"
            deadline = time.monotonic() + 5
            while time.monotonic() < deadline:
                if nsexec(p.netns, "ping", "-6", "-n", "-q", "-c", "1", "-W", "1", ll,
                          timeout=5).returncode == 0:
                    break

    def _start_pyrouter(self) -> None:
        if self._socket_dir is not None:
            self._socket_dir.mkdir(mode=0o700, exist_ok=True)
        cmd = [sys.executable, "-m", "pyrouter", "--socket", str(self.socket_path),
               "run", "-c", str(self.cfg_path),
               "--log-format", "json", "--ready-file", str(self.ready_path),
               "--stats-file", str(self.stats_path)]
        self._log_fh = open(self.log_path, "ab")
        self.proc = subprocess.Popen(cmd, cwd=str(REPO_ROOT), stdout=self._log_fh,
                                     stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                     start_new_session=True)
        _LIVE_ROUTERS.add(self.proc)
        deadline = time.monotonic() + READY_TIMEOUT
        while not self.ready_path.exists():
            rc = self.proc.poll()
            if rc is not None:
                pytest.fail(f"pyrouter exited with {rc} before becoming ready\n"
                            f"config:\n{self.cfg_path.read_text()}\nlog:\n{self.log_text()}")
            if time.monotonic() > deadline:
                pytest.fail(f"pyrouter not ready after {READY_TIMEOUT}s (no {self.ready_path})\n"
                            f"config:\n{self.cfg_path.read_text()}\nlog:\n{self.log_text()}")
            time.sleep(0.05)

    def _start_kernel(self) -> None:
        r = f"pr-{self.token}-r"
        self._add_netns(r)
        self.router_ns = r
        nsexec(r, "sysctl", "-qw", "net.ipv4.ip_forward=1", check=True)
        # IPv6 router: forwarding=1 on all (and default, so the veths inherit it), which
        # also makes the router ignore RAs (accept_ra=1) and set R in its NAs.
        nsexec(r, "sysctl", "-qw", "net.ipv6.conf.all.forwarding=1", check=True)
        for p in self.ports.values():
            ip("-n", r, "link", "add", p.name, "type", "veth", "peer", "name", p.name,
               "netns", p.netns)
            mtu = ["mtu", str(p.mtu)] if p.mtu else []
            mac = ["address", p.macaddress] if p.macaddress else []
            ip("-n", r, "link", "set", p.name, *mtu, *mac, "up")
            for a in p.addresses:
                ip("-n", r, "addr", "add", a, "dev", p.name, *(["nodad"] if _is_v6(a) else []))
            ip("-n", p.netns, "link", "set", p.name, *mtu, "up")
            for a in p.peer_addresses:
                ip("-n", p.netns, "addr", "add", a, "dev", p.name,
                   *(["nodad"] if _is_v6(a) else []))
        for p in self.ports.values():
            for rt in p.peer_routes:
                dev = ["dev", p.name] if _is_v6(rt.get("via", "")) and not rt.get("dev") else []
                ip("-n", p.netns, "route", "add", *_route_args(rt), *dev)
        for rt in self.routes:
            ip("-n", r, "route", "add", *_route_args(rt))
        for rule in self.extra_config.get("rules", []):
            ip("-n", r, "rule", "add", *_rule_args(rule))
        for knob, value in self.extra_config.get("ipv4", {}).items():
            # The contract's ipv4: keys are the kernel's sysctl names.
            name = f"net.ipv4.conf.all.{knob}" if knob in ("rp_filter", "send_redirects") \
                else f"net.ipv4.{knob}"
            nsexec(r, "sysctl", "-qw", f"{name}={int(value)}", check=True)
        nft = self.extra_config.get("nftables")
        if nft is not None:
            # The same ruleset file pyrouter loads, into the kernel router with nft -f.
            assert shutil.which("nft"), "nft (Debian package nftables) is needed"
            path = nft.get("file")
            if path is None:
                path = self.tmp / "ruleset.nft"
                path.write_text(nft["ruleset"])
            elif not os.path.isabs(path):
                path = self.cfg_path.parent / path
            cp = nsexec(r, "nft", "-f", str(path))
            assert cp.returncode == 0, f"nft -f {path}: {cp.stderr}"
        # The router's link-local addresses finish DAD (~1-2 s) before it is "ready": until
        # then the kernel sends no NS for forwarded traffic (ndisc_send_ns needs a
        # non-tentative link-local) and radvd has no source address.
        if any(_is_v6(a) for p in self.ports.values() for a in p.addresses) \
                or any(p.config.get("ra") is not None for p in self.ports.values()):
            def dad_done() -> bool:
                return all(any(ai.get("scope") == "link" and not ai.get("tentative")
                               for ai in _v6_addrs(r, p.name)) for p in self.ports.values())
            wait_for(dad_done, 10, what="the kernel router's link-local addresses (DAD)")
        for p in self.ports.values():
            extra = set(p.config) - {"ra"}
            assert not extra, f"no kernel translation for interface keys {sorted(extra)}"
            if p.config.get("ra") is not None:
                self._start_radvd(p)
        self.ready_path.write_text("kernel\n")

    def nft_list_ruleset(self) -> str:
        """``nft list ruleset`` in the kernel router, ``pyrouter nft list ruleset`` here."""
        if self.target == "kernel":
            assert self.router_ns is not None
            cp = nsexec(self.router_ns, "nft", "list", "ruleset", check=True)
        else:
            cp = self.cli("nft", "list", "ruleset")
        return cp.stdout

    def _start_radvd(self, p: Port) -> None:
        """radvd in the router namespace, for one port's ``ra:`` section (kernel target)."""
        assert shutil.which("radvd"), "radvd is needed for ra: on the kernel target"
        conf = self.tmp / f"radvd-{p.key}.conf"
        conf.write_text(_radvd_conf(p.name, p.config["ra"], p.addresses))
        log = open(self.tmp / f"radvd-{p.key}.log", "w")
        proc = subprocess.Popen(
            ["ip", "netns", "exec", self.router_ns, "radvd", "-n", "-C", str(conf),
             "-p", str(self.tmp / f"radvd-{p.key}.pid"), "-m", "stderr"],
            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        log.close()
        self._bg.append(proc)
        time.sleep(0.3)
        if proc.poll() is not None:
            raise AssertionError(f"radvd exited {proc.returncode}:\n{conf.read_text()}\n"
                                 f"{(self.tmp / f'radvd-{p.key}.log').read_text()}")

    def _check_hosts_configured(self) -> None:
        """The peers must be configured once the router says it is ready; hosts with IPv6
        also wait for their own link-local address to leave DAD (so that RS and NS are
        sent from it, as on a settled link)."""
        for p in self.ports.values():
            want = {a.split("/")[0] for a in p.peer_addresses}
            v6 = any(_is_v6(a) for a in p.addresses + p.peer_addresses) or "ra" in p.config

            def have() -> bool:
                cp = nsexec(p.netns, "ip", "-j", "addr", "show", "dev", p.name)
                if cp.returncode != 0:
                    return False
                infos = [ai for link in json.loads(cp.stdout or "[]")
                         for ai in link.get("addr_info", [])]
                got = {ai["local"] for ai in infos if not ai.get("tentative")}
                if v6 and not any(ai.get("family") == "inet6" and ai.get("scope") == "link"
                                  and not ai.get("tentative") for ai in infos):
                    return False
                return {str(ipaddress.ip_address(a)) for a in want} <= got

            try:
                wait_for(have, 10, what=f"{p.name} in {p.netns} to carry {sorted(want)}")
            except AssertionError as e:
                dump = nsexec(p.netns, "ip", "addr").stdout
                pytest.fail(f"host side not configured after ready: {e}\n{dump}\n"
                            f"log:\n{self.log_text()}")

    # ---- router process ---------------------------------------------------
    def log_text(self, limit: int = 20000) -> str:
        if self._log_fh:
            self._log_fh.flush()
        if not self.log_path.exists():
            return "(no log)"
        data = self.log_path.read_bytes().decode(errors="replace")
        return data if len(data) <= limit else "...\n" + data[-limit:]

    def log_events(self) -> list[dict]:
        out = []
        for line in self.log_text(limit=10**9).splitlines():
            try:
                ev = json.loads(line)
            except ValueError:
                continue
            if isinstance(ev, dict):
                out.append(ev)
        return out

    def stop(self) -> int | None:
        """Ask the router to stop (SIGTERM; SIGKILL after STOP_TIMEOUT). Returns its exit code.

        For the kernel target, the router namespace is deleted (which removes the veths)
        and 0 is returned.
        """
        if self.stopped:
            return self.exit_code
        self.stopped = True
        if self.target == "kernel":
            if self.router_ns:
                # Delete the veths explicitly: netns teardown is asynchronous in the kernel.
                for p in self.ports.values():
                    run(["ip", "-n", self.router_ns, "link", "del", p.name], timeout=15)
                _del_netns(self.router_ns)
                self.netns.remove(self.router_ns)
            self.exit_code = 0
            return 0
        proc = self.proc
        if proc is None:
            return None
        try:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(STOP_TIMEOUT)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(5)
                    self.exit_code = None  # did not stop by itself
                    return None
            self.exit_code = proc.returncode
            return self.exit_code
        finally:
            _LIVE_ROUTERS.discard(proc)
            if self._log_fh:
                self._log_fh.close()
                self._log_fh = None

    def restart(self) -> int | None:
        """Stop the router (SIGTERM) and start it again on the same config; returns
        the exit code of the stop.  pyrouter target only."""
        assert self.target == "pyrouter"
        rc = self.stop()
        self.stopped = False
        self.exit_code = None
        self._start_pyrouter()
        return rc

    def alive(self) -> bool:
        return self.target == "kernel" or (self.proc is not None and self.proc.poll() is None)

    def teardown(self) -> None:
        err: str | None = None
        for bg in self._bg:
            if bg.poll() is None:
                bg.kill()
            try:
                bg.communicate(timeout=5)
            except (subprocess.TimeoutExpired, ValueError, OSError):
                pass
        was_running = self.target == "kernel" or (self.proc is not None and self.proc.poll() is None)
        already_stopped = self.stopped or (self.target == "pyrouter" and self.proc is None)
        try:
            rc = self.stop()
            if not already_stopped:
                if not was_running:
                    err = f"router died during the test (exit code {self.proc.returncode})"
                elif rc is None:
                    err = f"router did not exit within {STOP_TIMEOUT}s of SIGTERM (killed)"
                elif rc != 0:
                    err = f"router exited {rc} after SIGTERM (expected 0)"
        finally:
            for ns in list(reversed(self.netns)):
                _del_netns(ns)
            if self._socket_dir is not None:
                shutil.rmtree(self._socket_dir, ignore_errors=True)
        if err:
            pytest.fail(f"{err}\nlog:\n{self.log_text()}", pytrace=False)

    def add_diagnostics(self, rep: pytest.TestReport) -> None:
        lines = [f"target={self.target} netns={self.netns} ports="
                 f"{ {k: p.name for k, p in self.ports.items()} }"]
        if self.alive() and not self.stopped:
            st = self.stats(timeout=2, fail=False)
            if st is not None:
                nz = {k: v for k, v in st.get("drops", {}).items() if v}
                lines.append(f"non-zero drops: {json.dumps(nz, sort_keys=True)}")
                if "interfaces" in st:
                    lines.append(f"interfaces: {json.dumps(st['interfaces'], sort_keys=True)}")
        if self.target == "pyrouter":
            tail = self.log_text(limit=6000)
            lines.append("router log (tail):\n" + tail)
        rep.sections.append((f"router {self.token}", "\n".join(lines)))

    # ---- counters -----------------------------------------------------------
    def stats(self, timeout: float = 5.0, fail: bool = True) -> dict | None:
        """Current counters: SIGUSR1 and wait for a fresh stats file (pyrouter), or a
        synthesized equivalent from /proc/net/{snmp,netstat} (kernel)."""
        if self.target == "kernel":
            return self._kernel_stats()
        assert self.proc is not None and self.proc.poll() is None, \
            f"router not running\nlog:\n{self.log_text()}"

        def ident() -> tuple | None:
            try:
                st = self.stats_path.stat()
                return (st.st_ino, st.st_mtime_ns, st.st_size, self.stats_path.read_bytes())
            except FileNotFoundError:
                return None

        before = ident()
        self.proc.send_signal(signal.SIGUSR1)
        deadline = time.monotonic() + timeout
        while True:
            now = ident()
            if now is not None and now != before:
                try:
                    return json.loads(now[3])
                except ValueError:
                    pass  # should not happen with atomic rename; retry
            if time.monotonic() > deadline:
                if not fail:
                    return None
                pytest.fail(f"stats file {self.stats_path} not (re)written within {timeout}s "
                            f"of SIGUSR1\nlog:\n{self.log_text()}")
            time.sleep(0.02)

    def _kernel_stats(self) -> dict:
        assert self.router_ns
        snmp: dict[str, dict[str, int]] = {}
        for f in ("/proc/net/snmp", "/proc/net/netstat"):
            lines = nsexec(self.router_ns, "cat", f, check=True).stdout.splitlines()
            for hdr, val in zip(lines[0::2], lines[1::2]):
                sect, names = hdr.split(":", 1)
                _, vals = val.split(":", 1)
                snmp.setdefault(sect, {}).update(
                    {n: int(v) for n, v in zip(names.split(), vals.split())})
        drops = {name: snmp.get(sect, {}).get(field, 0)
                 for name, (sect, field) in KERNEL_DROP_EQUIV.items()}
        return {"drops": drops, "snmp": snmp["Ip"], "kernel": snmp}

    # ---- observation helpers -----------------------------------------------
    def capture(self, host: str, bpf: str = "", dev: str | None = None) -> Capture:
        self._ncap += 1
        dev = dev or self.port_of(host).name
        return Capture(self.ns(host), dev, bpf, self.tmp / f"cap{self._ncap}-{host}.pcap")

    def mac(self, host: str) -> str:
        p = self.port_of(host)
        link = json.loads(nsexec(p.netns, "ip", "-j", "link", "show", "dev", p.name,
                                 check=True).stdout)[0]
        return link["address"]

    def neigh_mac(self, host: str, addr: str) -> str | None:
        p = self.port_of(host)
        cp = nsexec(p.netns, "ip", "-j", "neigh", "show", addr, "dev", p.name, check=True)
        for n in json.loads(cp.stdout or "[]"):
            if n.get("lladdr") and n.get("dst") == addr:
                return n["lladdr"]
        return None


# Kernel counters that stand in for pyrouter drop reasons (kernel target only).
# Several pyrouter reasons share one kernel counter (InHdrErrors), so tests look at
# deltas around a single packet.
KERNEL_DROP_EQUIV: dict[str, tuple[str, str]] = {
    "ip_csum_error": ("IpExt", "InCsumErrors"),
    "ip_truncated": ("IpExt", "InTruncatedPkts"),
    "ip_bad_total_len": ("Ip", "InHdrErrors"),
    "ip_bad_ihl": ("Ip", "InHdrErrors"),
    "ip_bad_version": ("Ip", "InHdrErrors"),
    "no_route": ("Ip", "InNoRoutes"),
}


# --------------------------------------------------------------------------
# fixtures
# --------------------------------------------------------------------------

@pytest.fixture
def target() -> str:
    """'pyrouter' or 'kernel' (PYROUTER_TARGET)."""
    return TARGET


@pytest.fixture(name="nsexec")
def nsexec_fixture() -> Callable[..., subprocess.CompletedProcess]:
    """``nsexec(ns, *cmd, timeout=30, check=False)`` around ``ip netns exec``."""
    return nsexec


@pytest.fixture
def topology(tmp_path: Path, request: pytest.FixtureRequest):
    """Factory: ``topology(ports=None, extra_ports=(), mtu={}, routes=(), config={})`` -> Topology.

    * ``ports``: replace the default h1/h2 ports entirely (Port objects or dicts of
      Port fields, e.g. ``{"key": "c", "host": "h3", "addresses": ["10.0.3.1/24"],
      "peer_addresses": ["10.0.3.2/24"], "peer_routes": [{"to": "default",
      "via": "10.0.3.1"}], "mtu": 9000}``).
    * ``extra_ports``: more ports (same forms) added to the default two.
    * ``mtu``: {"a": 1400} sets the MTU of a port (router side and host side).
    * ``routes``: extra contract ``routes:`` entries for the router (``dev: "port:a"``
      names port a's device, e.g. for a link-local IPv6 gateway).
    * Port ``config``: extra router-side interface keys, e.g. ``{"ra": {...}}`` (keys.md);
      the kernel target runs radvd for ``ra``.  IPv6 addresses (router and peer side) are
      added with nodad on the kernel target; the harness waits for the kernel router's
      and every IPv6 host's link-local address to leave DAD.
    * ``config``: extra top-level config keys, e.g. ``{"metrics": {"listen": "127.0.0.1:9101"}}``
      (pyrouter target only; the control socket is always ``topo.socket_path``), except
      ``nftables: {file: F}`` / ``{ruleset: TEXT}``, which the kernel target loads into
      its router namespace with ``nft -f``.
    """
    made: list[Topology] = []
    request.node._pyrouter_topologies = made

    def as_port(p: Port | dict) -> Port:
        return Port(**p) if isinstance(p, dict) else dataclasses.replace(p)

    def factory(ports: Iterable[Port | dict] | None = None,
                extra_ports: Iterable[Port | dict] = (),
                mtu: dict[str, int] | None = None, routes: Iterable[dict] = (),
                config: dict | None = None) -> Topology:
        token = secrets.token_hex(4)
        plist = [as_port(p) for p in (ports if ports is not None else default_ports())]
        plist += [as_port(p) for p in extra_ports]
        assert len({p.key for p in plist}) == len(plist), "port keys must be unique"
        for p in plist:
            if mtu and p.key in mtu:
                p.mtu = mtu[p.key]
            p.name = f"p{token[:6]}{p.key}"
            assert len(p.name) <= 15, p.name
        # ``dev: "port:<key>"`` in a route names a port before its name is known (needed
        # for link-local IPv6 gateways); resolved here for both targets.
        names = {f"port:{p.key}": p.name for p in plist}

        def resolve(rts: Iterable[dict]) -> list[dict]:
            return [{**r, "dev": names[r["dev"]]} if str(r.get("dev", "")) in names
                    else dict(r) for r in rts]

        routes = resolve(routes)
        for p in plist:
            p.peer_routes = resolve(p.peer_routes)
        sub = tmp_path / f"topo{len(made)}"
        sub.mkdir()
        topo = Topology(sub, token, plist, list(routes), TARGET, extra_config=config)
        made.append(topo)
        try:
            topo.start()
        except BaseException:
            made.remove(topo)
            try:
                topo.teardown()
            except BaseException:
                pass  # the start failure is the interesting error
            raise
        return topo

    yield factory

    errors = []
    for topo in made:
        try:
            topo.teardown()
        except BaseException as e:  # keep tearing down the others
            errors.append(e)
    if errors:
        raise errors[0]


@pytest.fixture
def topo(topology) -> Topology:
    """The default topology: h1 -- router -- h2."""
    return topology()
