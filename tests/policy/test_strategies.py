"""Trainable-parameter strategies (issue 12): full, expert, LoRA through peft.

Tiny preset on CPU. "Update" here is the RIPT update's core: a loss on
``log_prob`` of sampled chains, backward, one AdamW step (with weight decay,
so a frozen tensor handed to the optimizer would move) on the strategy's
trainable parameters only.
"""

from __future__ import annotations

import json
import sys

import pytest
import torch
from transformers import PI0ForConditionalGeneration

from ript_core.cli import main
from ript_core.policy import CheckpointError, PolicyConfig, load_policy, save_policy
from ript_core.policy.config import LoraSettings
from ript_core.policy.io.strategy_files import (
    ADAPTER_CONFIG,
    ADAPTER_WEIGHTS,
    STRATEGY_FILE,
    TRAINABLE_FILE,
)
from ript_core.policy.strategies import (
    StrategyError,
    is_projection,
    lora_target_regex,
    trainable_parameters,
)
from tests.policy.conftest import make_inputs, tiny_policy
from tests.policy.test_sampling import reference_actions

LORA = LoraSettings(rank=4, alpha=8.0)


def _noise(policy, n: int = 3, seed: int = 1) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, policy.chunk_size, policy.max_action_dim, generator=g)


def _ode(policy, seed: int = 1) -> torch.Tensor:
    batch = policy.preprocess(make_inputs(3))
    return policy.sample(batch, "ode", noise=_noise(policy, seed=seed)).actions


def _update(policy, steps: int = 1, seed: int = 0) -> None:
    """``steps`` RIPT-like updates: -advantage-weighted log-prob, AdamW(wd=0.1)."""
    opt = torch.optim.AdamW(trainable_parameters(policy), lr=1e-2, weight_decay=0.1)
    batch = policy.preprocess(make_inputs(4, seed=seed))
    gen = torch.Generator().manual_seed(seed)
    out = policy.sample(batch, "sde", generator=gen)
    adv = torch.tensor([1.0, -1.0, 0.5, -0.5])
    for _ in range(steps):
        loss = -(adv * policy.log_prob(batch, out.chain, out.stochastic_step)).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()


def _snapshot(policy) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in policy.model.state_dict().items()}


def _changed(before, policy) -> set[str]:
    after = policy.model.state_dict()
    return {k for k, v in before.items() if not torch.equal(v, after[k])}


# ---- config --------------------------------------------------------------------------


def test_strategy_config_errors_name_the_fix():
    with pytest.raises(ValueError, match="policy.strategy must be one of"):
        PolicyConfig(strategy="half")
    with pytest.raises(ValueError, match=r"subset of \['vlm', 'expert'\]"):
        LoraSettings(targets=["vision"])
    with pytest.raises(ValueError, match="not adaptable"):
        LoraSettings(modules=["fc1"])
    with pytest.raises(ValueError, match="rank must be >= 1"):
        LoraSettings(rank=0)


def test_lora_without_peft_names_the_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "peft", None)  # import peft -> ModuleNotFoundError
    with pytest.raises(StrategyError, match=r"pip install .*ript-core\[lora\]"):
        tiny_policy(strategy="lora", lora=LORA)


def test_lora_targets_only_gemma_linears():
    regex = lora_target_regex(LoraSettings(targets=["expert"], modules=["q_proj", "down_proj"]))
    policy = tiny_policy(strategy="lora", lora=LoraSettings(targets=["expert"], modules=["q_proj"]))
    adapted = {n.split(".lora_")[0] for n, _ in policy.model.named_parameters() if ".lora_" in n}
    assert adapted == {f"model.dit.layers.{i}.self_attn.q_proj" for i in range(2)}
    assert "dit" in regex and "vlm" not in regex


# ---- LoRA ------------------------------------------------------------------------------


def test_fresh_lora_adapter_leaves_actions_identical():
    base = tiny_policy(seed=3)
    lora = tiny_policy(seed=3, strategy="lora", lora=LORA)
    assert any(".lora_B." in n for n, _ in lora.model.named_parameters())
    assert torch.equal(_ode(base), _ode(lora))
    batch = base.preprocess(make_inputs(3))
    out = base.sample(batch, "sde", generator=torch.Generator().manual_seed(5))
    out2 = lora.sample(batch, "sde", generator=torch.Generator().manual_seed(5))
    assert torch.equal(out.chain, out2.chain) and torch.equal(out.log_prob, out2.log_prob)


@pytest.mark.parametrize("projections", [False, True])
def test_lora_update_changes_only_adapters(projections):
    policy = tiny_policy(
        strategy="lora", lora=LoraSettings(rank=4, alpha=8.0, train_projections=projections)
    )
    before = _snapshot(policy)
    _update(policy)
    changed = _changed(before, policy)
    adapters = {k for k in before if ".lora_" in k}
    assert {k for k in changed if ".lora_B." in k}, "the update did not reach the adapters"
    allowed = adapters | ({k for k in before if is_projection(k)} if projections else set())
    assert changed <= allowed, sorted(changed - allowed)[:5]
    if not projections:
        assert changed <= adapters  # only adapter parameters changed
    trainable = {n for n, p in policy.model.named_parameters() if p.requires_grad}
    assert trainable == allowed


