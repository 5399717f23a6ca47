"""``ript robot check`` and ``ript robot serve``, added through the
``ript_register_commands`` hook like any third-party plugin's commands.
Module-level imports stay light: ``ript --help`` builds this parser."""

from __future__ import annotations

import argparse
from typing import Any


def arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="robot_command", required=True, help="check or serve")
    check = sub.add_parser(
        "check", help="connect, read every camera and the state, show rates; move nothing"
    )
    check.add_argument("--reads", type=int, default=20, help="readings to time (default 20)")
    check.add_argument("--config", default=None, help="robot config (default $RIPT_ROBOT_CONFIG)")
    serve = sub.add_parser("serve", help="serve this machine's robot over the link protocol")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8765)
    serve.add_argument("--watchdog-s", type=float, default=0.5,
                       help="stop the robot when a moving client is silent this long")  # fmt: skip
    serve.add_argument("--config", default=None, help="robot config (default $RIPT_ROBOT_CONFIG)")


def run(ns: argparse.Namespace) -> int:
    from ript_real_robot.config import load_robot_config

    cfg = load_robot_config(ns.config)
    if ns.robot_command == "check":
        from ript_real_robot.check import check_robot

        print(check_robot(cfg, ns.reads))
        return 0
    return serve(cfg, ns.host, ns.port, ns.watchdog_s)


def serve(cfg: Any, host: str, port: int, watchdog_s: float) -> int:
    import signal
    import threading

    from ript_real_robot.server import RobotServer
    from ript_real_robot.stack import make_driver

    if cfg.driver.kind == "network":
        raise ValueError("ript robot serve: the robot config's driver is 'network'; on the robot's "
                         "machine use a config whose driver is the arm's own (twin, lerobot, python)")  # fmt: skip
    server = RobotServer(make_driver(cfg), host, port, watchdog_s)
    done = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: done.set())
    server.start()
    print(f"robot server: {server.info.name} on ws://{host}:{server.port} "
          f"(link protocol {server.protocol_version}, watchdog {watchdog_s} s)", flush=True)  # fmt: skip
    done.wait()
    server.close()
    return 0


def register(commands: Any) -> None:
    commands.add("robot", run, "real robot: check the robot, serve it over the network", arguments)
