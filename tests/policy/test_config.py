"""Presets and the YAML-structured PolicyConfig."""

from __future__ import annotations

import pytest

from ript_core.config import ConfigError, structure
from ript_core.policy import PI0Policy, PolicyConfig
from ript_core.policy.io.presets import resolve_architecture
from tests.policy.conftest import make_inputs


def test_pi0_preset_has_openpi_shapes():
    arch = resolve_architecture(PolicyConfig(preset="pi0"))
    cfg = arch.pi0_config
    text, vision, dit = cfg.vlm_config.text_config, cfg.vlm_config.vision_config, cfg.dit_config
    assert (text.hidden_size, text.num_hidden_layers, text.intermediate_size) == (2048, 18, 16384)
    assert (text.num_attention_heads, text.num_key_value_heads, text.head_dim) == (8, 1, 256)
    assert text.vocab_size == 257152 and cfg.vlm_config.image_token_id == 257152
    assert (vision.hidden_size, vision.num_hidden_layers, vision.patch_size, vision.image_size) == (
        1152,
        27,
        14,
        224,
    )
    assert (dit.hidden_size, dit.num_hidden_layers, dit.intermediate_size, dit.head_dim) == (
        1024,
        18,
        4096,
        256,
    )
    assert (cfg.chunk_size, cfg.max_action_dim, cfg.max_state_dim, cfg.num_inference_steps) == (
        50,
        32,
        32,
        10,
    )
    assert arch.cameras == ("base_0_rgb", "left_wrist_0_rgb", "right_wrist_0_rgb")
    assert arch.max_token_len == 48 and arch.tokens_per_image == 256
    assert text.hidden_act == dit.hidden_act == "gelu_pytorch_tanh"


def test_tiny_preset_is_small_and_overridable():
    policy = PI0Policy.from_preset(
        "pi0-tiny", chunk_size=6, num_steps=3, max_action_dim=4, cameras=["base_0_rgb"]
    )
    n = sum(p.numel() for p in policy.parameters())
    assert 100_000 < n < 1_000_000
    assert policy.model.model.dit.embed_tokens is None  # unused expert table dropped
    assert (policy.chunk_size, policy.num_steps, policy.max_action_dim) == (6, 3, 4)
    assert policy.arch.cameras == ("base_0_rgb",)
    out = policy.sample(policy.preprocess(make_inputs(1, state_dim=8, wrist=False)), "ode")
    assert out.actions.shape == (1, 6, 4) and out.chain.shape == (1, 4, 6, 4)


def test_structure_from_yaml_dict():
    cfg = structure(
        PolicyConfig,
        {
            "preset": "pi0",
            "num_steps": 4,
            "noise_level": 0.3,
            "sde_scheme": "one",
            "logp_horizon": 5,
            "logp_action_dims": 7,
            "train_vlm": False,
            "dtype": "bfloat16",
            "device": "cuda",
            "cameras": ["base_0_rgb", "left_wrist_0_rgb"],
        },
    )
    assert cfg.sde_scheme == "one" and cfg.cameras == ["base_0_rgb", "left_wrist_0_rgb"]
    with pytest.raises(ConfigError, match="noise_levle: unknown key"):
        structure(PolicyConfig, {"noise_levle": 0.3})
    with pytest.raises(ConfigError, match="sde_scheme"):
        structure(PolicyConfig, {"sde_scheme": "some"})
