"""The container image (docker/Dockerfile), built and run with only NET_ADMIN and the TUN device.

The test starts its own dockerd (Debian's docker.io; overlay2, vfs if that cannot
work; no iptables, no default bridge, and no ip_forward change on the host), makes the base image locally (scripts/docker-base.sh:
debootstrap + docker import, the root file system cached under /var/cache/pyrouter),
serves the Python dependencies from a local wheel directory (so the build needs no
registry), builds the image, and then:

* runs it with ``--network none --cap-add NET_ADMIN --device /dev/net/tun``: the
  router makes its TAPs in the container's namespace, and the test (root on the
  host) moves their kernel sides into two host namespaces, which needs no
  capability inside the container;
* h1 gets its address from the router's DHCP server (busybox udhcpc), h2 is
  static; h1 pings h2 and sends it 1 MiB over TCP through the router;
* a third port joins a Docker bridge network (the TAP's kernel side moved to the
  host and enslaved to the network's bridge, as ``master:`` or the operator would
  do), and a container on that network pings h2 through the router;
* the healthcheck turns healthy; the router runs as uid 10001 with CAP_NET_ADMIN
  as its only capability; ``docker kill -s HUP`` reloads an edited config;
  ``docker stop`` ends it with exit code 0 well within the grace period; every log
  line is JSON.

Skipped unless root with dockerd, debootstrap and busybox installed
(scripts/setup.sh installs them), or when PYROUTER_DOCKER_TESTS=0.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import http.server
import json
import os
import secrets
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parent.parent.parent
BUSYBOX = shutil.which("busybox")
WHEEL_PORT = 39431


def _skip_reason() -> str | None:
    if os.environ.get("PYROUTER_DOCKER_TESTS", "1") == "0":
        return "PYROUTER_DOCKER_TESTS=0"
    if os.environ.get("PYROUTER_TARGET", "pyrouter") == "kernel":
        return "the image test is pyrouter's only"
    if os.geteuid() != 0:
        return "needs root"
    for tool in ("dockerd", "docker", "debootstrap", "busybox", "socat", "ip"):
        if shutil.which(tool) is None:
            return f"needs {tool} (scripts/setup.sh installs it)"
    if not os.path.exists("/dev/net/tun"):
        return "needs /dev/net/tun"
    return None


pytestmark = [pytest.mark.skipif(_skip_reason() is not None, reason=str(_skip_reason())),
              pytest.mark.timeout(900)]


def sh(*cmd: object, env: dict[str, str] | None = None, timeout: float = 120,
       check: bool = True, input: str | None = None) -> subprocess.CompletedProcess:
    cp = subprocess.run([str(c) for c in cmd], capture_output=True, text=True, env=env,
                        timeout=timeout, input=input)
    if check and cp.returncode != 0:
        raise AssertionError(f"{' '.join(map(str, cmd))} -> {cp.returncode}\n"
                             f"stdout:\n{cp.stdout[-4000:]}\nstderr:\n{cp.stderr[-4000:]}")
    return cp


def wait_for(pred, timeout: float, what: str, interval: float = 0.2):  # noqa: ANN001
    deadline = time.monotonic() + timeout
    while True:
        v = pred()
        if v:
            return v
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


class Docker:
    """A private dockerd: its own socket, exec root and (cached if possible) data root."""

    def __init__(self, base: Path) -> None:
        self.base = base
        self.sock = base / "docker.sock"
        self.env = {**os.environ, "DOCKER_HOST": f"unix://{self.sock}"}
        self.proc: subprocess.Popen | None = None
        self.log = base / "dockerd.log"

    def start(self) -> None:
        # Image layers are kept between runs in a cache data root, unless another
        # daemon holds it; then a throw-away one in the test's directory.
        cached = Path(os.environ.get("PYROUTER_CACHE", "/var/cache/pyrouter")) / "docker"
        errors = []
        for root in (cached, self.base / "data"):
            for driver in ("overlay2", "vfs"):
                if self._try(root, driver):
                    self.driver, self.root = driver, root
                    return
                errors.append(f"{root} {driver}: {self.log.read_text()[-1500:]}")
        pytest.fail("dockerd would not start:\n" + "\n".join(errors))

    def _try(self, root: Path, driver: str) -> bool:
        root.mkdir(parents=True, exist_ok=True)
        with open(self.log, "w") as log:
            self.proc = subprocess.Popen(
                ["dockerd", "--data-root", root, "--exec-root", self.base / "exec",
                 "--pidfile", self.base / "dockerd.pid", "--host", f"unix://{self.sock}",
                 "--storage-driver", driver, "--iptables=false", "--ip6tables=false",
                 # dockerd would otherwise set net.ipv4.ip_forward=1 on the host, and new
                 # namespaces inherit it: every test host would become a router.
                 "--ip-forward=false", "--bridge=none"], stdout=log, stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                break
            if sh("docker", "info", env=self.env, check=False, timeout=10).returncode == 0:
                return True
            time.sleep(0.3)
        self.stop()
        return False

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self.proc = None

    def __call__(self, *args: object, timeout: float = 120, check: bool = True,
                 input: str | None = None) -> subprocess.CompletedProcess:
        return sh("docker", *args, env=self.env, timeout=timeout, check=check, input=input)


@contextlib.contextmanager
def wheel_server(directory: Path) -> Iterator[str]:
    """The project's dependencies as a find-links directory over HTTP on 127.0.0.1."""
    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

    handler = functools.partial(Quiet, directory=str(directory))
    # A fixed port when free: the URL is a build argument, and a different one each
    # run would defeat the layer cache.
    try:
        srv = http.server.ThreadingHTTPServer(("127.0.0.1", WHEEL_PORT), handler)
    except OSError:
        srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    try:
        yield f"http://127.0.0.1:{srv.server_address[1]}/"
    finally:
        srv.shutdown()
        srv.server_close()


