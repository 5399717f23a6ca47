"""``update.time_comm``: the update's collectives timed (ript_core/rl/commtime.py)
without changing a gradient; on CPU with gloo and 2 ranks for both the DDP
and the FSDP path (``tests/rl/comm_timing_worker.py``)."""

import time
from pathlib import Path

import pytest
import torch

from ript_core.rl.commtime import KINDS, CommTimer, TimedAllGather, TimedReduceScatter
from tests.rl.fixtures import run_worker


def test_comm_timer_sums_per_kind_and_resets_on_collect():
    timer = CommTimer("cpu")
    with timer.wall("all_reduce"):
        time.sleep(0.02)
    with timer.stream("all_gather"):  # on CPU: wall time too
        time.sleep(0.01)
    with timer.wall("all_reduce"):
        time.sleep(0.02)
    seconds = timer.collect()
    assert set(seconds) == set(KINDS)  # every kind, zeros included: same keys on every rank
    assert 0.04 <= seconds["all_reduce"] < 0.5
    assert 0.01 <= seconds["all_gather"] < 0.5
    assert seconds["wait"] == seconds["reduce_scatter"] == 0.0
    assert timer.collect() == dict.fromkeys(KINDS, 0.0)


def test_timed_fsdp_comms_allocate_like_fsdps_default():
    timer = CommTimer()
    for comm in (TimedAllGather(timer), TimedReduceScatter(timer)):
        buf = comm.allocate((6,), dtype=torch.bfloat16, device=torch.device("cpu"))
        assert buf.shape == (6,) and buf.dtype == torch.bfloat16


@pytest.fixture(scope="module")
def two_ranks(tmp_path_factory: pytest.TempPathFactory, repo_root: Path) -> dict:
    out = tmp_path_factory.mktemp("commtime") / "result.pt"
    run_worker(repo_root, "tests/rl/comm_timing_worker.py", out, ranks=2)
    return torch.load(out, weights_only=False)


@pytest.mark.parametrize("mode", ["ddp", "fsdp"])
def test_timing_the_collectives_changes_no_gradient(two_ranks, mode):
    run = two_ranks[mode]
    plain, timed = run["plain"], run["timed"]
    assert plain.keys() == timed.keys() and len(plain) > 10
    for k in plain:
        assert torch.equal(timed[k], plain[k]), k
    assert any(g.abs().sum() > 0 for g in plain.values())


def test_ddp_path_times_the_all_reduce_and_the_wait_before_it(two_ranks):
    s = two_ranks["ddp"]["seconds"]
    assert s["all_reduce"] > 0 and s["wait"] > 0
    assert s["all_gather"] == s["reduce_scatter"] == 0.0  # nothing sharded


def test_fsdp_path_times_fsdps_own_all_gathers_and_reduce_scatters(two_ranks):
    run = two_ranks["fsdp"]
    assert run["installed"]  # this torch has FSDP2's custom-comm API
    s = run["seconds"]
    assert s["all_gather"] > 0 and s["reduce_scatter"] > 0
    assert s["all_reduce"] > 0  # the replicated leftovers still go through the all-reduce


def test_checkpoint_every_zero_means_never_and_negative_is_refused():
    from ript_core.rl.config import TrainConfig

    TrainConfig(checkpoint_every=0, init_checkpoint="ckpt").check()
    with pytest.raises(ValueError, match="checkpoint_every must be >= 0"):
        TrainConfig(checkpoint_every=-1).check()
