"""The rollout process's torch thread count (ript_core/rl/host_threads.py)."""

import pytest
import torch

from ript_core.rl.host_threads import apply_rollout_threads, rollout_threads
from ript_core.rl.trainer import Trainer


@pytest.fixture
def restore_threads():
    before = torch.get_num_threads()
    yield before
    torch.set_num_threads(before)


def test_unset_means_one_thread_off_the_cpu_and_the_default_on_it():
    assert rollout_threads(None, torch.device("cuda", 0)) == 1
    assert rollout_threads(None, torch.device("mps")) == 1
    assert rollout_threads(None, torch.device("cpu")) is None


def test_a_configured_count_wins_and_is_validated():
    assert rollout_threads(3, torch.device("cuda")) == 3
    assert rollout_threads(2, torch.device("cpu")) == 2
    with pytest.raises(ValueError, match="torch_threads must be >= 1"):
        rollout_threads(0, torch.device("cuda"))


def test_apply_sets_the_count_only_when_there_is_a_choice(restore_threads):
    torch.set_num_threads(2)
    assert apply_rollout_threads(None, torch.device("cpu")) == 2  # torch's setting stands
    assert torch.get_num_threads() == 2
    # a device object is enough: no GPU is touched
    assert apply_rollout_threads(None, torch.device("cuda")) == 1
    assert torch.get_num_threads() == 1
    assert apply_rollout_threads(2, torch.device("cuda")) == 2


def test_the_trainer_leaves_a_cpu_policy_s_threads_alone(tiny_cfg, restore_threads):
    torch.set_num_threads(2)
    with Trainer(tiny_cfg(torch_threads=None), progress=False) as trainer:
        assert trainer.policy.device.type == "cpu"
        assert torch.get_num_threads() == 2
