"""The RIPT trainer end to end on the toy backend (tiny policy, CPU)."""

import json
import os
import resource
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch

from ript_core.policy import load_policy
from ript_core.rl.actor import PI0Actor
from ript_core.rl.run_checkpoint import latest_checkpoint
from ript_core.rl.trainer import Trainer, TrainingError
from tests.rl.fixtures import fixed_decisions, run_worker

TIMING = ("_per_s", "_frac", "occupancy")


def metric_lines(run_dir):
    lines = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return [
        {k: v for k, v in d.items() if not (k.endswith(TIMING) or k.startswith("time/"))}
        for d in lines
    ]


def final_weights(run_dir):
    policy = load_policy(latest_checkpoint(run_dir) / "policy")
    return {k: v.clone() for k, v in policy.state_dict().items()}


def ript(*args, cwd=None):
    return [sys.executable, "-m", "ript_core", *args]


def test_kill_9_during_training_then_resume_equals_an_uninterrupted_run(
    tiny_cfg, write_cfg, tmp_path
):
    iterations = 5
    ref_cfg = tiny_cfg(run_dir=str(tmp_path / "ref"), ript={"iterations": iterations})
    cut_cfg = tiny_cfg(run_dir=str(tmp_path / "cut"), ript={"iterations": iterations})
    subprocess.run(
        ript("train", str(write_cfg(ref_cfg, "ref.yaml")), "--quiet"), check=True, timeout=600
    )

    cut_path = write_cfg(cut_cfg, "cut.yaml")
    proc = subprocess.Popen(ript("train", str(cut_path), "--quiet"))
    metrics = tmp_path / "cut" / "metrics.jsonl"
    deadline = time.time() + 300
    while time.time() < deadline:  # wait until iteration 2 is logged, then kill mid-iteration 3
        if metrics.exists() and '"iteration": 2' in metrics.read_text():
            break
        time.sleep(0.05)
    else:
        proc.kill()
        pytest.fail("the training run never reached iteration 2")
    time.sleep(0.2)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert latest_checkpoint(tmp_path / "cut") is not None
    # without --resume the run refuses to touch the existing checkpoints
    again = subprocess.run(ript("train", str(cut_path), "--quiet"), capture_output=True, text=True)
    assert again.returncode == 2 and "pass --resume" in again.stdout
    subprocess.run(ript("train", str(cut_path), "--resume", "--quiet"), check=True, timeout=600)

    assert metric_lines(tmp_path / "cut") == metric_lines(tmp_path / "ref")
    ref_w, cut_w = final_weights(tmp_path / "ref"), final_weights(tmp_path / "cut")
    assert ref_w.keys() == cut_w.keys()
    for k in ref_w:
        torch.testing.assert_close(cut_w[k], ref_w[k], atol=1e-6, rtol=0)
    summary = json.loads((tmp_path / "cut" / "summary.json").read_text())
    assert summary["iterations"] == iterations


def test_two_process_torchrun_gradients_equal_one_process_on_the_whole_batch(tmp_path, repo_root):
    one, two = tmp_path / "one.pt", tmp_path / "two.pt"
    run_worker(repo_root, "tests/rl/ddp_grad_worker.py", one)
    run_worker(repo_root, "tests/rl/ddp_grad_worker.py", two, ranks=2)
    g1, g2 = torch.load(one), torch.load(two)
    assert g1.keys() == g2.keys() and len(g1) > 10
    for k in g1:
        torch.testing.assert_close(g2[k], g1[k], atol=1e-6, rtol=1e-5)
    assert any(g.abs().sum() > 0 for g in g1.values())


def test_non_finite_updates_are_skipped_then_the_run_stops(tiny_cfg, monkeypatch):
    cfg = tiny_cfg(
        ript={"iterations": 10, "max_consecutive_skips": 2}, bc={"demos_per_task": 0, "steps": 0}
    )
    original = PI0Actor.log_prob

    def nan_log_prob(self, inputs, records):
        return original(self, inputs, records) * float("nan")

    with Trainer(cfg, progress=False) as trainer:
        decisions = fixed_decisions(trainer.policy, n=4)
        trainer.collect_groups = lambda: (
            decisions,
            {"train/success_rate": 0.5, "ript/kept_groups": 1},
        )
        before = {k: v.clone() for k, v in trainer.policy.state_dict().items()}
        monkeypatch.setattr(PI0Actor, "log_prob", nan_log_prob)
        trainer.history["eval_before"] = 0.0  # skip the initial evaluation
        with pytest.raises(TrainingError, match="2 updates in a row had a non-finite loss"):
            trainer.run()
        assert trainer.iteration == 2  # the updates logged as iterations 1 and 2 were skipped
        for k, v in trainer.policy.state_dict().items():
            assert torch.equal(v, before[k]), k
        assert not trainer.optimizer.state  # AdamW never stepped


