"""bench/maniskill_learning.py --pool: per-seed results pooled (no plot here:
matplotlib comes with the maniskill extra only)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest


def _seed(tmp_path, name, bc, ript, curve, states="850:1000"):
    path = tmp_path / f"{name}.json"
    path.write_text(
        json.dumps(
            {
                "task": "maniskill/PushCube",
                "demos": {"episodes": 64},
                "demos_command": "ript record-demos ...",
                "iterations": 128,
                "env_steps": 1000,
                "wall_s": 60,
                "command": f"ript train {name}.yaml",
                "target": "+20 points over BC from a BC success in [0.15, 0.70]",
                "curve": {"held_out_success": curve},
                "extra_evals": [
                    {
                        "init_states": states,
                        "bc": {"successes": bc, "episodes": 150},
                        "ript": {"successes": ript, "episodes": 150},
                    }
                ],
            }
        )
    )
    return str(path)


def test_pooled_success_and_per_seed_lifts(load_bench, tmp_path):
    bench = load_bench("maniskill_learning")
    paths = [
        _seed(tmp_path, "s0", 53, 80, [[0, 0.38], [128, 0.58]]),
        _seed(tmp_path, "s1", 81, 117, [[0, 0.64], [128, 0.86]]),
    ]
    r = bench.pooled_result(paths)
    assert r["bc_success"] == pytest.approx(134 / 300, abs=1e-4)
    assert r["ript_success"] == pytest.approx(197 / 300, abs=1e-4)
    assert r["lift_pp"] == 21.0 and r["lift_pp_per_seed"] == [18.0, 24.0]
    # binomial s.e. of a difference of two 150-episode rates
    se = 100 * ((53 / 150 * 97 / 150 + 80 / 150 * 70 / 150) / 150) ** 0.5
    assert r["seeds"][0]["lift_se_pp"] == pytest.approx(se, abs=0.05)
    assert r["env_steps"] == 2000 and r["wall_s"] == 120 and r["target_reached"] is True
    # below the target pooled, or a BC outside [15 %, 70 %]: not reached
    low = [_seed(tmp_path, "a", 53, 70, [[0, 0.4]]), _seed(tmp_path, "b", 81, 100, [[0, 0.6]])]
    assert bench.pooled_result(low)["target_reached"] is False
    high = [_seed(tmp_path, "c", 120, 150, [[0, 0.8]])]
    assert bench.pooled_result(high)["target_reached"] is False


def test_seeds_on_different_held_out_sets_are_refused(load_bench, tmp_path):
    bench = load_bench("maniskill_learning")
    paths = [
        _seed(tmp_path, "s0", 53, 80, [[0, 0.38]]),
        _seed(tmp_path, "s1", 81, 117, [[0, 0.64]], states="900:950"),
    ]
    with pytest.raises(SystemExit, match="different held-out sets"):
        bench.pooled_result(paths)


def test_without_an_extra_evaluation_the_runs_own_curve_is_pooled(load_bench, tmp_path):
    bench = load_bench("maniskill_learning")
    paths = []
    for name, curve in (("r0", [[0, 0.66], [8, 0.7]]), ("r1", [[0, 0.64], [8, 0.8]])):
        path = tmp_path / f"{name}.json"
        seed = json.loads(Path(_seed(tmp_path, name, 0, 0, curve)).read_text())
        del seed["extra_evals"]
        seed.update(eval_episodes=50, eval_init_states="900:950")
        path.write_text(json.dumps(seed))
        paths.append(str(path))
    r = bench.pooled_result(paths)
    # first point = BC, last = RIPT, 50 episodes each
    assert r["bc_success"] == pytest.approx((33 + 32) / 100)
    assert r["ript_success"] == pytest.approx((35 + 40) / 100)
    assert r["lift_pp_per_seed"] == [4.0, 16.0] and r["held_out"].startswith("init states 900:950")
    only_bc = json.loads(Path(paths[0]).read_text())
    only_bc["curve"]["held_out_success"] = [[0, 0.66]]
    Path(paths[0]).write_text(json.dumps(only_bc))
    with pytest.raises(SystemExit, match="a held-out curve with a RIPT point"):
        bench.pooled_result(paths)


def test_a_second_held_out_set_is_pooled_alone_and_with_the_headline(load_bench, tmp_path):
    bench = load_bench("maniskill_learning")
    paths = []
    for name, bc, ript, (bc2, ript2) in (("q0", 53, 80, (40, 70)), ("q1", 81, 117, (60, 84))):
        seed = json.loads(Path(_seed(tmp_path, name, bc, ript, [[0, 0.4]])).read_text())
        seed["second_held_out"] = {
            "mode": "ode",
            "init_states": "800:900",
            "bc": {"successes": bc2, "episodes": 100},
            "ript": {"successes": ript2, "episodes": 100},
        }
        Path(tmp_path / f"{name}.json").write_text(json.dumps(seed))
        paths.append(str(tmp_path / f"{name}.json"))
    r = bench.pooled_result(paths)
    assert r["lift_pp"] == 21.0  # the headline stays the extra evaluation
    second, both = r["second_held_out"], r["both_held_out"]
    assert second["bc_success"] == pytest.approx(100 / 200)
    assert second["ript_success"] == pytest.approx(154 / 200)
    assert second["lift_pp"] == 27.0 and second["lift_pp_per_seed"] == [30.0, 24.0]
    # both sets: 300 + 200 episodes a side
    assert both["bc_success"] == pytest.approx((134 + 100) / 500, abs=1e-4)
    assert both["ript_success"] == pytest.approx((197 + 154) / 500, abs=1e-4)
    assert both["lift_pp"] == pytest.approx(100 * (197 + 154 - 134 - 100) / 500, abs=0.05)
    # without it on every seed, nothing is pooled; on different sets, refused
    del seed["second_held_out"]
    Path(paths[1]).write_text(json.dumps(seed))
    assert "second_held_out" not in bench.pooled_result(paths)
    seed["second_held_out"] = {
        "mode": "ode",
        "init_states": "700:800",
        "bc": {"successes": 1, "episodes": 100},
        "ript": {"successes": 2, "episodes": 100},
    }
    Path(paths[1]).write_text(json.dumps(seed))
    with pytest.raises(SystemExit, match="second held-out sets differ"):
        bench.pooled_result(paths)
