"""Observability of faults (issue 34): discarded episodes, worker restarts and
skipped steps reach metrics.jsonl, summary.json and the end-of-run line."""

import json

from ript_core.rl.config import RiptSection
from ript_core.rl.contexts import Context, ContextSampler
from ript_core.rl.ript import collect_groups
from ript_core.rl.trainer import FAULT_COUNTERS, Trainer
from ript_core.rollout.runner import RolloutStats
from tests.rl.fixtures import fixed_decisions


class DiscardingRunner:
    """Every episode fails (reward 0) and each call re-ran ``discarded`` of them."""

    def __init__(self, discarded: int) -> None:
        self.discarded = discarded

    def run(self, requests):
        rollouts = [
            type("R", (), {"success": False, "steps": [], "metrics": {}})() for _ in requests
        ]
        return rollouts, RolloutStats(episodes=len(requests), discarded_episodes=self.discarded)


def test_discarded_episodes_of_every_sampling_round_reach_the_metrics():
    sampler = ContextSampler([Context("toy", "reach-red", i) for i in range(10)], seed=0)
    cfg = RiptSection(group_size=2, groups_per_iteration=2, max_sampling_rounds=3)
    _, metrics = collect_groups(DiscardingRunner(2), sampler, cfg, seed=(0, 0), iteration=0)
    assert metrics["ript/sampling_rounds"] == 3  # nothing informative: every round ran
    assert metrics["rollout/discarded_episodes"] == 6


def test_fault_counters_reach_metrics_jsonl_summary_and_the_last_line(tiny_cfg, capsys):
    cfg = tiny_cfg(ript={"iterations": 2}, bc={"demos_per_task": 0, "steps": 0})
    with Trainer(cfg, progress=False) as trainer:
        decisions = fixed_decisions(trainer.policy, n=4)
        trainer.collect_groups = lambda: (
            decisions,
            {"train/success_rate": 0.5, "ript/kept_groups": 1, "rollout/discarded_episodes": 3},
        )
        summary = trainer.run()
    rows = [json.loads(x) for x in (trainer.run_dir / "metrics.jsonl").read_text().splitlines()]
    counted = {
        r["iteration"]: r["faults/discarded_episodes"]
        for r in rows
        if "faults/discarded_episodes" in r
    }
    assert counted == {1: 3, 2: 6}  # cumulative over the run
    assert all(f"faults/{k}" in rows[-2] for k in FAULT_COUNTERS)
    assert summary["discarded_episodes"] == 6 and summary["skipped_steps"] == 0
    assert (
        "faults: 6 discarded episodes, 0 worker restarts, 0 skipped steps"
        in capsys.readouterr().out
    )


def test_fault_counters_survive_a_resume(tiny_cfg):
    cfg = tiny_cfg(ript={"iterations": 1}, bc={"demos_per_task": 0, "steps": 0})

    def run(trainer):
        decisions = fixed_decisions(trainer.policy, n=4)
        trainer.collect_groups = lambda: (
            decisions,
            {"train/success_rate": 0.5, "ript/kept_groups": 1, "rollout/discarded_episodes": 2},
        )
        return trainer.run()

    with Trainer(cfg, progress=False) as trainer:
        run(trainer)
    longer = tiny_cfg(ript={"iterations": 2}, bc={"demos_per_task": 0, "steps": 0})
    with Trainer(longer, resume=True, progress=False) as trainer:
        summary = run(trainer)
    assert summary["discarded_episodes"] == 4
