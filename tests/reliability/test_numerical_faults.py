"""Numerical faults (issue 34): a NaN never reaches the weights, a checkpoint or an
env, and a wild update is reported, not silently absorbed."""

import json
import logging

import numpy as np
import pytest
import torch

from ript_core.rl.actor import PI0Actor
from ript_core.rl.config import UpdateConfig
from ript_core.rl.optimizer import make_adamw
from ript_core.rl.ript import loop_update
from ript_core.rl.rollout_setup import rollout_setup
from ript_core.rl.run_checkpoint import latest_checkpoint
from ript_core.rl.trainer import Trainer, TrainingError
from ript_core.rollout.runner import EpisodeRequest, PolicyOutputError
from tests.rl.fixtures import fixed_decisions, tiny_policy

NO_BC = {"demos_per_task": 0, "steps": 0}


def test_a_nan_clip_turns_gradients_nan_and_the_step_is_skipped():
    policy = tiny_policy()
    optimizer, params = make_adamw(list(policy.model.parameters()), lr=1e-3)
    before = {k: v.clone() for k, v in policy.state_dict().items()}
    out = loop_update(
        fixed_decisions(policy, n=4),
        PI0Actor(policy).log_prob,
        params,
        optimizer,
        UpdateConfig(max_grad_norm=float("nan"), micro_batch=4),
        np.random.default_rng(0),
    )
    # the norm clip_grad_norm_ returns is finite (measured before clipping);
    # the clipped gradients are all NaN and must not be applied
    assert out["skipped_steps"] == 1 and out["optimizer_steps"] == 0
    for k, v in policy.state_dict().items():
        assert torch.equal(v, before[k]), k


def test_a_checkpoint_with_a_non_finite_weight_is_never_written(tiny_cfg):
    cfg = tiny_cfg(bc=NO_BC)
    with Trainer(cfg, progress=False) as trainer:
        trainer.checkpoint()  # a good one first: it must stay latest
        good = latest_checkpoint(cfg.run_dir)
        trainer.iteration = 1
        with torch.no_grad():
            trainer.params[3].view(-1)[0] = float("nan")
        with pytest.raises(
            TrainingError, match=r"1 of \d+ weight tensors.*latest is still iter_000000"
        ):
            trainer.checkpoint()
    assert latest_checkpoint(cfg.run_dir) == good
    assert not (good.parent / "iter_000001").exists()


def test_a_non_finite_action_is_reported_as_the_policys_with_its_likely_cause():
    policy = tiny_policy()
    with torch.no_grad():
        for p in policy.model.parameters():
            p.fill_(float("nan"))
    with rollout_setup(policy, {"eval": "ode"}, env_workers=0, max_steps=5) as setup:
        request = EpisodeRequest(
            episode_id=0, backend="toy", task="reach-red", init_state=3, seed=1
        )
        with pytest.raises(
            PolicyOutputError, match=r"policy produced a non-finite action.*optim\.lr"
        ):
            setup.runners["eval"].run([request])


def test_an_absurd_learning_rate_is_warned_about_and_counted(tiny_cfg, caplog):
    cfg = tiny_cfg(optim={"lr": 1e6}, bc=NO_BC)
    with Trainer(cfg, progress=False) as trainer:
        upd = trainer.update(fixed_decisions(trainer.policy, n=4))
        trainer.iteration = 1
        with caplog.at_level(logging.WARNING, logger="ript_core.rl.trainer"):
            trainer._check_update(upd)
    assert upd["weight_norm_change"] > 1e3
    assert "optim.lr 1e+06 is likely far too high" in caplog.text
    assert trainer.history["absurd_updates"] == 1


def test_a_normal_update_is_not_called_absurd(tiny_cfg):
    with Trainer(tiny_cfg(bc=NO_BC), progress=False) as trainer:
        upd = trainer.update(fixed_decisions(trainer.policy, n=4))
    assert upd["optimizer_steps"] == 1
    assert 0 < upd["weight_norm_change"] < 0.01  # lr 1e-3: measured ~1e-4


def test_skips_are_printed_with_the_iteration_the_metrics_log(tiny_cfg, caplog):
    cfg = tiny_cfg(ript={"iterations": 2}, bc=NO_BC)
    with Trainer(cfg, progress=False) as trainer:
        decisions = fixed_decisions(trainer.policy, n=4)
        trainer.collect_groups = lambda: (
            decisions,
            {"train/success_rate": 0.5, "ript/kept_groups": 1},
        )
        real = trainer.update
        trainer.update = lambda d: {**real(d), "skipped_steps": 1, "optimizer_steps": 0}
        with caplog.at_level(logging.WARNING, logger="ript_core.rl.trainer"):
            summary = trainer.run()
    assert "iteration 1: 1 of 1 optimizer steps skipped" in caplog.text
    assert "iteration 2: 1 of 1 optimizer steps skipped" in caplog.text
    assert "iteration 0:" not in caplog.text
    lines = [json.loads(x) for x in (trainer.run_dir / "metrics.jsonl").read_text().splitlines()]
    logged = {
        r["iteration"]: r["faults/skipped_steps"] for r in lines if "faults/skipped_steps" in r
    }
    assert logged == {1: 1, 2: 2}  # cumulative, under the iteration the warning names
    assert summary["skipped_steps"] == 2


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("policy.noise_level", float("nan"), "policy.noise_level = nan"),
        ("optim.lr", float("inf"), "optim.lr = inf"),
        ("update.max_grad_norm", float("nan"), "update.max_grad_norm = nan"),
        ("update.max_grad_norm", 0.0, "update.max_grad_norm must be > 0"),
        ("optim.lr", -1e-4, "optim.lr must be > 0"),
        ("optim.betas", [0.9, float("nan")], r"optim.betas = nan"),
        ("optim.betas", [0.9, 1.0], r"optim.betas\[1\] must be in \[0, 1\)"),
        ("ript.oversample", 0.0, "ript.oversample must be > 0"),
        ("policy.preset", "pi9", "policy.preset 'pi9' is unknown: use one of"),
    ],
)
def test_every_float_setting_is_checked_for_finiteness_and_range(tiny_cfg, key, value, message):
    cfg = tiny_cfg()
    section, name = key.split(".")
    setattr(getattr(cfg, section), name, value)
    with pytest.raises(ValueError, match=message):
        cfg.check()


def test_the_float_checks_pass_every_default_and_the_tiny_run(tiny_cfg):
    from ript_core.rl.config import TrainConfig

    TrainConfig(init_checkpoint="ckpt").check()  # the defaults (stats come with a checkpoint)
    tiny_cfg().check()