def test_lora_on_vlm_backpropagates_through_prefix_expert_only_does_not():
    def cache_needs_grad(policy) -> bool:
        inputs = policy.model_inputs(policy.preprocess(make_inputs(2)))
        cache, _ = policy.encode_prefix(inputs)
        return any(layer.keys.requires_grad for layer in cache.layers)

    assert cache_needs_grad(tiny_policy(strategy="lora", lora=LORA))
    assert not cache_needs_grad(
        tiny_policy(strategy="lora", lora=LoraSettings(rank=4, targets=["expert"]))
    )
    assert not cache_needs_grad(tiny_policy(strategy="expert"))
    assert cache_needs_grad(tiny_policy(strategy="full"))


# ---- expert ------------------------------------------------------------------------------


def test_expert_strategy_keeps_every_vlm_tensor_bit_identical():
    policy = tiny_policy(strategy="expert")
    before = _snapshot(policy)
    for seed in range(3):
        _update(policy, steps=2, seed=seed)
    changed = _changed(before, policy)
    vlm = {k for k in before if k.startswith("model.vlm.")}
    assert vlm and not (changed & vlm)
    assert {k for k in changed if k.startswith("model.dit.")}
    assert {k for k in changed if is_projection(k)}
    assert all(
        p.requires_grad == (not n.startswith("model.vlm."))
        for n, p in policy.model.named_parameters()
    )


def test_expert_checkpoint_stores_only_what_trains(tmp_path):
    base = tiny_policy(strategy="expert")
    save_policy(base, tmp_path / "base")  # no base yet: self-contained
    policy = load_policy(tmp_path / "base")
    assert policy.base_checkpoint is None
    policy.base_checkpoint = (tmp_path / "base").resolve()
    _update(policy, steps=2)
    save_policy(policy, tmp_path / "delta")
    files = {p.name for p in (tmp_path / "delta").iterdir()}
    assert TRAINABLE_FILE in files and STRATEGY_FILE in files and "model.safetensors" not in files
    delta_bytes = (tmp_path / "delta" / TRAINABLE_FILE).stat().st_size
    assert delta_bytes < (tmp_path / "base" / "model.safetensors").stat().st_size / 2
    again = load_policy(tmp_path / "delta")
    assert again.base_checkpoint == (tmp_path / "base").resolve()
    for (k, a), b in zip(
        policy.model.state_dict().items(), again.model.state_dict().values(), strict=True
    ):
        assert torch.equal(a, b), k


# ---- checkpoints and export ----------------------------------------------------------------


def test_lora_checkpoint_round_trip_in_peft_format(tmp_path):
    import peft

    save_policy(tiny_policy(), tmp_path / "base")
    policy = load_policy(tmp_path / "base", strategy="lora", lora={"rank": 4, "alpha": 8.0})
    assert policy.base_checkpoint == (tmp_path / "base").resolve()
    _update(policy)
    save_policy(policy, tmp_path / "ckpt")
    files = {p.name for p in (tmp_path / "ckpt").iterdir()}
    assert {ADAPTER_CONFIG, ADAPTER_WEIGHTS, TRAINABLE_FILE, STRATEGY_FILE} <= files
    assert "model.safetensors" not in files
    cfg = peft.LoraConfig.from_pretrained(str(tmp_path / "ckpt"))
    assert cfg.r == 4 and cfg.lora_alpha == 8.0
    again = load_policy(tmp_path / "ckpt")
    assert torch.equal(_ode(policy), _ode(again))
    info = json.loads((tmp_path / "ckpt" / STRATEGY_FILE).read_text())
    assert info["base"]["relative"] == "../base"

    with pytest.raises(CheckpointError, match="ript export --merge"):
        load_policy(tmp_path / "ckpt", strategy="full")
    # a replaced base would silently change the frozen weights: refused
    save_policy(tiny_policy(seed=9), tmp_path / "base")
    with pytest.raises(CheckpointError, match="has changed"):
        load_policy(tmp_path / "ckpt")


def test_merged_export_matches_adapter_model_and_loads_in_transformers(tmp_path):
    save_policy(tiny_policy(), tmp_path / "base")
    policy = load_policy(tmp_path / "base", strategy="lora", lora={"rank": 4, "alpha": 8.0})
    _update(policy, steps=2)
    save_policy(policy, tmp_path / "ckpt")
    want = _ode(policy)
    assert not torch.equal(want, _ode(load_policy(tmp_path / "base")))  # training did something

    assert main(["export", "--merge", str(tmp_path / "ckpt"), str(tmp_path / "out")]) == 0
    merged = load_policy(tmp_path / "out")
    assert merged.config.strategy == "full"
    assert not any(".lora_" in k for k in merged.model.state_dict())
    assert (_ode(merged) - want).abs().max().item() <= 1e-5

    hf = PI0ForConditionalGeneration.from_pretrained(str(tmp_path / "out")).eval()
    batch = policy.preprocess(make_inputs(3))
    noise = _noise(policy)
    # transformers' own sampler on the exported weights == the adapter policy
    hf_policy = load_policy(tmp_path / "out")
    hf_policy.model = hf
    got = reference_actions(hf_policy, batch, noise)
    assert (got - want).abs().max().item() <= 1e-5
