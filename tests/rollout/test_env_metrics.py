"""An env's own counts (``info["metrics"]``, e.g. a robot's safety
interventions) reach each rollout and, summed, the iteration's metrics."""

from ript_core import get_registry
from ript_core.rl.config import RiptSection
from ript_core.rl.contexts import Context, ContextSampler
from ript_core.rl.ript import collect_groups
from ript_core.rollout.runner import RolloutRunner
from ript_core.rollout.workers import InProcessEnvPool


def test_env_metrics_are_kept_per_rollout_and_summed_per_iteration(fakesim, seeded_policy):
    contexts = [Context("fakesim", "count", i) for i in range(4)]
    sampler = ContextSampler(contexts, seed=0)
    cfg = RiptSection(group_size=2, groups_per_iteration=2, max_sampling_rounds=1, oversample=1.0,
                      keep_uninformative_groups=True)  # fmt: skip
    seen = []
    with InProcessEnvPool(2) as pool:
        runner = RolloutRunner(seeded_policy(dim=2), pool, replan_every=3, on_episode=seen.append)
        _, metrics = collect_groups(runner, sampler, cfg, seed=(0, 0), iteration=0)
    settle = get_registry().task_info("fakesim", "count").settle_steps  # env steps too
    assert len(seen) == 4 and settle > 0
    for r in seen:  # the fake env counts its steps
        assert r.metrics == {"fake/steps": r.length + settle}
    assert metrics["env/fake/steps"] == sum(r.length + settle for r in seen)
