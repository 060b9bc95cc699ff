"""torch.profiler over a few stage-2 steps (runtime.profile_steps), for finding where a step goes.

The trace (`profile/*.pt.trace.json`, open it in Perfetto or chrome://tracing) and `profile.txt`
(the top operators and kernels by self time, and which scaled-dot-product-attention kernels ran)
are written into the trial's log folder. Profiling slows the steps it records, so a profiled
trial's images/s is not a throughput figure.
"""

from __future__ import annotations

from pathlib import Path

import torch

# Unrecorded first steps (one skipped, one profiler warm-up): allocator warm-up, the compile check,
# cuDNN/cuBLAS autotuning.
WAIT_STEPS = 2
TOP_ROWS = 25


class NoProfiler:
    def start(self) -> None: ...
    def step(self) -> None: ...
    def stop(self) -> None: ...


def attention_kernels(averages) -> list[str]:
    """Names of the attention operators that ran (which SDPA backend torch picked)."""
    return sorted({event.key for event in averages if "scaled_dot_product" in event.key
                   or "flash" in event.key.lower() or "fmha" in event.key.lower()})


def profile_table(profiler, device: torch.device, recorded: int) -> str:
    averages = profiler.key_averages()
    sort_by = "self_cuda_time_total" if device.type == "cuda" else "self_cpu_time_total"
    kernels = attention_kernels(averages)
    header = [(f"# torch.profiler: {recorded} recorded stage-2 steps on {device.type}, "
              f"sorted by {sort_by}"),
              "# attention operators/kernels seen: " + (", ".join(kernels) if kernels else "none"), ""]
    return "\n".join(header) + averages.table(sort_by=sort_by, row_limit=TOP_ROWS) + "\n"


class StepProfiler:
    """Records steps WAIT_STEPS+1 .. WAIT_STEPS+steps of one epoch, then writes what it saw."""

    def __init__(self, steps: int, device: torch.device, out_dir: str | Path | None) -> None:
        from torch.profiler import ProfilerActivity, profile, schedule, tensorboard_trace_handler

        self.device = device
        self.out_dir = None if out_dir is None else Path(out_dir)
        activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
        handler = None if self.out_dir is None else tensorboard_trace_handler(str(self.out_dir / "profile"))
        self.steps = steps
        self.profiler = profile(activities=activities, record_shapes=True,
                                schedule=schedule(wait=WAIT_STEPS - 1, warmup=1, active=steps, repeat=1),
                                on_trace_ready=handler)
        self.table: str | None = None

    def start(self) -> None:
        self.profiler.start()

    def step(self) -> None:
        self.profiler.step()

    def stop(self) -> None:
        self.profiler.stop()
        if self.profiler.step_num <= WAIT_STEPS:
            self.table = "# torch.profiler: the epoch ended before any step was recorded\n"
        else:
            recorded = min(self.profiler.step_num - WAIT_STEPS, self.steps)
            self.table = profile_table(self.profiler, self.device, recorded)
        if self.out_dir is None:
            print(self.table, flush=True)
        else:
            self.out_dir.mkdir(parents=True, exist_ok=True)
            (self.out_dir / "profile.txt").write_text(self.table)


def step_profiler(steps: int, device: torch.device, out_dir, first_epoch: bool):
    """A StepProfiler for the first epoch a trial trains when steps > 0; otherwise one that does nothing."""
    return StepProfiler(steps, device, out_dir) if steps > 0 and first_epoch else NoProfiler()
