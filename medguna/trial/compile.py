"""torch.compile of the prompted student's image forward, checked against eager before it is used.

Stage 2 of a prompted trial is almost all one function: the frozen Swin's forward with prompt
tokens, and the backward to those tokens. Compiling it is worth the most on a GPU. A compile can
fail (no C++ compiler, an unsupported op, a torch bug), and a compiled graph could differ from
eager, so the first training batch is run both ways, forward and input-gradient backward: the
compiled forward is used only when it succeeds and matches; otherwise the trial goes on in eager
and says why in its rows (`student_compile`).

Compiled code is kept in an inductor cache beside medguna's other caches (storage.cache_dir), so
the trials of a study, on the same node, compile once and then load.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import torch

# The check's tolerance: relative to the features' scale, loose enough for bf16 kernels that fuse
# differently, tight enough to catch a wrong graph (which is off by O(1)).
RELATIVE_TOLERANCE = {torch.float32: 1e-3, torch.bfloat16: 3e-2, torch.float16: 1e-2}


def compile_backend(choice: str, device: torch.device) -> str | None:
    """The torch.compile backend a runtime.compile_student choice means here; None = eager."""
    if choice == "auto":
        return "inductor" if device.type == "cuda" else None
    return None if choice == "off" else choice


def use_inductor_cache(cache_dir: str | os.PathLike) -> Path:
    """Point inductor's on-disk cache at medguna's cache folder unless the user already chose one."""
    folder = Path(os.environ.get("TORCHINDUCTOR_CACHE_DIR") or Path(cache_dir).resolve() / "inductor")
    os.environ["TORCHINDUCTOR_CACHE_DIR"] = str(folder)
    return folder


def _relative_error(got: torch.Tensor, want: torch.Tensor) -> float:
    got, want = got.detach().float(), want.detach().float()
    return float((got - want).abs().max() / want.abs().max().clamp_min(1e-6))


class StudentForward:
    """`image_features(pixels, prompts)` for the student: compiled once checked, else eager."""

    def __init__(self, encoder, insertion: str, backend: str | None) -> None:
        self.encoder = encoder
        self.insertion = insertion
        self.backend = backend
        self.status = "off" if backend is None else "pending"  # -> compiled:<backend> | fallback: ...
        self._compiled = None

    def eager(self, pixels: torch.Tensor, prompts: torch.Tensor | None) -> torch.Tensor:
        return self.encoder.image_features(pixels, prompts=prompts, insertion=self.insertion)

    def __call__(self, pixels: torch.Tensor, prompts: torch.Tensor | None) -> torch.Tensor:
        if self.status == "pending":
            self._check(pixels, prompts)
        if self._compiled is not None:
            return self._compiled(pixels, prompts)
        return self.eager(pixels, prompts)

    def _fall_back(self, reason: str) -> None:
        self._compiled = None
        self.status = f"fallback: {reason}"
        warnings.warn(f"medguna: the compiled student is not used ({reason}); training in eager mode",
                      RuntimeWarning, stacklevel=3)

    def _check(self, pixels: torch.Tensor, prompts: torch.Tensor | None) -> None:
        """Compile, then run this batch both ways (features and the prompts' gradient) and compare."""
        if prompts is None:  # prompt-free students never reach the image forward in training
            self.status = "off"
            return
        pixels = pixels.detach()
        probe = prompts.detach().clone().requires_grad_(True)
        try:
            compiled = torch.compile(self.eager, backend=self.backend, dynamic=False)
            got = compiled(pixels, probe)
            (got_grad,) = torch.autograd.grad(got.float().square().mean(), probe)
        except Exception as error:  # noqa: BLE001 - any failure to compile means: use eager
            first_line = (str(error).strip().splitlines() or [""])[0][:200]
            self._fall_back(f"{type(error).__name__}: {first_line}")
            return
        want = self.eager(pixels, probe)
        (want_grad,) = torch.autograd.grad(want.float().square().mean(), probe)
        tolerance = RELATIVE_TOLERANCE.get(want.dtype, 1e-3)
        errors = (_relative_error(got, want), _relative_error(got_grad, want_grad))
        if max(errors) > tolerance:
            self._fall_back(f"compiled output differs from eager (relative error {max(errors):.2g} "
                            f"> {tolerance:g})")
            return
        self._compiled = compiled
        self.status = f"compiled:{self.backend}"
