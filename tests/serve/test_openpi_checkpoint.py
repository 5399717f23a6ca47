"""``ript serve`` on an openpi checkpoint as openpi writes it: ``--openpi-config``
picks its transforms (and the LIBERO keys), ``--tokenizer`` the tokenizer it lacks."""

from __future__ import annotations

import json

import numpy as np
from safetensors.torch import save_file
from websockets.sync.client import connect

from ript_core.policy import PI0Policy, load_policy
from ript_core.rl.actor import PI0Actor
from ript_core.serve.wire import packb, unpackb
from tests.policy.test_checkpoint import openpi_keys
from tests.serve.conftest import (
    LIBERO_PROMPTS,
    as_policy_input,
    libero_observations,
    served,
    torch_threads,
)


def test_an_openpi_checkpoint_is_served_with_its_configs_transforms(tmp_path):
    source = PI0Policy.from_preset(
        "pi0-tiny", seed=5, action_dim=7, state_dim=8, prompts=LIBERO_PROMPTS
    )
    ckpt, tokenizer = tmp_path / "openpi", tmp_path / "tokenizer"
    ckpt.mkdir()
    tokenizer.mkdir()
    save_file(openpi_keys(source.model.state_dict()), str(ckpt / "model.safetensors"))
    (ckpt / "config.json").write_text(json.dumps({"action_dim": 8, "action_horizon": 10}))
    assets = ckpt / "assets" / "physical-intelligence" / "libero"  # pi0_libero's asset id
    assets.mkdir(parents=True)
    stats = {
        "state": {"mean": list(np.linspace(-1, 1, 8)), "std": [0.5] * 8},
        "actions": {"mean": list(np.linspace(0, 0.6, 7)), "std": [0.2] * 7},
    }
    (assets / "norm_stats.json").write_text(json.dumps({"norm_stats": stats}))
    source.tokenizer.save(tokenizer)  # not in the checkpoint: --tokenizer gives it

    flags = ["--openpi-config", "pi0_libero", "--preset", "pi0-tiny"]
    flags += ["--tokenizer", str(tokenizer / "tokenizer.json")]
    (obs,) = libero_observations(1, seed=6)
    with (
        served(ckpt, tmp_path / "serve.log", flags) as server,
        connect(server.url, compression=None, max_size=None, open_timeout=60) as ws,
    ):
        meta = unpackb(ws.recv(timeout=60))
        ws.send(packb({**obs, "noise_seed": 21}))
        got = unpackb(ws.recv(timeout=300))["actions"]
    assert (meta["pipeline"], meta["inputs"]) == ("openpi:pi0_libero", "libero")
    policy = load_policy(
        ckpt,
        openpi_config="pi0_libero",
        preset="pi0-tiny",
        tokenizer_path=str(tokenizer / "tokenizer.json"),
    )
    with torch_threads(1):
        want = PI0Actor(policy, "ode").act([as_policy_input(obs)], [21]).actions[0]
    np.testing.assert_array_equal(got, want)
    # pi0_libero's delta transform: the first six dims are absolute (state added), the gripper not
    assert policy.pipeline.delta_action_mask == (True,) * 6 + (False,)
    assert got.shape == (10, 7) and np.isfinite(got).all()
