"""Shared setup for the method tests."""

import pytest
import torch


@pytest.fixture(autouse=True)
def single_torch_thread():
    """Run these tiny-tensor tests on one intra-op thread, restoring the setting afterwards.

    On a busy 2-core machine (other suites running beside this one) two OpenMP threads waiting
    on each other made stage-1 steps about 10x slower than one thread; the tensors here are far
    too small to gain anything from parallelism.
    """
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)
