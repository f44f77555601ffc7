"""Which interface keys go with which port kind: pure checks, each a ConfigError with its key path.

* ``kind: tap`` (default) takes neither ``qemu`` nor ``device``; ``master``
  (enslave the TAP to an existing bridge) excludes ``netns`` and ``peer``: the
  TAP's kernel side stays in pyrouter's namespace, as a bridge port;
* ``kind: qemu`` needs ``qemu``; ``mode: stream`` needs ``path`` and takes no
  ``local``/``remote``; ``mode: dgram`` needs ``local`` and ``remote`` of one
  family (both Unix paths or both UDP) and takes neither ``path`` nor ``server``;
* ``kind: packet`` needs ``device``;
* qemu and packet ports have no TAP, so no ``netns``, ``peer`` or ``master``;
* no two ports use the same socket path or the same kernel device.
Whether the bridge or the device exists is the shell's check (shell/port.py),
because it needs the running system.
"""

from __future__ import annotations

from .load import ConfigError
from .schema import Config


def check_kinds(cfg: Config, file: str = "<config>") -> None:
    paths: dict[str, str] = {}
    devices: dict[str, str] = {}
    for name, itf in cfg.interfaces.items():
        at = f"interfaces.{name}"
        if itf.kind != "qemu" and itf.qemu is not None:
            raise ConfigError(file, f"{at}.qemu", "only with kind: qemu")
        if itf.kind != "packet" and itf.device is not None:
            raise ConfigError(file, f"{at}.device", "only with kind: packet")
        if itf.kind != "tap":
            for key in ("netns", "peer", "master"):
                if getattr(itf, key) is not None:
                    raise ConfigError(file, f"{at}.{key}",
                                      f"a {itf.kind} port has no TAP device: no {key}")
        if itf.master is not None:
            for key in ("netns", "peer"):
                if getattr(itf, key) is not None:
                    raise ConfigError(file, f"{at}.{key}",
                                      "with master the TAP stays in pyrouter's namespace as a "
                                      f"bridge port: no {key}")
            if itf.master == name:
                raise ConfigError(file, f"{at}.master", "a port cannot be its own bridge")
        if itf.kind == "qemu":
            q = itf.qemu
            if q is None:
                raise ConfigError(file, f"{at}.qemu", "kind qemu needs qemu: {mode: ...}")
            if q.mode == "stream":
                if q.path is None:
                    raise ConfigError(file, f"{at}.qemu.path", "mode stream needs path")
                for key in ("local", "remote"):
                    if getattr(q, key) is not None:
                        raise ConfigError(file, f"{at}.qemu.{key}", "only with mode dgram")
                used = [q.path]
            else:
                for key in ("local", "remote"):
                    if getattr(q, key) is None:
                        raise ConfigError(file, f"{at}.qemu.{key}", f"mode dgram needs {key}")
                if q.path is not None:
                    raise ConfigError(file, f"{at}.qemu.path", "only with mode stream")
                if q.server:
                    raise ConfigError(file, f"{at}.qemu.server", "only with mode stream")
                assert q.local is not None and q.remote is not None
                if q.local.startswith("/") != q.remote.startswith("/"):
                    raise ConfigError(file, f"{at}.qemu.remote",
                                      "local and remote are both Unix paths or both HOST:PORT")
                if q.local == q.remote:
                    raise ConfigError(file, f"{at}.qemu.remote", "remote is the local address")
                used = [q.local]
            for p in used:
                if p in paths:
                    raise ConfigError(file, f"{at}.qemu", f"{p} is already used by {paths[p]}")
                paths[p] = name
        if itf.kind == "packet":
            if itf.device is None:
                raise ConfigError(file, f"{at}.device", "kind packet needs device: IFNAME")
            if itf.device in devices:
                raise ConfigError(file, f"{at}.device",
                                  f"{itf.device} is already used by {devices[itf.device]}")
            if itf.device in cfg.interfaces and cfg.interfaces[itf.device].kind == "tap":
                raise ConfigError(file, f"{at}.device",
                                  f"{itf.device} is a TAP this config creates")
            devices[itf.device] = name
