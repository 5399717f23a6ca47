"""bench/maniskill_learning.py --pool: per-seed results pooled (no plot here:
matplotlib comes with the maniskill extra only)."""

from __future__ import annotations

import json

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
