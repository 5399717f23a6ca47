"""Save/load round trip and loading lerobot / openpi layouts (tiny synthetic weights, real key names)."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from ript_core.policy import CheckpointError, FeatureStats, NormStats, load_policy, save_policy
from tests.policy.conftest import make_inputs, tiny_policy

STATS = NormStats(
    state=FeatureStats(mean=[0.5, -1.0, 2.0], std=[1.5, 0.5, 3.0], q01=[-2, -3, -4], q99=[3, 2, 8]),
    actions=FeatureStats(
        mean=[0.1, 0.0, -0.2], std=[0.3, 0.6, 0.9], q01=[-1, -1, -1], q99=[1, 1, 1]
    ),
)


def openpi_keys(state_dict):
    """transformers' PI0 keys -> openpi PyTorch names (written independently of the loader)."""
    out = {}
    for key, value in state_dict.items():
        if key.startswith("model.vlm."):
            key = "paligemma_with_expert.paligemma.model." + key[len("model.vlm.") :]
        elif key.startswith("model.dit."):
            key = "paligemma_with_expert.gemma_expert.model." + key[len("model.dit.") :]
        elif key.startswith("embed_action_time."):
            key = key[len("embed_action_time.") :]
        out[key] = value.clone()
    return out


def actions_of(policy, seed=0):
    batch = policy.preprocess(make_inputs(3))
    noise = torch.randn(3, 10, 8, generator=torch.Generator().manual_seed(seed))
    return policy.postprocess(policy.sample(batch, "ode", noise=noise).actions)


@pytest.fixture
def source():
    policy = tiny_policy(seed=3)
    policy.set_stats(STATS)
    return policy


def test_save_load_round_trip(source, tmp_path):
    save_policy(source, tmp_path)
    assert {p.name for p in tmp_path.iterdir()} >= {
        "model.safetensors",
        "config.json",
        "policy.json",
        "stats.json",
        "pipeline.json",
        "tokenizer.json",
    }
    loaded = load_policy(tmp_path)
    assert loaded.stats == source.stats and loaded.config == source.config
    assert loaded.pipeline == source.pipeline
    assert loaded.arch.cameras == source.arch.cameras
    for (k, a), (k2, b) in zip(
        source.state_dict().items(), loaded.state_dict().items(), strict=True
    ):
        assert k == k2 and torch.equal(a, b)
    np.testing.assert_array_equal(actions_of(loaded), actions_of(source))
    batch = source.preprocess(make_inputs(3))
    out_a = source.sample(batch, "sde", generator=torch.Generator().manual_seed(5))
    out_b = loaded.sample(
        loaded.preprocess(make_inputs(3)), "sde", generator=torch.Generator().manual_seed(5)
    )
    assert torch.equal(out_a.chain, out_b.chain) and torch.equal(out_a.log_prob, out_b.log_prob)
    # a plain transformers-format directory (config.json + weights) plus stats also loads
    (tmp_path / "policy.json").unlink()
    plain = load_policy(tmp_path, preset="pi0-tiny", action_dim=3, state_dim=3)
    np.testing.assert_array_equal(actions_of(plain), actions_of(source))


def test_lerobot_layout_loads(source, tmp_path):
    weights = {"model." + k: v for k, v in openpi_keys(source.model.state_dict()).items()}
    # lerobot stores PaliGemma's tied embedding under lm_head
    weights["model.paligemma_with_expert.paligemma.lm_head.weight"] = weights.pop(
        "model.paligemma_with_expert.paligemma.model.language_model.embed_tokens.weight"
    )
    save_file(weights, str(tmp_path / "model.safetensors"))
    flat = {
        f"{name}.{stat}": torch.tensor(getattr(feat, stat), dtype=torch.float32)
        for name, feat in (("observation.state", STATS.state), ("action", STATS.actions))
        for stat in ("mean", "std", "q01", "q99")
    }
    save_file(flat, str(tmp_path / "policy_preprocessor_step_3_normalizer_processor.safetensors"))
    (tmp_path / "config.json").write_text(
        json.dumps(
            {
                "type": "pi0",
                "chunk_size": 10,
                "n_action_steps": 10,
                "max_state_dim": 8,
                "max_action_dim": 8,
                "num_steps": 5,
                "tokenizer_max_length": 16,
                "normalization_mapping": {
                    "VISUAL": "IDENTITY",
                    "STATE": "MEAN_STD",
                    "ACTION": "MEAN_STD",
                },
            }
        )
    )
    loaded = load_policy(tmp_path, preset="pi0-tiny", tokenizer=source.tokenizer)
    assert loaded.stats.source.startswith("lerobot") and loaded.stats.eps == 1e-8
    assert loaded.stats.convention == "lerobot"
    # lerobot's own transforms: torch resize without antialiasing, joint "\n"
    assert (loaded.pipeline.resize, loaded.pipeline.prompt_format) == ("torch_plain", "joint")
    # the weights are the source's: with the source's transforms, the same actions
    # (up to lerobot's eps 1e-8 vs 1e-6 and its eps-free inverse)
    same = load_policy(
        tmp_path, preset="pi0-tiny", tokenizer=source.tokenizer, pipeline=source.pipeline
    )
    np.testing.assert_allclose(actions_of(same), actions_of(source), atol=1e-5)