def test_bad_configs_fail_before_any_work(tiny_cfg, tmp_path):
    with pytest.raises(ValueError, match="group_size must be >= 2"):
        Trainer(tiny_cfg(ript={"group_size": 1}))
    with pytest.raises(ValueError, match=r"has no task\(s\) \['reach-purple'\]"):
        Trainer(tiny_cfg(env={"tasks": ["reach-purple"]}))
    with pytest.raises(ValueError, match="also training contexts"):
        Trainer(tiny_cfg(env={"eval_init_states": "5:12"}))
    with pytest.raises(TrainingError, match="no complete checkpoint"):
        Trainer(tiny_cfg(), resume=True)
    with pytest.raises(ValueError, match="optim.moments 'int4': use 'fp32' or '8bit'"):
        Trainer(tiny_cfg(optim={"moments": "int4"}))
    with pytest.raises(ValueError, match="optim.moments '8bit' with update.distributed 'fsdp'"):
        Trainer(tiny_cfg(optim={"moments": "8bit"}, update={"distributed": "fsdp"}))
    assert not (tmp_path / "run").exists()  # nothing was created


def test_8bit_moments_without_bitsandbytes_fail_before_any_work(tiny_cfg, tmp_path, monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util,
        "find_spec",
        lambda name, *a: None if name == "bitsandbytes" else real(name, *a),
    )
    with pytest.raises(ValueError, match=r"needs bitsandbytes.*pip install 'ript-core\[bnb\]'"):
        Trainer(tiny_cfg(optim={"moments": "8bit"}))
    assert not (tmp_path / "run").exists()


def test_rss_stays_flat_over_200_short_iterations(tiny_cfg):
    cfg = tiny_cfg(
        ript={
            "iterations": 200,
            "group_size": 2,
            "groups_per_iteration": 1,
            "max_sampling_rounds": 1,
        },
        env={"max_steps": 10, "replan_every": 10},
        bc={"demos_per_task": 0, "steps": 0},
        checkpoint_every=1000,
    )
    rss = []
    with Trainer(cfg, progress=False) as trainer:
        trainer.history["eval_before"] = 0.0
        trainer.evaluate = lambda tag: type("R", (), {"rate": 0.0, "metrics": lambda self: {}})()
        original = trainer.collect_groups

        def tracked():
            if trainer.iteration in (20, 199):
                rss.append(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)  # KiB on Linux
            return original()

        trainer.collect_groups = tracked
        trainer.run()
    growth_mb = (rss[1] - rss[0]) / 1024
    print(f"RSS growth over iterations 20-199: {growth_mb:.1f} MB")
    assert growth_mb < 64, f"RSS grew by {growth_mb:.1f} MB"
    assert np.isfinite(growth_mb)


def test_the_trainer_builds_the_policy_once_whatever_the_number_of_env_workers(
    tiny_cfg, monkeypatch
):
    from ript_core.policy import PI0Policy

    built = []
    original = PI0Policy.__init__

    def counting_init(self, *args, **kwargs):
        built.append(1)
        original(self, *args, **kwargs)

    monkeypatch.setattr(PI0Policy, "__init__", counting_init)
    cfg = tiny_cfg(
        rollout={"n_workers": 2}, ript={"iterations": 1}, bc={"demos_per_task": 0, "steps": 0}
    )
    with Trainer(cfg, progress=False) as trainer:
        summary = trainer.run()
        assert trainer.pool.n == 2  # two env processes really ran the rollouts
    assert summary["iterations"] == 1
    assert len(built) == 1  # ...and one policy served them all


def test_torch_threads_is_validated_and_applied(tiny_cfg):
    with pytest.raises(ValueError, match="torch_threads must be >= 1"):
        Trainer(tiny_cfg(torch_threads=0))
    before = torch.get_num_threads()
    try:
        with Trainer(tiny_cfg(torch_threads=1), progress=False):
            assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)


def test_without_progress_bars_the_results_still_print(tiny_cfg, capsys):
    # `--quiet` hides the bars, not the evaluation tables and the summary
    with Trainer(tiny_cfg(ript={"iterations": 1}, checkpoint_every=0), progress=False) as trainer:
        trainer.run()
    out = capsys.readouterr().out
    assert "evaluation (before RIPT" in out and "evaluation (after RIPT" in out
    assert "success rate on held-out init states:" in out