@pytest.fixture(scope="module")
def image(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Docker, str, dict]]:
    timings: dict[str, float] = {}
    base = Path(f"/tmp/pyrouter-docker-{secrets.token_hex(3)}")   # short: the socket path
    base.mkdir()
    docker = Docker(base)
    t0 = time.monotonic()
    docker.start()
    timings["dockerd"] = time.monotonic() - t0
    try:
        t = time.monotonic()
        sh("bash", REPO / "scripts" / "docker-base.sh", env=docker.env, timeout=900)
        timings["base"] = time.monotonic() - t
        t = time.monotonic()
        wheels = tmp_path_factory.mktemp("wheels")
        import tomllib

        deps = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]
        sh(sys.executable, "-m", "pip", "download", "-q", "--disable-pip-version-check",
           "-d", wheels, *deps, "setuptools>=68", "wheel", timeout=600)
        timings["wheels"] = time.monotonic() - t
        t = time.monotonic()
        tag = "pyrouter:test"          # kept in the cached data root: the next build is quick
        with wheel_server(wheels) as url:
            docker("build", "--network", "host", "-q", "--build-arg", "PIP_NO_INDEX=1",
                   "--build-arg", f"PIP_FIND_LINKS={url}", "-f", REPO / "docker" / "Dockerfile",
                   "-t", tag, REPO, timeout=1200)
        timings["build"] = time.monotonic() - t
        yield docker, tag, timings
    finally:
        docker.stop()
        # dockerd leaves its netns bind mount (exec/netns/default) behind.
        with open("/proc/self/mountinfo") as f:
            mounts = [line.split()[4] for line in f if line.split()[4].startswith(str(base))]
        for m in sorted(mounts, reverse=True):
            sh("umount", "-l", m, check=False)
        shutil.rmtree(base, ignore_errors=True)
        print(f"\ndocker test timings (s): " + ", ".join(f"{k} {v:.1f}" for k, v in
                                                        timings.items()), file=sys.stderr)


def test_image_contents(image: tuple[Docker, str, dict]) -> None:
    docker, tag, _ = image
    out = docker("run", "--rm", "--network", "none", "--entrypoint", "sh", tag, "-c",
                 "id -u; command -v gcc cc || echo no-compiler; "
                 "pyrouter check -c /etc/pyrouter/pyrouter.yaml; "
                 "python3 -c \"import os; print(os.getxattr('/opt/pyrouter/bin/python-netadmin',"
                 " 'security.capability').hex())\"").stdout.split()
    assert out[0] == "10001"                                  # not root
    assert out[1] == "no-compiler"                            # the final stage has none
    assert "valid" in out
    assert out[-1] == "0100000200100000" + "0" * 24           # cap_net_admin+ep only
    # Without NET_ADMIN in the bounding set the capability-carrying interpreter
    # refuses to start: a clear failure rather than a router without its ports.
    bare = docker("run", "--rm", "--network", "none", tag, "check", "-c",
                  "/etc/pyrouter/pyrouter.yaml", check=False)
    assert bare.returncode != 0
    assert "operation not permitted" in (bare.stdout + bare.stderr).lower()
    cfg = json.loads(docker("image", "inspect", tag).stdout)[0]["Config"]
    assert cfg["User"] == "pyrouter"
    assert cfg["Healthcheck"]["Test"][1:] == ["/opt/pyrouter/bin/pyrouter", "version"]
    assert cfg["Cmd"][:3] == ["run", "-c", "/etc/pyrouter/pyrouter.yaml"]