def test_openpi_layout_loads(source, tmp_path):
    weights = openpi_keys(source.model.state_dict())
    # openpi's converted expert still has an (unused) lm_head
    weights["paligemma_with_expert.gemma_expert.lm_head.weight"] = torch.zeros(256, 32)
    save_file(weights, str(tmp_path / "model.safetensors"))
    (tmp_path / "config.json").write_text(
        json.dumps(
            {
                "action_dim": 8,
                "action_horizon": 10,
                "paligemma_variant": "gemma_2b",
                "precision": "float32",
            }
        )
    )
    (tmp_path / "assets" / "toy").mkdir(parents=True)
    norm = {
        "norm_stats": {"state": STATS.to_dict()["state"], "actions": STATS.to_dict()["actions"]}
    }
    (tmp_path / "assets" / "toy" / "norm_stats.json").write_text(json.dumps(norm))
    source.tokenizer.save(tmp_path)
    # openpi does not store its config name, and it decides the transforms
    with pytest.raises(CheckpointError, match=r"pass openpi_config=NAME \(known: pi0_libero"):
        load_policy(tmp_path, preset="pi0-tiny")
    loaded = load_policy(tmp_path, preset="pi0-tiny", pipeline=source.pipeline)
    assert loaded.stats.source.startswith("openpi") and loaded.stats.eps == 1e-6
    np.testing.assert_array_equal(actions_of(loaded), actions_of(source))


def test_corrupted_checkpoint_names_the_offending_keys(source, tmp_path):
    weights = openpi_keys(source.model.state_dict())
    del weights["paligemma_with_expert.gemma_expert.model.layers.1.mlp.down_proj.weight"]
    weights["paligemma_with_expert.gemma_expert.model.layers.7.mlp.bogus.weight"] = torch.zeros(2)
    weights["action_out_proj.weight"] = torch.zeros(7, 32)
    save_file(weights, str(tmp_path / "model.safetensors"))
    (tmp_path / "config.json").write_text(json.dumps({"action_dim": 8, "action_horizon": 10}))
    (tmp_path / "assets" / "toy").mkdir(parents=True)
    norm = {
        "norm_stats": {"state": STATS.to_dict()["state"], "actions": STATS.to_dict()["actions"]}
    }
    (tmp_path / "assets" / "toy" / "norm_stats.json").write_text(json.dumps(norm))
    with pytest.raises(CheckpointError) as err:
        load_policy(
            tmp_path, preset="pi0-tiny", tokenizer=source.tokenizer, pipeline=source.pipeline
        )
    msg = str(err.value)
    assert "openpi layout" in msg
    assert re.search(r"missing keys \(1\):\s+model\.dit\.layers\.1\.mlp\.down_proj\.weight", msg)
    assert re.search(r"unexpected keys \(1\):\s+model\.dit\.layers\.7\.mlp\.bogus\.weight", msg)
    assert "action_out_proj.weight: checkpoint (7, 32) vs model (8, 32)" in msg
    assert "accepted layouts" in msg


def test_missing_stats_fail(source, tmp_path):
    save_file(openpi_keys(source.model.state_dict()), str(tmp_path / "model.safetensors"))
    (tmp_path / "config.json").write_text(json.dumps({"action_dim": 8, "action_horizon": 10}))
    with pytest.raises(
        CheckpointError,
        match=r"no normalisation stats found \(expected assets/<asset_id>/norm_stats.json",
    ):
        load_policy(
            tmp_path, preset="pi0-tiny", tokenizer=source.tokenizer, pipeline=source.pipeline
        )


def test_unknown_layout_and_missing_dir(tmp_path):
    with pytest.raises(CheckpointError, match="not a directory"):
        load_policy(tmp_path / "nope")
    save_file({"foo.weight": torch.zeros(1)}, str(tmp_path / "model.safetensors"))
    with pytest.raises(CheckpointError, match="cannot tell the checkpoint layout"):
        load_policy(tmp_path)
