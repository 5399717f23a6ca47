"""openpi's own client (``openpi-client`` 0.1.2, its own venv) against ``ript serve``."""

from __future__ import annotations

import urllib.request

import numpy as np

from ript_core.rollout.runner import decision_seed
from tests.serve.conftest import (
    as_policy_input,
    libero_observations,
    reference_chunks,
    run_openpi_client,
)


def test_openpi_client_gets_the_in_process_policys_chunks(
    openpi_python, libero_server, libero_checkpoint, tmp_path
):
    observations = libero_observations(4, seed=1)
    # two with the noise seed the rollout runner would give, two with the server's own
    observations[0]["noise_seed"] = 123
    observations[1]["noise_seed"] = np.int64(2**40)  # a numpy scalar crosses as __npgeneric__
    replies = run_openpi_client(openpi_python, libero_server.port, observations, tmp_path)

    assert replies["numpy"].startswith("1."), "the client venv must keep openpi's numpy<2"
    meta = replies["metadata"]
    assert meta["server"] == "ript-core" and meta["inputs"] == "libero"
    assert meta["observation_keys"] == [
        "observation/image",
        "observation/wrist_image",
        "observation/state",
        "prompt",
    ]
    assert (meta["action_dim"], meta["action_horizon"]) == (7, 10)
    assert replies["errors"] == [None] * 4
    # a fresh session server: requests without a seed get decision_seed(0, n), n = 0, 1, ...
    seeds = [123, 2**40, decision_seed(0, 0), decision_seed(0, 1)]
    expected = reference_chunks(
        libero_checkpoint, [as_policy_input(o) for o in observations], seeds
    )
    for got, want in zip(replies["actions"], expected, strict=True):
        assert got.shape == (10, 7)
        np.testing.assert_array_equal(got, want)  # bit for bit: same code, same thread count
    # openpi's timing keys; prev_total_ms from the second request on
    timing = replies["server_timing"]
    assert "prev_total_ms" not in timing[0] and all("prev_total_ms" in t for t in timing[1:])
    for server, policy in zip(timing, replies["policy_timing"], strict=True):
        assert 0 < policy["infer_ms"] <= server["infer_ms"]
        assert policy["batch_size"] == 1


def test_a_bad_observation_gets_an_error_naming_the_key_and_the_server_goes_on(
    openpi_python, libero_server, libero_checkpoint, tmp_path
):
    good, no_state, bad_image, good_again = libero_observations(4, seed=2)
    del no_state["observation/state"]
    bad_image["observation/wrist_image"] = bad_image["observation/wrist_image"][..., :2]
    for obs in (good, good_again):
        obs["noise_seed"] = 7
    replies = run_openpi_client(
        openpi_python, libero_server.port, [good, no_state, bad_image, good_again], tmp_path
    )
    errors = replies["errors"]
    assert errors[0] is None and errors[3] is None
    assert "observation key 'observation/state' is missing" in errors[1]
    assert "observation key 'observation/wrist_image' must be an HxWx3 uint8 image" in errors[2]
    assert "(224, 224, 2)" in errors[2]
    want = reference_chunks(libero_checkpoint, [as_policy_input(good_again)], [7])[0]
    np.testing.assert_array_equal(replies["actions"][3], want)
    assert libero_server.alive()


def test_health_endpoint_answers_ok(libero_server):
    url = f"http://127.0.0.1:{libero_server.port}/healthz"
    with urllib.request.urlopen(url, timeout=30) as response:
        assert (response.status, response.read()) == (200, b"OK\n")
