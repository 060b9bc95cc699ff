"""Giving a trial's memory back before a reused worker (`resources.reuse_actors`) runs the next one.

PyTorch's caching allocator keeps freed GPU blocks reserved for the process, so on a shared
(fractional) GPU a worker that ran one trial would hold that trial's peak memory through the next
ones, and a later, larger trial on the same device could run out of memory.
"""

from __future__ import annotations

import gc

import torch


def release_memory() -> None:
    """Collect the finished trial's objects (reference cycles included) and return the GPU blocks
    they held to the driver, so other trials on the device can use them."""
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
