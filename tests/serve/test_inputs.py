"""Observation dicts -> PolicyInput, and errors that name the key."""

from __future__ import annotations

import numpy as np
import pytest

from ript_core.serve.inputs import ObservationError, input_spec

CAMERAS = ["base_0_rgb", "left_wrist_0_rgb"]


def libero_obs(**changes):
    rng = np.random.default_rng(0)
    obs = {
        "observation/image": rng.integers(0, 256, (32, 40, 3), dtype=np.uint8),
        "observation/wrist_image": rng.integers(0, 256, (24, 24, 3), dtype=np.uint8),
        "observation/state": rng.normal(size=8),
        "prompt": "open the drawer",
    }
    obs.update(changes)
    return obs


def test_libero_keys_feed_the_first_two_camera_slots():
    spec = input_spec("libero", CAMERAS, [], 8)
    obs = libero_obs(noise_seed=np.int64(9))
    inp, seed = spec.policy_input(obs)
    assert seed == 9
    assert inp.images.keys() == {"base_0_rgb", "left_wrist_0_rgb"}
    np.testing.assert_array_equal(inp.images["base_0_rgb"], obs["observation/image"])
    np.testing.assert_array_equal(inp.images["left_wrist_0_rgb"], obs["observation/wrist_image"])
    # the env side's rule: float64 stays float64 (openpi's client sends it), else float32
    assert inp.state.dtype == np.float64 and inp.prompt == "open the drawer"
    inp, seed = spec.policy_input(libero_obs(**{"observation/state": [1, 2, 3, 4, 5, 6, 7, 8]}))
    assert seed is None and inp.state.dtype == np.float32


def test_chw_and_float_images_are_converted_as_openpi_does():
    spec = input_spec("libero", CAMERAS, [], 8)
    hwc = libero_obs()["observation/image"]
    as_float = hwc.astype(np.float32) / 255
    inp, _ = spec.policy_input(libero_obs(**{"observation/image": as_float.transpose(2, 0, 1)}))
    # openpi's _parse_image: (255 * x).astype(uint8) truncates
    np.testing.assert_array_equal(inp.images["base_0_rgb"], (255 * as_float).astype(np.uint8))


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"observation/state": None}, "'observation/state' is missing"),
        ({"observation/wrist_image": None}, "'observation/wrist_image' is missing"),
        ({"prompt": None}, "'prompt' is missing"),
        ({"prompt": b"bytes"}, "'prompt' must be a string, got bytes"),
        ({"observation/state": np.zeros((2, 4))}, "'observation/state' must be 8 numbers"),
        ({"observation/state": "1 2 3"}, "(this policy's state dims), got a str"),
        ({"observation/image": np.zeros((8, 8, 3), np.int16)}, "'observation/image' must be an"),
        ({"observation/image": np.zeros((8, 8, 4), np.uint8)}, "shape (8, 8, 4)"),
        ({"observation/image": "pixels"}, "'observation/image' must be an HxWx3 uint8 image"),
        ({"noise_seed": 1.5}, "'noise_seed' must be an integer"),
        ({"noise_seed": True}, "'noise_seed' must be an integer"),
    ],
)
def test_errors_name_the_key(changes, message):
    obs = libero_obs(**{k: v for k, v in changes.items() if v is not None})
    for key in [k for k, v in changes.items() if v is None]:
        del obs[key]
    with pytest.raises(ObservationError) as err:
        input_spec("libero", CAMERAS, [], 8).policy_input(obs)
    assert message in str(err.value)
    assert "\n" not in str(err.value)


def test_ript_format_reads_images_by_camera_key_and_checks_required_ones():
    spec = input_spec("ript", ["agentview", "wrist"], ["agentview"], 3)
    img = np.zeros((16, 16, 3), np.uint8)
    inp, _ = spec.policy_input({"images": {"agentview": img}, "state": np.zeros(3), "prompt": "x"})
    assert list(inp.images) == ["agentview"]  # an optional (masked) camera may be left out
    with pytest.raises(ObservationError, match="'images/agentview' is missing"):
        spec.policy_input({"images": {"wrist": img}, "state": np.zeros(3), "prompt": "x"})
    with pytest.raises(ObservationError, match="'images/front' is not a camera of this policy"):
        spec.policy_input({"images": {"front": img}, "state": np.zeros(3), "prompt": "x"})
    with pytest.raises(ObservationError, match="'images' must be a map"):
        spec.policy_input({"images": [img], "state": np.zeros(3), "prompt": "x"})
    assert spec.keys == ["images/agentview", "images/wrist", "state", "prompt"]


def test_libero_format_needs_two_cameras():
    with pytest.raises(ValueError, match="use the ript input format"):
        input_spec("libero", ["base_0_rgb"], [], 8)
