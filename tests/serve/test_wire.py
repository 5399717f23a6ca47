"""openpi's msgpack-numpy encoding (``openpi_client.msgpack_numpy``'s format)."""

from __future__ import annotations

import msgpack
import numpy as np
import pytest

from ript_core.serve.wire import packb, unpackb


def test_arrays_and_scalars_round_trip_with_dtype_shape_and_bytes():
    value = {
        "f64": np.arange(6, dtype=np.float64).reshape(2, 3) / 7,
        "u8": np.arange(24, dtype=np.uint8).reshape(2, 4, 3),
        "strided": np.arange(10, dtype=np.int32)[::3],  # not contiguous: sent in C order
        "big_endian": np.arange(3, dtype=">f4"),
        "scalar": np.float32(1.5),
        "nested": {"list": [1, "two", np.int64(3)]},
        "prompt": "pick up the bowl",
    }
    back = unpackb(packb(value))
    for key in ("f64", "u8", "strided", "big_endian"):
        assert back[key].dtype == value[key].dtype and back[key].shape == value[key].shape
        np.testing.assert_array_equal(back[key], value[key])
        assert not back[key].flags.writeable  # a view of the message, as openpi's
    assert type(back["scalar"]) is np.float32 and back["scalar"] == 1.5
    assert back["nested"]["list"][:2] == [1, "two"] and type(back["nested"]["list"][2]) is np.int64
    assert back["prompt"] == "pick up the bowl"


def test_the_frame_is_openpis_tagged_map():
    raw = msgpack.unpackb(packb({"a": np.array([1, 2], dtype="<i2"), "s": np.uint8(7)}))
    assert raw["a"] == {
        b"__ndarray__": True,
        b"data": b"\x01\x00\x02\x00",
        b"dtype": "<i2",
        b"shape": [2],
    }
    assert raw["s"] == {b"__npgeneric__": True, b"data": 7, b"dtype": "|u1"}


@pytest.mark.parametrize("value", [np.array([object()]), np.array([1j]), object()])
def test_values_openpi_refuses_are_refused(value):
    with pytest.raises(TypeError, match="cannot send"):
        packb({"x": value})
