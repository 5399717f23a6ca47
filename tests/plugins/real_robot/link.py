"""Test plumbing for the network link: a robot server in another process
(``ript robot serve``) and a TCP relay the tests can cut like a cable."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import threading
from pathlib import Path


@contextlib.contextmanager
def served_robot(config: Path | None = None, watchdog_s: float = 0.3):
    """``ript robot serve`` in a subprocess; yields its ws:// URL."""
    cmd = [sys.executable, "-m", "ript_core", "robot", "serve", "--port", "0",
           "--watchdog-s", str(watchdog_s)]  # fmt: skip
    if config is not None:
        cmd += ["--config", str(config)]
    env = dict(os.environ, NO_PROXY="127.0.0.1,localhost", no_proxy="127.0.0.1,localhost")
    env.pop("RIPT_ROBOT_CONFIG", None)
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        line = proc.stdout.readline()  # "robot server: ... on ws://host:port (...)"
        if "ws://" not in line:
            proc.kill()
            raise RuntimeError(f"the robot server did not start: {line}{proc.stderr.read()}")
        yield line.split(" on ")[1].split()[0]
    finally:
        proc.terminate()
        proc.wait(timeout=20)


class Relay:
    """Forwards 127.0.0.1:<port> to ``target``; :meth:`cut` drops every
    connection at once (the cable pulled), later connections pass again."""

    def __init__(self, target_port: int) -> None:
        self.target = ("127.0.0.1", target_port)
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.open: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            upstream = socket.create_connection(self.target)
            self.open += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def _pipe(src: socket.socket, dst: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while data := src.recv(65536):
                dst.sendall(data)
        for s in (src, dst):
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)

    def cut(self) -> None:
        for s in self.open:
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)
            s.close()
        self.open.clear()

    def close(self) -> None:
        self.cut()
        self.listener.close()