def busybox_image(docker: Docker, tmp: Path) -> str:
    """A client image of busybox-static alone (docker import of one binary)."""
    tag = "pyrouter-test-busybox:latest"
    if docker("image", "inspect", tag, check=False).returncode == 0:
        return tag
    root = tmp / "bbroot"
    (root / "bin").mkdir(parents=True)
    shutil.copy(BUSYBOX, root / "bin" / "busybox")
    for applet in ("sh", "ip", "ping", "sleep", "udhcpc", "nslookup"):
        (root / "bin" / applet).symlink_to("busybox")
    tar = subprocess.run(["tar", "-C", root, "-c", "."], capture_output=True, check=True).stdout
    subprocess.run(["docker", "import", "-", tag], input=tar, env=docker.env, check=True,
                   capture_output=True, timeout=60)
    return tag


UDHCPC_SCRIPT = """#!/bin/sh
echo "$1 ip=$ip router=$router dns=$dns" >> {log}
case "$1" in
  bound|renew) ip addr replace "$ip/$subnet" dev "$interface"
               ip route replace default via "$router" dev "$interface" ;;
esac
exit 0
"""


def test_container_routes_serves_dhcp_reloads_and_stops(image: tuple[Docker, str, dict],
                                                         tmp_path: Path) -> None:
    docker, tag, timings = image
    tok = secrets.token_hex(3)
    a, b, c = f"d{tok}a", f"d{tok}b", f"d{tok}c"
    bridge, lan = f"br{tok}", f"lan{tok}"
    cns, h1, h2 = f"pr-{tok}-ctr", f"pr-{tok}-h1", f"pr-{tok}-h2"
    name = f"pyrouter-test-{tok}"
    cfgdir = tmp_path / "etc"
    cfgdir.mkdir()
    cfg = {"interfaces": {
        a: {"addresses": ["10.0.1.1/24"],
            "dhcp": {"pool": ["10.0.1.100", "10.0.1.120"], "dns": ["10.0.1.53"]}},
        b: {"addresses": ["10.0.2.1/24"]},
        c: {"addresses": ["10.0.3.1/24"]}},
        "dhcp": {"lease_file": "/var/lib/pyrouter/dhcp4.leases"}}
    (cfgdir / "pyrouter.yaml").write_text(yaml.safe_dump(cfg))
    os.chmod(cfgdir, 0o755)
    made_ns: list[str] = []
    networks: list[str] = []
    t_start = time.monotonic()
    try:
        docker("run", "-d", "--name", name, "--network", "none", "--cap-add", "NET_ADMIN",
               "--device", "/dev/net/tun", "--health-interval", "1s",
               "-v", f"{cfgdir}:/etc/pyrouter:ro", tag)

        def health() -> str:
            st = json.loads(docker("inspect", name).stdout)[0]["State"]
            assert st["Running"], f"container stopped: {st}\n{docker('logs', name).stdout}"
            return st["Health"]["Status"]

        wait_for(lambda: health() == "healthy", 30, "the healthcheck to pass")
        status = docker("exec", name, "sh", "-c", "id -u; grep CapEff /proc/1/status").stdout
        assert status.split()[0] == "10001"
        assert status.split()[-1] == "0000000000001000"     # CAP_NET_ADMIN, nothing else
        pid = json.loads(docker("inspect", name).stdout)[0]["State"]["Pid"]
        sh("ip", "netns", "attach", cns, pid)
        made_ns.append(cns)
        for ns in (h1, h2):
            sh("ip", "netns", "add", ns)
            made_ns.append(ns)
        # The kernel sides of the router's TAPs move from the container to the hosts.
        sh("ip", "-n", cns, "link", "set", a, "netns", h1)
        sh("ip", "-n", cns, "link", "set", b, "netns", h2)
        sh("ip", "-n", h1, "link", "set", a, "up")
        sh("ip", "-n", h2, "link", "set", b, "up")
        sh("ip", "-n", h2, "addr", "add", "10.0.2.2/24", "dev", b)
        sh("ip", "-n", h2, "route", "add", "default", "via", "10.0.2.1")
        # h1 asks the router for its address.
        log = tmp_path / "udhcpc.events"
        script = tmp_path / "udhcpc.sh"
        script.write_text(UDHCPC_SCRIPT.format(log=log))
        script.chmod(0o755)
        sh("ip", "netns", "exec", h1, BUSYBOX, "udhcpc", "-f", "-q", "-n", "-i", a, "-s", script,
           "-t", "10", "-T", "1", timeout=60)
        ev = log.read_text().split("\n")
        bound = dict(kv.split("=", 1) for kv in
                     next(line for line in ev if line.startswith("bound")).split()[1:])
        assert 100 <= int(bound["ip"].split(".")[3]) <= 120 and bound["ip"].startswith("10.0.1.")
        assert bound["router"] == "10.0.1.1" and bound["dns"] == "10.0.1.53"
        cp = sh("ip", "netns", "exec", h1, "ping", "-c", "3", "-W", "2", "10.0.2.2", check=False,
                timeout=20)
        assert cp.returncode == 0 and " 0% packet loss" in cp.stdout, cp.stdout + cp.stderr
        assert "ttl=63" in cp.stdout                           # one router hop
        # 1 MiB over TCP through the router.
        blob = tmp_path / "blob"
        blob.write_bytes(os.urandom(1 << 20))
        got = tmp_path / "got"
        listener = subprocess.Popen(["ip", "netns", "exec", h2, "socat", "-u",
                                     "TCP-LISTEN:5001,reuseaddr", f"CREATE:{got}"])
        try:
            wait_for(lambda: "5001" in sh("ip", "netns", "exec", h2, "ss", "-ltn").stdout, 10,
                     "the listener")
            sh("ip", "netns", "exec", h1, "socat", "-u", f"OPEN:{blob}", "TCP:10.0.2.2:5001",
               timeout=60)
            listener.wait(30)
        finally:
            if listener.poll() is None:
                listener.kill()
                listener.wait(5)
        assert hashlib.sha256(got.read_bytes()).digest() == \
            hashlib.sha256(blob.read_bytes()).digest()
        # A container behind the router on a Docker bridge network.
        docker("network", "create", "-d", "bridge", "-o",
               f"com.docker.network.bridge.name={bridge}", "--subnet", "10.0.3.0/24",
               "--gateway", "10.0.3.254", "--ip-range", "10.0.3.64/27", lan)
        networks.append(lan)
        sh("ip", "-n", cns, "link", "set", c, "netns", os.getpid())
        sh("ip", "link", "set", c, "master", bridge, "up")
        client = docker("run", "--rm", "--network", lan, "--cap-add", "NET_ADMIN",
                        busybox_image(docker, tmp_path), "sh", "-c",
                        "ip route replace default via 10.0.3.1 && ping -c 2 -W 2 10.0.2.2",
                        check=False, timeout=60)
        assert client.returncode == 0 and "ttl=63" in client.stdout, client.stdout + client.stderr
        leases = json.loads(docker("exec", name, "pyrouter", "show", "dhcp", "--json").stdout)
        assert leases[0]["leases"][0]["state"] == "bound"
        # Reload: edit the mounted config, SIGHUP through docker.
        cfg["routes"] = [{"to": "192.0.2.0/24", "type": "blackhole"}]
        (cfgdir / "pyrouter.yaml").write_text(yaml.safe_dump(cfg))
        docker("kill", "-s", "HUP", name)
        wait_for(lambda: "reload.applied" in docker("logs", name).stdout, 15, "the reload")
        assert "blackhole 192.0.2.0/24" in docker("exec", name, "pyrouter", "show", "route").stdout
        # Stop: SIGTERM, exit 0, well inside the 10 s grace period.
        t = time.monotonic()
        docker("stop", "-t", "10", name, timeout=60)
        took = time.monotonic() - t
        state = json.loads(docker("inspect", name).stdout)[0]["State"]
        assert state["ExitCode"] == 0 and took < 8, (state, took)
        logs = docker("logs", name)
        lines = [ln for ln in (logs.stdout + logs.stderr).splitlines() if ln.strip()]
        events = [json.loads(ln) for ln in lines]              # every line is JSON
        names = [e["event"] for e in events]
        assert names[-2:] == ["shutdown", "exit"] and events[-1]["code"] == 0
        assert "ready" in names and "dhcp.lease" in names
        timings["run"] = time.monotonic() - t_start
    finally:
        docker("rm", "-f", name, check=False)
        for net in networks:
            docker("network", "rm", net, check=False)
        sh("ip", "link", "del", c, check=False)
        docker("volume", "prune", "-f", check=False)
        for ns in reversed(made_ns):
            sh("ip", "netns", "del", ns, check=False)
