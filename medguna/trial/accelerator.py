"""The trial's accelerate setup: precision, device, and an Accelerator a reused worker can make again."""

from __future__ import annotations

import torch

from medguna.config import TrialConfig


def mixed_precision(cfg: TrialConfig) -> str:
    choice = cfg.runtime.mixed_precision
    if choice != "auto":
        return choice
    if cfg.method.variant == "reference":  # the reference trains in fp32 (docs/method.md §4)
        return "no"
    if not cfg.runtime.cpu and torch.cuda.is_available() and torch.cuda.is_bf16_supported():
        return "bf16"
    return "no"


def device_name(device: torch.device) -> str:
    """What a result row records as the device: the GPU's model, not only its index."""
    if device.type == "cuda":
        return f"cuda ({torch.cuda.get_device_name(device)})"
    return device.type


def make_accelerator(cfg: TrialConfig):
    from accelerate import Accelerator
    from accelerate.state import AcceleratorState, PartialState

    # AcceleratorState is a per-process singleton: reset it so trials of different precision can
    # share a reused Ray actor. PartialState holds the device: a CPU trial before a GPU one in the
    # same process would otherwise leave the GPU trial on the CPU.
    want_cpu = cfg.runtime.cpu or not torch.cuda.is_available()
    stale_device = bool(PartialState._shared_state) and (PartialState().device.type == "cpu") != want_cpu
    AcceleratorState._reset_state(reset_partial_state=stale_device)
    return Accelerator(mixed_precision=mixed_precision(cfg), cpu=cfg.runtime.cpu)
