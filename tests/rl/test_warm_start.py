"""The BC warm start: its demos' source is checked before any work, and
bc.target_success stops BC once its success on bc.check_init_states reaches a target."""

import numpy as np
import pytest
import torch

from ript_core.rl import trainer as trainer_module
from ript_core.rl.demos import behaviour_clone, record_demos, save_demos
from ript_core.rl.evaluate import EvalResult, TaskResult, evaluate
from ript_core.rl.rollout_setup import select_tasks
from ript_core.rl.trainer import Trainer

CHECKED = {"steps": 6, "check_every": 2, "check_init_states": "20:26"}


def test_behaviour_clone_asks_every_check_every_steps_and_stops_when_told(tiny_cfg):
    with Trainer(tiny_cfg(), progress=False) as trainer:
        trainer.warm_start()  # demos and stats; the clone below continues from here
        asked = []

        def stop_at_four(step: int) -> bool:
            asked.append(step)
            return step == 4

        losses = behaviour_clone(
            trainer.policy,
            trainer.demos,
            10,
            8,
            1e-3,
            seed=0,
            progress=False,
            stop_check=stop_at_four,
            check_every=2,
        )
    assert asked == [2, 4]
    assert len(losses) == 4


def trajectories(result: EvalResult) -> list[tuple]:
    """What each episode did: its context, length, outcome and every state the policy saw."""
    return [
        (
            str(r.request.init_state),
            r.length,
            r.success,
            [s.policy_input.state.tolist() for s in r.steps],
        )
        for r in sorted(result.rollouts, key=lambda r: (r.request.task, r.request.init_state))
    ]


def test_the_check_is_the_policys_own_ode_success_on_the_check_states(
    tiny_cfg, tmp_path, monkeypatch, capsys
):
    seen = []

    def recorded(*args, **kwargs):
        seen.append(evaluate(*args, **kwargs))
        return seen[-1]

    monkeypatch.setattr(trainer_module, "evaluate", recorded)
    # target 1.0 is never reached: every check runs, and BC takes all its steps
    bc = {**CHECKED, "target_success": 1.0}
    with Trainer(tiny_cfg(tmp_path / "a", bc=bc), progress=False) as trainer:
        trainer.warm_start()
        checks = trainer.history["bc_checks"]
        assert trainer.history["bc_steps"] == 6
    assert [step for step, _ in checks] == [2, 4]  # not at the last step: BC ends there anyway
    assert "without reaching bc.target_success=100%" in capsys.readouterr().out
    assert len(seen) == 2 and seen[1].episodes == 12  # 6 init states x 2 tasks, one episode each
    assert checks[1][1] == seen[1].rate

    # independent reference: a plain BC of 4 steps (same seed, same batches),
    # evaluated on the check states with the check's seed
    monkeypatch.undo()
    with Trainer(tiny_cfg(tmp_path / "b", bc={"steps": 4}), progress=False) as plain:
        plain.warm_start()
        contexts = select_tasks("toy", plain.cfg.env.tasks).contexts("20:26")
        ref = evaluate(plain.eval_runner, contexts, 1, seed=plain.cfg.seed + 5)
    assert trajectories(seen[1]) == trajectories(ref)
    assert trajectories(seen[0]) != trajectories(ref)  # the policy moved between the checks


def test_bc_stops_at_the_first_check_that_reaches_the_target(
    tiny_cfg, tmp_path, monkeypatch, capsys
):
    def always_solved(runner, contexts, episodes, seed):
        return EvalResult([TaskResult("reach-red", len(contexts), len(contexts))], [])

    monkeypatch.setattr(trainer_module, "evaluate", always_solved)
    bc = {**CHECKED, "target_success": 0.5}
    with Trainer(tiny_cfg(tmp_path / "a", bc=bc), progress=False) as trainer:
        trainer.warm_start()
        assert trainer.history["bc_steps"] == 2
        assert trainer.history["bc_checks"] == [[2, 1.0]]
        stopped = {k: v.clone() for k, v in trainer.policy.state_dict().items()}
    assert "without reaching" not in capsys.readouterr().out
    monkeypatch.undo()
    with Trainer(tiny_cfg(tmp_path / "b", bc={"steps": 2}), progress=False) as plain:
        plain.warm_start()
        for name, value in plain.policy.state_dict().items():
            assert torch.equal(value, stopped[name]), name


@pytest.mark.parametrize(
    ("bc", "message"),
    [
        ({"target_success": 0.3}, "bc.check_init_states is empty"),
        ({"target_success": 1.5, "check_init_states": "20:26"}, "bc.target_success must be in"),
        (
            {"target_success": 0.3, "check_init_states": "20:26", "check_every": 0},
            "bc.check_every must be >= 1",
        ),
        ({"target_success": 0.3, "check_init_states": "40:42"}, "overlap env.eval_init_states"),
    ],
)
def test_bad_bc_targets_fail_before_any_work(tiny_cfg, bc, message):
    with pytest.raises(ValueError, match=message):
        Trainer(tiny_cfg(bc=bc), progress=False)


def toy_demo_file(path, init_states, backend="toy"):
    demos = record_demos("toy", ["reach-red"], init_states, chunk=4, seed=0)
    return save_demos(demos, path, {"backend": backend, "init_states": list(init_states)})


@pytest.mark.parametrize(
    ("demo_file", "message"),
    [
        (None, "does not exist"),
        ({"init_states": [0, 1], "backend": "libero"}, "recorded on backend 'libero'"),
        ({"init_states": [1, 41], "backend": "toy"}, r"held out for evaluation \(\[41\]"),
    ],
)
def test_a_bad_demo_file_fails_before_the_policy_is_built(
    tiny_cfg, tmp_path, monkeypatch, demo_file, message
):
    path = tmp_path / "demos.npz"
    if demo_file:
        toy_demo_file(path, demo_file["init_states"], demo_file["backend"])

    def not_reached(*args, **kwargs):
        raise AssertionError("the policy was built before the demo file was checked")

    monkeypatch.setattr(trainer_module.PI0Policy, "from_config", not_reached)
    with pytest.raises(ValueError, match=message):
        Trainer(tiny_cfg(bc={"demos_per_task": 0, "demos_file": str(path)}), progress=False)


def test_demo_init_states_on_held_out_states_fail_before_the_policy_is_built(tiny_cfg, monkeypatch):
    monkeypatch.setattr(trainer_module.PI0Policy, "from_config", None)  # never reached
    with pytest.raises(ValueError, match="bc.demo_init_states overlap env.eval_init_states"):
        Trainer(tiny_cfg(bc={"demos_per_task": 4, "demo_init_states": "38:"}), progress=False)


def test_a_demo_file_is_what_bc_trains_on(tiny_cfg, tmp_path):
    path = toy_demo_file(tmp_path / "demos.npz", [3, 4, 5])
    cfg = tiny_cfg(bc={"demos_per_task": 0, "demos_file": str(path)})
    with Trainer(cfg, progress=False) as trainer:
        trainer.warm_start()
        demos, chunk = trainer.demos, trainer.policy.chunk_size
    # independent reference: the same expert episodes, recorded in memory
    recorded = record_demos("toy", ["reach-red"], [3, 4, 5], chunk=chunk, seed=0)
    assert (demos.episodes, demos.successes) == (recorded.episodes, recorded.successes) == (3, 3)
    assert np.array_equal(demos.chunks, recorded.chunks)
    assert np.array_equal(demos.is_pad, recorded.is_pad)
    assert [i.state.tolist() for i in demos.inputs] == [i.state.tolist() for i in recorded.inputs]
