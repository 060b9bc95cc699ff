"""A trial's memory: its peak, recorded in every result row, and giving it back before a reused
worker (`resources.reuse_actors`) runs the next trial.

PyTorch's caching allocator keeps freed GPU blocks reserved for the process, so on a shared
(fractional) GPU a worker that ran one trial would hold that trial's peak memory through the next
ones, and a later, larger trial on the same device could run out of memory.
"""

from __future__ import annotations

import gc
import resource

import torch


def release_memory() -> None:
    """Collect the finished trial's objects (reference cycles included) and return the GPU blocks
    they held to the driver, so other trials on the device can use them."""
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def reset_peak_memory(device: torch.device) -> None:
    """Start this trial's peak-memory count, so a reused worker does not report an earlier trial's peak."""
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
        return
    try:  # Linux: writing 5 to clear_refs resets the process's peak RSS (VmHWM)
        with open("/proc/self/clear_refs", "w") as handle:
            handle.write("5")
    except OSError:
        pass


def peak_memory_mb(device: torch.device) -> float:
    """Peak memory since reset_peak_memory: CUDA allocations, or the process's peak RSS on CPU.

    The RSS includes pages of the memory-mapped image cache this trial touched; those are shared
    page cache, not a private copy per trial.
    """
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    try:
        with open("/proc/self/status") as handle:
            for line in handle:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024  # kB
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB
