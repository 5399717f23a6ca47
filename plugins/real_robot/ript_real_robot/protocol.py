"""The robot link protocol, version :data:`PROTOCOL_VERSION` (documented in
``docs/backends/real_robot.md``).

Transport: one websocket (no compression), one binary msgpack frame each way
per request. Numpy arrays travel as ``{"__ndarray__": True, "data": bytes,
"dtype": dtype.str, "shape": [...]}`` (openpi's convention). Every message is
a dict with an ``"op"``.

1. The client's first frame is ``{"op": "hello", "protocol": N, "client":
   id}``; the server answers ``{"op": "welcome", "protocol": N, "info":
   RobotInfo, "last_seq": s}``, or, for another version, ``{"op": "error",
   "error": "protocol", ...}`` and closes. Nothing moves before a welcome.
2. Requests -> replies: ``read`` -> ``reading`` (images, state, success);
   ``act`` with ``seq`` and ``action`` -> ``ack`` (``seq``, ``executed``);
   ``stop`` -> ``stopped``; ``scene`` (``scene``, ``seed``) -> ``scene_ready``
   (``ready``: whether the robot set it up alone); ``status`` -> ``status``.
3. No replay: ``seq`` increases by one per action of a client (by ``client``
   id, across reconnections); the server executes an ``act`` only if its seq
   is above the last one it executed for that client, else it acks with
   ``executed: false``. The client never resends an action.
4. Watchdog: while the robot is moving, a client silent for the server's
   deadline gets the robot stopped; a closed connection stops it at once.
5. An error is ``{"op": "error", "error": kind, "message": text}``.
"""

from __future__ import annotations

from typing import Any

import msgpack
import numpy as np

PROTOCOL_VERSION = 1


class ProtocolError(RuntimeError):
    """The other side speaks another protocol version, or answered out of turn."""


def _encode(obj: Any) -> Any:
    if isinstance(obj, np.ndarray):
        arr = np.ascontiguousarray(obj)
        return {"__ndarray__": True, "data": arr.tobytes(), "dtype": arr.dtype.str,
                "shape": list(arr.shape)}  # fmt: skip
    if isinstance(obj, np.generic):
        return obj.item()
    raise TypeError(f"cannot encode {type(obj).__name__} in a robot message")


def _decode(obj: dict[str, Any]) -> Any:
    if obj.get("__ndarray__"):
        return np.frombuffer(obj["data"], dtype=np.dtype(obj["dtype"])).reshape(obj["shape"])
    return obj


def pack(message: dict[str, Any]) -> bytes:
    return msgpack.packb(message, default=_encode, use_bin_type=True)


def unpack(frame: bytes | str) -> dict[str, Any]:
    if isinstance(frame, str):
        raise ProtocolError(f"expected a binary msgpack frame, got text: {frame[:200]!r}")
    message = msgpack.unpackb(frame, object_hook=_decode, raw=False)
    if not isinstance(message, dict) or "op" not in message:
        raise ProtocolError(f"not a protocol message: {message!r}"[:300])
    return message


def error(kind: str, message: str) -> dict[str, Any]:
    return {"op": "error", "error": kind, "message": message}
