"""Command line: ``pyrouter run -c FILE`` and ``pyrouter check -c FILE``."""

from __future__ import annotations

import argparse
import sys


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="pyrouter", description="A userspace IPv4 router.")
    sub = ap.add_subparsers(dest="cmd", required=True)
    run = sub.add_parser("run", help="run the router in the foreground until SIGTERM/SIGINT")
    run.add_argument("-c", "--config", required=True)
    run.add_argument("--log-format", choices=("console", "json"), default="console")
    run.add_argument("--ready-file", help="written once every port is up; removed at exit")
    run.add_argument("--stats-file", help="counters JSON, written on SIGUSR1 and at exit")
    chk = sub.add_parser("check", help="validate a config file (exit 0 valid, 2 invalid)")
    chk.add_argument("-c", "--config", required=True)
    args = ap.parse_args(argv)
    if args.cmd == "check":
        from .control.build import check
        from .control.load import ConfigError, load

        try:
            check(load(args.config), args.config)
        except ConfigError as e:
            print(f"invalid: {e}", file=sys.stderr)
            return 2
        print(f"{args.config}: valid")
        return 0
    from .shell.app import run as run_app

    return run_app(args.config, args.log_format, args.ready_file, args.stats_file)


if __name__ == "__main__":
    sys.exit(main())
