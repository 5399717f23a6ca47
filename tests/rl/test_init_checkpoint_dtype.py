"""``policy.dtype`` of a run decides the precision of an ``init_checkpoint``
loaded into it (the plan and the optimizer's master weights follow it)."""

from __future__ import annotations

import torch

from ript_core.policy import save_policy
from ript_core.rl.optimizer import MasterWeightAdamW
from ript_core.rl.trainer import Trainer
from tests.policy.conftest import tiny_policy


def test_init_checkpoint_is_loaded_in_the_runs_dtype(tiny_cfg, tmp_path):
    ckpt = save_policy(tiny_policy(seed=5), tmp_path / "fp32-ckpt")
    cfg = tiny_cfg(
        run_dir=str(tmp_path / "run"),
        init_checkpoint=str(ckpt),
        policy={"dtype": "bfloat16"},
    )
    with Trainer(cfg, progress=False) as t:
        assert t.policy.dtype == torch.bfloat16
        assert any("in bf16" in r for r in t.plan.reasons)  # planned as bf16
        assert isinstance(t.optimizer, MasterWeightAdamW)
