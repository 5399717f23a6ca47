"""A run with ``update.activation_checkpointing: on`` trains exactly as one
without it (the recomputation changes memory, not maths)."""

from __future__ import annotations

import json

import pytest
import torch

from ript_core.policy.activation_checkpointing import activation_checkpointing
from ript_core.rl.trainer import Trainer

CHEAP = {"env": {"eval_init_states": "40:41"}, "bc": {"steps": 3}}


def _run(tiny_cfg, tmp_path, mode):
    cfg = tiny_cfg(
        run_dir=str(tmp_path / mode),
        ript={"iterations": 2, "max_sampling_rounds": 1},
        update={"activation_checkpointing": mode},
        **CHEAP,
    )
    with Trainer(cfg, progress=False) as t:
        assert t.plan.activation_checkpointing is (mode == "on")
        assert activation_checkpointing(t.policy.model) is (mode == "on")
        t.run()
        weights = {k: v.clone() for k, v in t.policy.model.state_dict().items()}
    lines = [json.loads(x) for x in (tmp_path / mode / "metrics.jsonl").read_text().splitlines()]
    metrics = [
        {
            k: v
            for k, v in d.items()
            if not (k.startswith("time/") or k.endswith(("_per_s", "_frac", "occupancy")))
        }
        for d in lines
    ]
    return metrics, weights


def test_checkpointed_training_equals_plain_training(tiny_cfg, tmp_path):
    plain_metrics, plain = _run(tiny_cfg, tmp_path, "off")
    ckpt_metrics, ckpt = _run(tiny_cfg, tmp_path, "on")
    assert any(m.get("update/optimizer_steps") for m in plain_metrics)  # it did train
    assert ckpt_metrics == plain_metrics
    for k in plain:
        torch.testing.assert_close(ckpt[k], plain[k], rtol=0, atol=1e-6, msg=k)


def test_bad_checkpointing_settings_are_refused_before_anything_runs():
    from ript_core.rl.config import TrainConfig, UpdateConfig

    with pytest.raises(ValueError, match="activation_checkpointing 'sometimes'"):
        TrainConfig(update=UpdateConfig(activation_checkpointing="sometimes")).check()
    with pytest.raises(ValueError, match="'on' with update.distributed 'fsdp'"):
        TrainConfig(update=UpdateConfig(activation_checkpointing="on", distributed="fsdp")).check()


def test_compiled_training_equals_eager_training(tiny_cfg, tmp_path, monkeypatch):
    """``update.compile``: the update's forward and backward through compiled
    layers (dynamo + AOTAutograd; the "aot_eager" backend on CPU), with
    checkpointing on, trains as the eager update does."""
    import ript_core.policy.fast.compiled_layers as cl

    monkeypatch.setattr(cl, "BACKEND", "aot_eager")
    torch._dynamo.reset()
    eager_metrics, eager = _run(tiny_cfg, tmp_path, "on")
    cfg = tiny_cfg(
        run_dir=str(tmp_path / "compiled"),
        ript={"iterations": 2, "max_sampling_rounds": 1},
        update={"activation_checkpointing": "on", "compile": True},
        **CHEAP,
    )
    with Trainer(cfg, progress=False) as t:
        t.run()
        compiled = {k: v.clone() for k, v in t.policy.model.state_dict().items()}
    torch._dynamo.reset()
    lines = (tmp_path / "compiled" / "metrics.jsonl").read_text().splitlines()
    metrics = [json.loads(x) for x in lines]
    assert any(m.get("update/optimizer_steps") for m in metrics)
    for mine, ref in zip(metrics, eager_metrics, strict=True):
        for key in ("update/loss", "update/ratio_mean", "eval/success_rate"):
            if key in ref:
                assert mine[key] == pytest.approx(ref[key], abs=1e-5), key
    # compiled graphs give zero (not None) gradients to the last Gemma layer's
    # query/MLP weights, which PI0 never reads; AdamW then decays them
    last = f"language_model.layers.{t.policy.model.config.vlm_config.text_config.num_hidden_layers - 1}."
    unread = [k for k in eager if last in k and not k.endswith(("k_proj.weight", "v_proj.weight"))]
    assert unread
    for k in eager:
        if k not in unread:
            torch.testing.assert_close(compiled[k], eager[k], rtol=0, atol=1e-5, msg=k)


def test_compile_with_fsdp_is_refused_before_anything_runs():
    from ript_core.rl.config import TrainConfig, UpdateConfig

    with pytest.raises(ValueError, match="update.compile with update.distributed 'fsdp'"):
        TrainConfig(update=UpdateConfig(compile=True, distributed="fsdp")).check()
