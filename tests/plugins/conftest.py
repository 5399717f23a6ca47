"""Fixtures every backend's tests use."""

from __future__ import annotations

import pytest
import torch


@pytest.fixture
def one_torch_thread():
    # the two env workers need the 2 cores more than the tiny policy does
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
