import numpy as np
import pytest

from ript_core import ObservationError, validate_observation


def good_obs():
    return {
        "images": {"cam": np.zeros((8, 8, 3), np.uint8)},
        "state": np.zeros(3, np.float32),
        "instruction": "do it",
    }


@pytest.mark.parametrize(
    "mutate, match",
    [
        (lambda o: o.pop("state"), "key 'state' is missing"),
        (
            lambda o: o["images"].update(cam=np.zeros((8, 8, 3), np.float32)),
            "'images.cam' has dtype float32",
        ),
        (
            lambda o: o["images"].update(cam=np.zeros((8, 8), np.uint8)),
            r"'images.cam' has shape \(8, 8\)",
        ),
        (
            lambda o: o.update(state=np.array([0.0, np.nan], np.float32)),
            "'state' contains non-finite",
        ),
        (lambda o: o.update(state=np.zeros((2, 2), np.float32)), "'state' must be a 1-D"),
        (lambda o: o.update(instruction=3), "'instruction' is int"),
        (lambda o: o.update(images={}), "'images' must be a non-empty dict"),
    ],
)
def test_bad_observations_name_the_backend_and_the_key(mutate, match):
    obs = good_obs()
    validate_observation(obs, "mysim")
    mutate(obs)
    with pytest.raises(ObservationError, match="backend 'mysim'.*" + match):
        validate_observation(obs, "mysim")
