"""A run with ``update.activation_checkpointing: on`` trains exactly as one
without it (the recomputation changes memory, not maths)."""

from __future__ import annotations

import json

import pytest
import torch

from ript_core.policy.checkpointing import activation_checkpointing
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
    from ript_core.rl.config import TrainConfig
    from ript_core.rl.loop import UpdateConfig

    with pytest.raises(ValueError, match="activation_checkpointing 'sometimes'"):
        TrainConfig(update=UpdateConfig(activation_checkpointing="sometimes")).check()
    with pytest.raises(ValueError, match="'on' with update.distributed 'fsdp'"):
        TrainConfig(update=UpdateConfig(activation_checkpointing="on", distributed="fsdp")).check()
