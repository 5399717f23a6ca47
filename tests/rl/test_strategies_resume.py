"""Resuming a LoRA run continues exactly as an uninterrupted one (issue 12),
the same guarantee the full fine-tuning kill-9 test gives, in-process: the run
is stopped right after its iteration-2 checkpoint, then resumed to 3. Kept
cheap: one evaluation init state per task, one sampling round."""

from __future__ import annotations

import json

import pytest
import torch

from ript_core.policy import load_policy
from ript_core.policy.io.strategy_files import ADAPTER_WEIGHTS, STRATEGY_FILE, TRAINABLE_FILE
from ript_core.rl.optimizer import MasterWeightAdamW, MasterWeights
from ript_core.rl.run_checkpoint import latest_checkpoint
from ript_core.rl.trainer import Trainer

TIMING = ("_per_s", "_frac", "occupancy")
LORA = {"strategy": "lora", "lora": {"rank": 4, "alpha": 8.0}}
CHEAP = {"env": {"eval_init_states": "40:41"}, "bc": {"steps": 3}}


class _Stop(Exception):
    pass


def _metrics(run_dir):
    lines = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return [
        {k: v for k, v in d.items() if not (k.endswith(TIMING) or k.startswith("time/"))}
        for d in lines
    ]


def _weights(run_dir):
    policy = load_policy(latest_checkpoint(run_dir) / "policy")
    return {k: v.clone() for k, v in policy.model.state_dict().items()}


def test_resume_from_a_lora_checkpoint_continues_exactly(tiny_cfg, tmp_path, monkeypatch):
    iterations = 3
    ript = {"iterations": iterations, "max_sampling_rounds": 1}
    ref_cfg = tiny_cfg(run_dir=str(tmp_path / "ref"), ript=ript, policy=LORA, **CHEAP)
    with Trainer(ref_cfg, progress=False) as t:
        base_before = {
            k: v.clone() for k, v in t.policy.model.state_dict().items() if ".lora_" not in k
        }
        t.run()
        trained = t.policy.model.state_dict()
        frozen = [k for k, p in t.policy.model.named_parameters() if not p.requires_grad]
        assert frozen and all(torch.equal(trained[k], base_before[k]) for k in frozen)
        assert any(
            not torch.equal(trained[k], base_before[k]) for k in base_before if k not in frozen
        )

    ckpt = latest_checkpoint(tmp_path / "ref") / "policy"
    files = {p.name for p in ckpt.iterdir()}
    assert {ADAPTER_WEIGHTS, TRAINABLE_FILE, STRATEGY_FILE} <= files
    assert "model.safetensors" not in files  # only what trains; the base is referenced
    assert (tmp_path / "ref" / "base_policy" / "model.safetensors").is_file()

    _cut_and_resume(tiny_cfg, tmp_path, monkeypatch, ript, LORA)
    ref_w, cut_w = _weights(tmp_path / "ref"), _weights(tmp_path / "cut")
    assert ref_w.keys() == cut_w.keys() and any(".lora_" in k for k in ref_w)
    for k in ref_w:
        torch.testing.assert_close(cut_w[k], ref_w[k], atol=1e-6, rtol=0)


def _cut_and_resume(tiny_cfg, tmp_path, monkeypatch, ript, policy, **sections):
    """Run ``cut`` to its iteration-2 checkpoint, stop, resume it to the end;
    its metrics must equal the uninterrupted ``ref`` run's."""
    cut_cfg = tiny_cfg(run_dir=str(tmp_path / "cut"), ript=ript, policy=policy, **CHEAP, **sections)
    original = Trainer.checkpoint

    def stop_after_two(self):
        original(self)
        if self.iteration == 2:
            raise _Stop

    monkeypatch.setattr(Trainer, "checkpoint", stop_after_two)
    with pytest.raises(_Stop), Trainer(cut_cfg, progress=False) as t:
        t.run()
    monkeypatch.setattr(Trainer, "checkpoint", original)
    with Trainer(cut_cfg, resume=True, progress=False) as t:
        assert t.iteration == 2
        t.run()
    assert _metrics(tmp_path / "cut") == _metrics(tmp_path / "ref")


def test_a_bf16_run_trains_float32_masters_and_resumes_exactly(tiny_cfg, tmp_path, monkeypatch):
    """bf16 weights, float32 master copies in the optimizer (rl/optimizer.py):
    the masters, with the low bits bf16 drops, travel with the checkpoint."""
    ript = {"iterations": 3, "max_sampling_rounds": 1}
    policy = {"dtype": "bfloat16"}
    ref_cfg = tiny_cfg(run_dir=str(tmp_path / "ref"), ript=ript, policy=policy, **CHEAP)
    with Trainer(ref_cfg, progress=False) as t:
        assert isinstance(t.optimizer, MasterWeightAdamW)
        assert all(p.dtype == torch.float32 for p in t.params)
        t.run()
        masters = {id(p): m for p, m in zip(t.optimizer.model_params, t.params, strict=True)}
        bf16 = [p for p in t.optimizer.model_params if p.dtype == torch.bfloat16]
        assert bf16
        for p in bf16:  # the model computes with its master, rounded to nearest
            assert torch.equal(p, masters[id(p)].to(torch.bfloat16))
        assert any(not torch.equal(masters[id(p)], p.float()) for p in bf16)
        # gradients live through the update only (the plan charges them there)
        assert all(p.grad is None for p in [*t.params, *t.optimizer.model_params])
    _cut_and_resume(tiny_cfg, tmp_path, monkeypatch, ript, policy)
    ref_w, cut_w = _weights(tmp_path / "ref"), _weights(tmp_path / "cut")
    assert ref_w.keys() == cut_w.keys()
    assert all(torch.equal(cut_w[k], ref_w[k]) for k in ref_w)


def test_8bit_moments_train_bf16_masters_and_resume_exactly(tiny_cfg, tmp_path, monkeypatch):
    """``optim.moments: 8bit``: bitsandbytes' AdamW8bit over the float32
    masters; its quantised moments travel with the checkpoint too."""
    ript = {"iterations": 3, "max_sampling_rounds": 1}
    policy = {"dtype": "bfloat16"}
    optim = {"moments": "8bit"}
    ref_cfg = tiny_cfg(
        run_dir=str(tmp_path / "ref"), ript=ript, policy=policy, optim=optim, **CHEAP
    )
    with Trainer(ref_cfg, progress=False) as t:
        assert isinstance(t.optimizer, MasterWeights) and not isinstance(
            t.optimizer, MasterWeightAdamW
        )
        t.run()
        states = [t.optimizer.state[m] for m in t.params if t.optimizer.state[m]]
        # pi0-tiny's larger matrices (>= 4096 values) keep one-byte moments
        assert any(s["state1"].dtype == torch.uint8 for s in states)
        assert all(p.grad is None for p in [*t.params, *t.optimizer.model_params])
    _cut_and_resume(tiny_cfg, tmp_path, monkeypatch, ript, policy, optim=optim)
    ref_w, cut_w = _weights(tmp_path / "ref"), _weights(tmp_path / "cut")
    assert ref_w.keys() == cut_w.keys()
    assert all(torch.equal(cut_w[k], ref_w[k]) for k in ref_w)
