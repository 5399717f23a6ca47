"""bench/multigpu_scaling.py on CPU: one real 1-rank ``torchrun ... -m ript_core
train`` run read back from the trainer's own logs, and the scaling arithmetic
on logged iterations, so the bench cannot rot between multi-GPU machines."""

from __future__ import annotations

import json
from typing import Any

import pytest


@pytest.fixture(scope="module")
def bench(load_bench):
    return load_bench("multigpu_scaling")


def test_one_rank_run_is_launched_with_torchrun_and_read_back_from_its_logs(bench, tmp_path):
    argv = [
        "--cpu", "--ranks", "1", "--modes", "ddp", "--iterations", "1", "--warmup", "1",
        "--groups", "1", "--group-size", "2", "--max-steps", "10",
        "--work-dir", str(tmp_path / "work"), "--out", str(tmp_path / "out"),
    ]  # fmt: skip
    result = bench.main(argv)
    (run,) = result["runs"]
    assert run["status"] == "ok", run.get("log_tail")
    assert (
        "torch.distributed.run --standalone --nproc_per_node 1 -m ript_core train" in run["command"]
    )
    run_dir = tmp_path / "work" / "ddp_n1"
    lines = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]
    iterations = [d for d in lines if "time/iteration_s" in d]
    assert [d["iteration"] for d in iterations] == [1, 2]
    for d in iterations:
        # one group of 2 rollouts kept whatever its rewards: the update always ran
        assert d["ript/kept_groups"] == 1 and d["train/episodes"] == 2
        assert d["update/optimizer_steps"] == 1 and d["ript/decisions"] > 0
        assert 0 < d["time/rollout_s"] + d["time/update_s"] <= d["time/iteration_s"]
    timed = iterations[1:]  # the warm-up iteration is dropped
    summary = run["summary"]
    assert summary["timed_iterations"] == 1
    assert summary["samples_per_s"] == pytest.approx(
        sum(d["train/env_steps"] for d in timed) / sum(d["time/iteration_s"] for d in timed)
    )
    assert summary["iteration_s"] == pytest.approx(timed[0]["time/iteration_s"])
    assert run["efficiency"] == 1.0  # N=1 is its own baseline
    assert summary["update_comm_share"] == 0.0  # one process: no collective ran
    plan = run["plan"]
    assert plan["world_size"] == 1 and plan["distributed"] == run["resolved_mode"] == "ddp"
    (rank,) = plan["ranks"]
    assert rank["env_workers"] == bench.usable_cores()  # cores // N
    assert rank["torch_threads"] == 1 and rank["micro_batch"] >= 1
    assert not (run_dir / "checkpoints").exists()  # checkpoint_every: 0
    saved = json.loads((tmp_path / "out" / "multigpu_scaling_cpu.json").read_text())
    assert saved["meta"]["commands"] == ["python bench/multigpu_scaling.py " + " ".join(argv)]
    assert "| 1 | ddp (ddp) | float32 |" in saved["table_markdown"]


def iterations(
    steps: float, wall: float, update: float, ar: float = 0.0, ag: float = 0.0, rs: float = 0.0
) -> list[dict[str, Any]]:
    """Three logged iterations (the first a slow warm-up) with per-rank means."""
    one = {
        "train/env_steps": steps,
        "train/episodes": steps / 10,
        "ript/decisions": steps / 5,
        "time/iteration_s": wall,
        "time/rollout_s": wall - update,
        "time/update_s": update,
        "time/update_comm_all_reduce_s": ar,
        "time/update_comm_all_gather_s": ag,
        "time/update_comm_reduce_scatter_s": rs,
        "time/update_comm_wait_s": 0.1,
    }
    return [{**one, "iteration": 1, "time/iteration_s": 99.0}] + [
        {**one, "iteration": i} for i in (2, 3)
    ]


def test_efficiency_and_comm_share_from_logged_iterations(bench):
    one = bench.summarize_run(iterations(100, 2.0, 1.0), n=1, warmup=1)
    assert one["samples_per_s"] == pytest.approx(50.0)  # the 99 s warm-up is dropped
    two = bench.summarize_run(iterations(100, 2.5, 1.5, ar=0.3), n=2, warmup=1)
    assert two["env_steps_per_iteration"] == pytest.approx(200)  # mean per rank x N
    assert two["samples_per_s"] == pytest.approx(80.0)
    assert two["update_comm_share"] == pytest.approx(0.2)  # the wait is not transfer
    fsdp = bench.summarize_run(iterations(100, 4.0, 3.0, ar=0.1, ag=0.8, rs=0.3), n=2, warmup=1)
    assert fsdp["update_comm_share"] == pytest.approx(0.4)
    runs = [
        {"n": 1, "mode": "ddp", "dtype": "float32", "status": "ok", "summary": one},
        {"n": 2, "mode": "ddp", "dtype": "float32", "status": "ok", "summary": two},
        {"n": 2, "mode": "fsdp", "dtype": "float32", "status": "ok", "summary": fsdp},
        {"n": 4, "mode": "ddp", "dtype": "float32", "status": "failed", "error": "OOM | x"},
    ]
    bench.add_efficiency(runs)
    assert runs[0]["efficiency"] == 1.0
    assert runs[1]["efficiency"] == pytest.approx(80.0 / (2 * 50.0))
    # no N=1 fsdp run: one process runs the same plain code, so N=1 ddp is the baseline
    assert runs[2]["baseline"] == "N=1 ddp"
    assert runs[2]["efficiency"] == pytest.approx(50.0 / (2 * 50.0))
    assert runs[3]["efficiency"] is None
    table = bench.markdown_table(runs)
    assert "| 2 | ddp (?) | float32 | 2.5 |" in table and "| 0.80 |" in table
    assert "| 4 | ddp | float32 | failed: OOM / x |" in table


def test_a_failed_runs_error_is_the_ranks_own_not_torchruns_summary(bench):
    log = [
        "error: policy.strategy='expert' with update.distributed=fsdp is not supported; ",
        "set update.distributed: ddp",
        "W1125 15:53:28.161000 19130 api.py:1028] Sending process 19134 closing signal SIGTERM",
        "Traceback (most recent call last):",
        "torch.distributed.elastic.multiprocessing.errors.ChildFailedError: ",
    ]
    assert bench.root_cause(log) == (
        "error: policy.strategy='expert' with update.distributed=fsdp is not supported; "
        "set update.distributed: ddp"
    )
    oom = ["Traceback (most recent call last):", "torch.OutOfMemoryError: CUDA out of memory."]
    assert bench.root_cause(oom) == "torch.OutOfMemoryError: CUDA out of memory."
