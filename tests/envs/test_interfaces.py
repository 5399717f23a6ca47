import numpy as np
import pytest

from ript_core import (
    ComposedActionAdapter,
    ComposedObservationAdapter,
    clip_actions,
    slice_action_dims,
)


def test_composed_action_adapter_slices_then_clips():
    adapter = ComposedActionAdapter(
        [slice_action_dims(2), clip_actions(np.array([-1, 0]), np.array([1, 0.5]))]
    )
    out = adapter(np.array([[2.0, 0.7, 9.0], [-3.0, -1.0, 9.0]]))
    np.testing.assert_array_equal(out, np.array([[1.0, 0.5], [-1.0, 0.0]], np.float32))
    with pytest.raises(ValueError, match="policy gave 1 action dims, the env needs 2"):
        adapter(np.zeros((1, 1)))


def test_composed_observation_adapter_runs_transforms_in_order():
    def rename(d):
        return {"images": {"slot": d["img"]}, "state": d["s"], "prompt": d["text"]}

    def flip(d):
        return {**d, "images": {k: v[::-1, ::-1] for k, v in d["images"].items()}}

    img = np.arange(12, dtype=np.uint8).reshape(2, 2, 3)
    out = ComposedObservationAdapter([rename, flip])({"img": img, "s": [1, 2], "text": "go"})
    np.testing.assert_array_equal(out.images["slot"], img[::-1, ::-1])
    assert out.state.dtype == np.float32 and out.prompt == "go"
    with pytest.raises(KeyError, match="must output the keys"):
        ComposedObservationAdapter([lambda d: {"images": {}}])({})
