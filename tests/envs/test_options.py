"""ript_core.check_env_options: the one check every backend's options go through."""

from __future__ import annotations

import pytest

from ript_core import check_env_options, make_env

DEFAULTS = {"image_size": 64, "hand_camera": True, "step_size": 0.08, "camera_name": None}


def test_defaults_filled_in_and_given_values_kept():
    out = check_env_options("demo", {"image_size": 32, "step_size": 1}, DEFAULTS)
    assert out == {"image_size": 32, "hand_camera": True, "step_size": 1, "camera_name": None}


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"camera": 1}, r"demo backend: unknown env options \['camera'\]; known: \['camera_name'"),
        ({"hand_camera": 1}, "demo backend: hand_camera must be true or false, got 1"),
        ({"image_size": True}, r"demo backend: image_size must be an int in \[16, 1024\].*True"),
        ({"image_size": 32.0}, r"image_size must be an int in \[16, 1024\].*got 32.0"),
        ({"step_size": "0.1"}, "demo backend: step_size must be a number, got '0.1'"),
        ({"image_size": 8}, r"image_size must be an int in \[16, 1024\] .*got 8"),
    ],
)
def test_bad_options_name_the_backend_the_option_and_the_rule(options, message):
    with pytest.raises(ValueError, match=message):
        check_env_options("demo", options, DEFAULTS)


def test_image_size_range_is_the_backends():
    assert check_env_options("demo", {"image_size": 128}, DEFAULTS, image_size_range=(16, 128))
    with pytest.raises(ValueError, match=r"\[16, 128\]"):
        check_env_options("demo", {"image_size": 129}, DEFAULTS, image_size_range=(16, 128))


def test_none_default_accepts_anything():
    assert check_env_options("demo", {"camera_name": "wrist"}, DEFAULTS)["camera_name"] == "wrist"


def test_the_toy_backend_uses_it():
    with pytest.raises(ValueError, match="toy backend: step_size must be a number, got 'big'"):
        make_env("toy/reach-red", step_size="big")
    env = make_env("toy/reach-red", image_size=32)
    obs, _ = env.reset(seed=0, options={"init_state": 0})
    assert next(iter(obs["images"].values())).shape == (32, 32, 3)
