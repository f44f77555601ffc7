"""A small lab for port-kind tests: namespaces, veths and one router in its own namespace R.

pyrouter runs inside R (``ip netns exec R python -m pyrouter run ...``) so that the
kernel devices it attaches to (AF_PACKET, bridges) and its sockets live there; with
PYROUTER_TARGET=kernel the tests configure a kernel router in R instead.  Names
carry a per-lab token; ``teardown`` stops the router (SIGTERM, expecting exit 0)
and deletes every namespace, also after a failure.  Processes and namespaces are
registered with tests/netns/conftest.py's session safety net.
"""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from .conftest import _CREATED_NETNS, _LIVE_ROUTERS, REPO_ROOT, _del_netns, ip


class Lab:
    """Namespaces, veths and one router (pyrouter in namespace R, or the kernel there)."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.token = secrets.token_hex(3)
        self.namespaces: list[str] = []
        self.proc: subprocess.Popen | None = None
        self.log_path = tmp / "router.log"
        self.ready = tmp / "router.ready"
        self.bg: list[subprocess.Popen] = []
        self.r = self.netns("r")

    def netns(self, short: str) -> str:
        ns = f"pp-{self.token}-{short}"
        ip("netns", "add", ns)
        _CREATED_NETNS.add(ns)
        self.namespaces.append(ns)
        ip("-n", ns, "link", "set", "lo", "up")
        return ns

    def name(self, suffix: str) -> str:
        return f"v{self.token}{suffix}"

    def veth(self, name: str, ns_a: str, ns_b: str) -> None:
        """A veth pair whose two ends are both called *name*, one in each namespace."""
        ip("-n", ns_a, "link", "add", name, "type", "veth", "peer", "name", name, "netns", ns_b)
        ip("-n", ns_a, "link", "set", name, "up")
        ip("-n", ns_b, "link", "set", name, "up")

    def host(self, ns: str, dev: str, addr: str, gw: str) -> None:
        ip("-n", ns, "addr", "add", addr, "dev", dev)
        ip("-n", ns, "route", "add", "default", "via", gw)

    def start(self, cfg: dict[str, Any]) -> None:
        path = self.tmp / "router.yaml"
        path.write_text(yaml.safe_dump(cfg, sort_keys=False))
        sock = Path(f"/tmp/pp-{self.token}.sock")
        self.log = open(self.log_path, "wb")  # noqa: SIM115  (closed at teardown)
        self.proc = subprocess.Popen(
            ["ip", "netns", "exec", self.r, sys.executable, "-m", "pyrouter", "--socket",
             str(sock), "run", "-c", str(path), "--log-format", "json", "--ready-file",
             str(self.ready)], cwd=str(REPO_ROOT), stdout=self.log, stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL, start_new_session=True)
        _LIVE_ROUTERS.add(self.proc)
        deadline = time.monotonic() + 20
        while not self.ready.exists():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"pyrouter did not become ready (rc={self.proc.poll()})\n"
                            f"{self.log_text()}")
            time.sleep(0.05)

    @property
    def socket(self) -> Path:
        return Path(f"/tmp/pp-{self.token}.sock")

    def reload(self, cfg: dict[str, Any]) -> subprocess.CompletedProcess:
        """Rewrite the config and ``pyrouter reload`` it (run in R)."""
        path = self.tmp / "router.yaml"
        tmp = path.with_suffix(".tmp")
        tmp.write_text(yaml.safe_dump(cfg, sort_keys=False))
        os.replace(tmp, path)
        return subprocess.run(["ip", "netns", "exec", self.r, sys.executable, "-m", "pyrouter",
                               "--socket", str(self.socket), "reload"], check=False,
                              capture_output=True, text=True, timeout=30, cwd=str(REPO_ROOT))

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def spawn(self, cmd: list[str], out: Path) -> subprocess.Popen:
        """A background process (QEMU, ...), killed at teardown."""
        with open(out, "wb") as fh:
            p = subprocess.Popen(cmd, stdout=fh, stderr=subprocess.STDOUT,
                                 stdin=subprocess.DEVNULL, start_new_session=True)
        self.bg.append(p)
        return p

    def teardown(self) -> None:
        err = None
        for p in self.bg:
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGKILL)
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                pass
        if self.proc is not None:
            if self.proc.poll() is None:
                os.killpg(self.proc.pid, signal.SIGTERM)
                try:
                    rc = self.proc.wait(10)
                    if rc != 0:
                        err = f"router exited {rc} after SIGTERM"
                except subprocess.TimeoutExpired:
                    os.killpg(self.proc.pid, signal.SIGKILL)
                    self.proc.wait(5)
                    err = "router did not stop within 10 s"
            else:
                err = f"router died during the test (rc={self.proc.returncode})"
            _LIVE_ROUTERS.discard(self.proc)
            self.log.close()
        for ns in reversed(self.namespaces):
            _del_netns(ns)
        Path(f"/tmp/pp-{self.token}.sock").unlink(missing_ok=True)
        if err:
            pytest.fail(f"{err}\n{self.log_text()[-4000:]}", pytrace=False)


@pytest.fixture(name="lab")
def lab_fixture(tmp_path: Path):
    lab = Lab(tmp_path)
    try:
        yield lab
    finally:
        lab.teardown()


def tap_to(ns: str, addr: str, peer: str) -> dict[str, Any]:
    """Config of an ordinary TAP port whose kernel side moves to *ns*, configured there
    with *peer* and a default route back via *addr*."""
    return {"addresses": [addr], "netns": ns,
            "peer": {"addresses": [peer],
                     "routes": [{"to": "default", "via": addr.split("/")[0]}]}}


def kernel_port(lab: Lab, ns: str, name: str, addr: str, peer: str) -> None:
    """The kernel target's equivalent of tap_to: a veth from R to *ns*."""
    lab.veth(name, lab.r, ns)
    ip("-n", lab.r, "addr", "add", addr, "dev", name)
    lab.host(ns, name, peer, addr.split("/")[0])
