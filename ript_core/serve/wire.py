"""openpi's wire encoding: msgpack, with numpy arrays and scalars as tagged maps.

An array travels as ``{b"__ndarray__": True, b"data": bytes, b"dtype":
dtype.str, b"shape": shape}``, a numpy scalar as ``{b"__npgeneric__": True,
b"data": item, b"dtype": dtype.str}`` (``openpi_client.msgpack_numpy``).
Decoded arrays are read-only views of the message, as openpi's.
"""

from __future__ import annotations

from typing import Any

import msgpack
import numpy as np

# object (pickles), void (structs) and complex arrays do not cross the wire, as in openpi
_REFUSED_KINDS = ("V", "O", "c")


def _encode(obj: Any) -> Any:
    if isinstance(obj, np.ndarray | np.generic) and obj.dtype.kind in _REFUSED_KINDS:
        raise TypeError(
            f"cannot send a numpy value of dtype {obj.dtype} (openpi's wire refuses it)"
        )
    if isinstance(obj, np.ndarray):
        return {
            b"__ndarray__": True,
            b"data": obj.tobytes(),
            b"dtype": obj.dtype.str,
            b"shape": obj.shape,
        }
    if isinstance(obj, np.generic):
        return {b"__npgeneric__": True, b"data": obj.item(), b"dtype": obj.dtype.str}
    raise TypeError(f"cannot send a {type(obj).__name__} over openpi's wire")


def _decode(obj: dict) -> Any:
    if b"__ndarray__" in obj:
        return np.ndarray(buffer=obj[b"data"], dtype=np.dtype(obj[b"dtype"]), shape=obj[b"shape"])
    if b"__npgeneric__" in obj:
        return np.dtype(obj[b"dtype"]).type(obj[b"data"])
    return obj


def packb(obj: Any) -> bytes:
    """``obj`` (dicts, lists, str, numbers, numpy values) as one msgpack message."""
    return msgpack.packb(obj, default=_encode)


def unpackb(data: bytes) -> Any:
    """One msgpack message back into Python and numpy values."""
    return msgpack.unpackb(data, object_hook=_decode)
