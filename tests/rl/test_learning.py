"""RIPT learns, on any processor: the demo's pipeline (BC on noisy scripted
demos, then RIPT) trained on four init states it was not warm-started on.

Why the training contexts and not held-out ones: a CPU run is deterministic
on one machine but float kernels differ between processors, and a RIPT run
amplifies those differences into another trajectory. After 25 iterations the
held-out lift of ``ript demo``'s recipe ranged from -2 to +16 points across
the processors and kernel settings measured (docs/benchmarks.md, "Learning"),
so no bar on it holds everywhere. Success on the contexts RIPT trains on is
what the update optimises directly; its lift was +26 to +35 points in every
setting measured, so a bar of +12 guards the sampler, the log-probs and the
update (any regression there flattens it) without hinging on one run's luck.
"""

from importlib import resources

from ript_core.config import load_config
from ript_core.configs import DEMO_CONFIG
from ript_core.rl.config import TrainConfig
from ript_core.rl.trainer import Trainer
from tests.rl.test_trainer import metric_lines

WINDOW = 5  # iterations averaged at each end (about 240 episodes)


def success_over(rows: list[dict]) -> float:
    episodes = sum(r["train/episodes"] for r in rows)
    return sum(r["train/success_rate"] * r["train/episodes"] for r in rows) / episodes


def test_ript_raises_success_on_the_contexts_it_trains_on(tmp_path):
    overrides = [
        f"run_dir={tmp_path / 'run'}",
        "ript.iterations=25",
        "optim.schedule=constant",
        'env.train_init_states="20:24"',  # not among the BC demos' 0:20
        'env.eval_init_states="196:"',  # the trainer's own held-out check, kept cheap
        "eval.episodes_per_init_state=1",
        "eval.every=0",
        "ript.groups_per_iteration=4",
        "ript.max_sampling_rounds=1",
        "ript.solved_weight=1.0",  # uniform contexts: the logged rate is unbiased
        "checkpoint_every=100",
        "tensorboard=false",
        # the BC recipe the margins above were measured with (the demo's is
        # now 40 demos and a BC stopped at a target success)
        "bc.demos_per_task=20",
        'bc.demo_init_states="0:20"',
        "bc.demo_noise=0.3",
        "bc.steps=800",
        "bc.target_success=0",
    ]
    with resources.as_file(resources.files("ript_core.configs") / DEMO_CONFIG) as path:
        cfg = load_config(TrainConfig, path, overrides)
    assert cfg.torch_threads == 1 and cfg.seed == 0  # what makes the run deterministic
    with Trainer(cfg, progress=False) as trainer:
        trainer.run()
    rows = [r for r in metric_lines(tmp_path / "run") if "train/success_rate" in r]
    assert len(rows) == 25
    first, last = success_over(rows[:WINDOW]), success_over(rows[-WINDOW:])
    print(f"training-context success (SDE rollouts): {first:.1%} -> {last:.1%}")
    assert 0.05 <= first <= 0.70, f"BC should be partial on these contexts, got {first:.1%}"
    assert last >= first + 0.12, f"RIPT did not raise success: {first:.1%} -> {last:.1%}"
