"""RIPT learns: the small, fast version of ``ript demo``.

The demo's own config (BC on noisy scripted demos, then RIPT on init states
0-149, evaluation on the held-out 150-199) with fewer iterations at a
constant learning rate. Fixed seed and one CPU thread make it deterministic;
the margin is well under the measured lift so that it guards against
regressions in the sampler, the log-probs or the update (any of which
flattens the curve) rather than against noise.
"""

from importlib import resources

from ript_core.config import load_config
from ript_core.configs import DEMO_CONFIG
from ript_core.rl.config import TrainConfig
from ript_core.rl.trainer import Trainer


def test_a_short_ript_run_raises_held_out_success(tmp_path):
    overrides = [
        f"run_dir={tmp_path / 'run'}",
        "ript.iterations=25",
        "optim.schedule=constant",
        "eval.every=0",
        "checkpoint_every=100",
        "tensorboard=false",
    ]
    with resources.as_file(resources.files("ript_core.configs") / DEMO_CONFIG) as path:
        cfg = load_config(TrainConfig, path, overrides)
    assert cfg.torch_threads == 1 and cfg.seed == 0  # what makes the run deterministic
    with Trainer(cfg, progress=False) as trainer:
        summary = trainer.run()
    before, after = summary["success_before"], summary["success_after"]
    print(f"held-out success: {before:.1%} -> {after:.1%}")
    assert 0.15 <= before <= 0.70, f"BC should be partial, got {before:.1%}"
    assert after >= before + 0.10, f"RIPT did not raise success: {before:.1%} -> {after:.1%}"
