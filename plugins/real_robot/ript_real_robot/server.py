"""Serve a robot (any :class:`RobotDriver`, the digital twin by default) over
the link protocol (:mod:`ript_real_robot.protocol`) to one client at a time.

The server's own watchdog stops the robot when a moving client goes silent
for ``watchdog_s`` and when its connection closes, whatever the client's
process is doing (hung, killed, unplugged). ``ript robot serve`` runs one.
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
from websockets.exceptions import ConnectionClosed
from websockets.sync.server import Server, ServerConnection, serve

from ript_real_robot.driver import RobotDriver
from ript_real_robot.protocol import PROTOCOL_VERSION, ProtocolError, error, pack, unpack

log = logging.getLogger(__name__)
HANDSHAKE_S = 5.0


class RobotServer:
    """``port=0`` picks a free port (read :attr:`port`)."""

    def __init__(
        self,
        driver: RobotDriver,
        host: str = "127.0.0.1",
        port: int = 0,
        watchdog_s: float = 0.5,
        protocol_version: int = PROTOCOL_VERSION,
    ) -> None:
        self.driver = driver
        # every driver call runs on this one thread, in order: drivers need not
        # be thread-safe, and a renderer's GL context stays on its thread
        self._robot = ThreadPoolExecutor(1, thread_name_prefix="robot")
        self.info = self._on_robot(driver.connect)
        self.watchdog_s = watchdog_s
        self.protocol_version = protocol_version
        self.last_seq: dict[str, int] = {}
        self.executed: deque[tuple[str, int]] = deque(maxlen=10_000)
        self.events: list[str] = []
        self._server: Server = serve(self._handle, host, port, compression=None, max_size=None)
        self.port: int = self._server.socket.getsockname()[1]
        self._thread: threading.Thread | None = None

    def start(self) -> RobotServer:
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        return self

    def serve_forever(self) -> None:
        self._server.serve_forever()

    def close(self) -> None:
        self._server.shutdown()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._stop("server closing")
        self._on_robot(self.driver.close)
        self._robot.shutdown()

    def _on_robot(self, fn: Any, *args: Any) -> Any:
        return self._robot.submit(fn, *args).result()

    def _stop(self, why: str) -> None:
        self._on_robot(self.driver.stop)
        self.events.append(why)
        log.warning("robot stopped: %s", why)

    # -- one connection -----------------------------------------------------------
    def _handle(self, ws: ServerConnection) -> None:
        try:
            hello = unpack(ws.recv(timeout=HANDSHAKE_S))
        except (TimeoutError, ConnectionClosed, ProtocolError) as exc:
            log.warning("client %s: no valid hello (%s)", ws.remote_address, exc)
            return
        if hello.get("op") != "hello" or hello.get("protocol") != self.protocol_version:
            ws.send(pack(error("protocol", (
                f"this robot server speaks link protocol {self.protocol_version}, the client "
                f"sent {hello.get('op')!r} protocol {hello.get('protocol')!r}; install the same "
                "ript-core version on both machines"))))  # fmt: skip
            ws.close()
            return
        client = str(hello.get("client", ""))
        ws.send(pack({"op": "welcome", "protocol": self.protocol_version,
                      "info": self.info.as_dict(), "last_seq": self.last_seq.get(client, 0)}))  # fmt: skip
        moving = False
        try:
            while True:
                try:
                    frame = ws.recv(timeout=self.watchdog_s if moving else None)
                except TimeoutError:
                    self._stop(f"watchdog: client silent for {self.watchdog_s} s while moving")
                    moving = False
                    continue
                request = unpack(frame)
                reply, moving = self._dispatch(client, request, moving)
                ws.send(pack(reply))
        except ConnectionClosed:
            pass
        except ProtocolError as exc:
            ws.send(pack(error("protocol", str(exc))))
        finally:
            if moving:
                self._stop("the client's connection closed while moving")

    def _dispatch(self, client: str, msg: dict[str, Any], moving: bool) -> tuple[dict, bool]:
        try:
            return self._on_robot(self._execute, client, msg, moving)
        except Exception as exc:  # the robot raised: tell the client, keep serving
            log.exception("robot request %r failed", msg["op"])
            return error("robot", f"{type(exc).__name__}: {exc}"), moving

    def _execute(self, client: str, msg: dict[str, Any], moving: bool) -> tuple[dict, bool]:
        op = msg["op"]
        if op == "read":
            r = self.driver.read()
            return {"op": "reading", "images": r.images, "state": r.state,
                    "success": r.success}, moving  # fmt: skip
        if op == "act":
            seq = int(msg["seq"])
            if seq <= self.last_seq.get(client, 0):  # a replayed frame: never twice
                return {"op": "ack", "seq": seq, "executed": False}, moving
            self.driver.send(np.asarray(msg["action"], dtype=np.float64))
            self.last_seq[client] = seq
            self.executed.append((client, seq))
            return {"op": "ack", "seq": seq, "executed": True}, True
        if op == "stop":
            self.driver.stop()
            return {"op": "stopped"}, False
        if op == "scene":
            ready = self.driver.prepare_scene(str(msg["scene"]), int(msg["seed"]))
            return {"op": "scene_ready", "ready": ready}, False
        if op == "status":
            return {"op": "status", **self.driver.status(),
                    "last_seq": self.last_seq.get(client, 0),
                    "executed": len(self.executed), "events": self.events[-20:],
                    "seqs": [q for c, q in self.executed if c == client]}, moving  # fmt: skip
        return error("request", f"unknown op {op!r}"), moving
