"""The network driver: a robot served by another process or machine
(``ript robot serve``), over the link protocol (:mod:`ript_real_robot.protocol`).

Every request waits at most ``timeout_s`` for its answer; a timeout or a
closed connection raises :class:`RobotLinkError` (the server stops the robot
on its side: its watchdog, or the closed connection). The driver reconnects
only where no motion is in flight: when a scene is prepared or the robot
read, never to resend an action, and every action carries a sequence number
the server executes at most once.
"""

from __future__ import annotations

import contextlib
import threading
import time
import uuid
from typing import Any

import numpy as np
from websockets.exceptions import ConnectionClosed, InvalidHandshake
from websockets.sync.client import ClientConnection, connect

from ript_real_robot.driver import RobotDriver, RobotInfo, RobotLinkError, RobotReading
from ript_real_robot.protocol import PROTOCOL_VERSION, ProtocolError, pack, unpack


class NetworkDriver(RobotDriver):
    def __init__(
        self,
        url: str,
        timeout_s: float = 2.0,
        reconnect_tries: int = 3,
        protocol_version: int = PROTOCOL_VERSION,
    ) -> None:
        self.url = url
        self.timeout_s = timeout_s
        self.reconnect_tries = reconnect_tries
        self.protocol_version = protocol_version
        self.client_id = uuid.uuid4().hex
        self.seq = 0
        self.reconnects = 0
        self._ws: ClientConnection | None = None
        self._lock = threading.Lock()

    @property
    def connected(self) -> bool:
        return self._ws is not None

    def connect(self) -> RobotInfo:
        try:
            # proxy=None: a robot link never goes through $HTTP_PROXY
            # entered as a context (websockets >= 17.1 warns otherwise); closed by _drop
            ws = connect(self.url, proxy=None, compression=None, max_size=None,
                         open_timeout=self.timeout_s).__enter__()  # fmt: skip
        except (OSError, TimeoutError, InvalidHandshake) as exc:
            raise RobotLinkError(f"cannot reach the robot server at {self.url}: {exc}") from exc
        try:
            ws.send(pack({"op": "hello", "protocol": self.protocol_version,
                          "client": self.client_id}))  # fmt: skip
            welcome = unpack(ws.recv(timeout=self.timeout_s))
        except (TimeoutError, ConnectionClosed) as exc:
            ws.close()
            raise RobotLinkError(f"robot server {self.url}: no welcome ({exc})") from exc
        if welcome.get("op") != "welcome" or welcome.get("protocol") != self.protocol_version:
            ws.close()
            raise ProtocolError(
                f"robot server {self.url}: {welcome.get('message') or welcome} (this client "
                f"speaks link protocol {self.protocol_version}); nothing was moved"
            )
        self._ws = ws
        self.seq = max(self.seq, int(welcome["last_seq"]))
        self.info = RobotInfo.from_dict(welcome["info"])
        return self.info

    def _ensure(self) -> None:
        """Reconnect a dropped link (only called where no motion is in flight)."""
        if self._ws is not None:
            return
        for attempt in range(self.reconnect_tries):
            try:
                self.connect()
                self.reconnects += 1
                return
            except RobotLinkError:
                if attempt == self.reconnect_tries - 1:
                    raise
                time.sleep(0.2 * 2**attempt)

    def _drop(self) -> None:
        ws, self._ws = self._ws, None
        if ws is not None:
            ws.close()

    def _call(self, request: dict[str, Any], expect: str) -> dict[str, Any]:
        with self._lock:
            if self._ws is None:
                raise RobotLinkError(f"robot server {self.url}: not connected")
            try:
                self._ws.send(pack(request))
                reply = unpack(self._ws.recv(timeout=self.timeout_s))
            except (TimeoutError, ConnectionClosed, OSError) as exc:
                self._drop()
                raise RobotLinkError(
                    f"robot link to {self.url} lost during {request['op']!r}: "
                    f"{type(exc).__name__} {exc}"
                ) from exc
        if reply["op"] == "error":
            raise RuntimeError(f"robot server {self.url}: {reply['error']}: {reply['message']}")
        if reply["op"] != expect:
            raise ProtocolError(f"robot server {self.url}: expected {expect!r}, got {reply}")
        return reply

    def read(self) -> RobotReading:
        self._ensure()
        r = self._call({"op": "read"}, "reading")
        return RobotReading(dict(r["images"]), np.asarray(r["state"]), r["success"])

    def send(self, action: np.ndarray) -> None:
        self.seq += 1  # before sending: a lost frame's seq is never reused
        ack = self._call({"op": "act", "seq": self.seq,
                          "action": np.asarray(action, dtype=np.float64)}, "ack")  # fmt: skip
        if ack["seq"] != self.seq:
            raise ProtocolError(f"ack for action {ack['seq']}, sent {self.seq}")

    def stop(self) -> None:
        # from another thread or a signal handler, the link may be busy: then
        # closing it is the stop (the server stops the robot when it closes)
        if not self._lock.acquire(timeout=0.05):
            ws = self._ws
            if ws is not None:
                ws.close()
            return
        self._lock.release()
        if self._ws is None:
            return
        # a lost link needs no stop: the server stops a robot whose client's connection closed
        with contextlib.suppress(RobotLinkError):
            self._call({"op": "stop"}, "stopped")

    def prepare_scene(self, scene: str, seed: int) -> bool:
        self._ensure()
        return bool(
            self._call({"op": "scene", "scene": scene, "seed": seed}, "scene_ready")["ready"]
        )

    def status(self) -> dict[str, Any]:
        self._ensure()
        s = self._call({"op": "status"}, "status")
        s.pop("op")
        return {**s, "link": self.url, "reconnects": self.reconnects}

    def close(self) -> None:
        self._drop()
