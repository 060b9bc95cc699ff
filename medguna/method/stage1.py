"""Stage 1 (docs/method.md §3): train the adapter on text embeddings alone, then freeze a teacher copy."""

from __future__ import annotations

import copy

import torch
from torch import nn

from medguna.errors import ConfigError
from medguna.method.losses import label_smoothing_cross_entropy


def _check_stage1_inputs(
    adapter: nn.Module,
    text_embeddings: torch.Tensor,
    labels: torch.Tensor,
    steps: int,
    noise_std: float,
    lr: float,
) -> None:
    if text_embeddings.dim() != 2 or text_embeddings.shape[0] == 0:
        raise ConfigError(
            "text_embeddings must have shape (N, embed_dim) with N >= 1, "
            f"got {tuple(text_embeddings.shape)}"
        )
    if labels.shape != text_embeddings.shape[:1]:
        raise ConfigError(
            f"labels must have shape ({text_embeddings.shape[0]},) to match text_embeddings, "
            f"got {tuple(labels.shape)}"
        )
    if labels.dtype not in (torch.int64, torch.int32, torch.int16, torch.uint8):
        raise ConfigError(f"labels must be integer class indices, got dtype {labels.dtype}")
    embed_dim = getattr(adapter, "embed_dim", None)
    if embed_dim is not None and embed_dim != text_embeddings.shape[1]:
        raise ConfigError(
            f"the adapter expects {embed_dim}-d features but text_embeddings are "
            f"{text_embeddings.shape[1]}-d: build the adapter with the encoder's embed_dim"
        )
    num_classes = getattr(adapter, "num_classes", None)
    if num_classes is not None and (labels.min() < 0 or labels.max() >= num_classes):
        raise ConfigError(
            f"labels must lie in [0, {num_classes}) for a {num_classes}-class adapter, "
            f"got values {int(labels.min())}..{int(labels.max())}"
        )
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise ConfigError(f"stage1 steps must be a positive integer, got {steps!r}")
    if noise_std < 0:
        raise ConfigError(f"stage1 noise_std must be >= 0, got {noise_std}")
    if lr <= 0:
        raise ConfigError(f"stage1 lr must be > 0, got {lr}")


def train_text_adapter(
    adapter: nn.Module,
    text_embeddings: torch.Tensor,
    labels: torch.Tensor,
    *,
    steps: int = 4000,
    noise_std: float = 0.1,
    lr: float = 5e-4,
    weight_decay: float = 0.01,
    betas: tuple[float, float] = (0.9, 0.999),
    label_smoothing: float = 0.1,
    generator: torch.Generator | None = None,
    device: torch.device | str | None = None,
) -> list[float]:
    """Train ``adapter`` in place on all N text embeddings per step; return the loss of each step.

    Every step uses the full batch plus fresh Gaussian noise of std ``noise_std`` per dimension
    (the noise stands in for the text-image modality gap), label-smoothed cross-entropy, and AdamW
    at a constant lr. ``device`` moves the adapter there (None: stay where its parameters are);
    ``generator`` must live on that device and makes the noise reproducible.
    """
    _check_stage1_inputs(adapter, text_embeddings, labels, steps, noise_std, lr)
    if device is not None:
        adapter.to(device)
    first_param = next(adapter.parameters(), None)
    if first_param is None:
        raise ConfigError("the adapter has no parameters to train")
    target_device = first_param.device
    embeddings = text_embeddings.detach().to(target_device, first_param.dtype)
    targets = labels.to(target_device, torch.int64)
    optimizer = torch.optim.AdamW(
        adapter.parameters(), lr=lr, betas=betas, weight_decay=weight_decay
    )
    # Losses stay on the device until the end: a .item() per step would stall a GPU 4000 times.
    losses = torch.empty(steps, device=target_device)
    noisy_embeddings = torch.empty_like(embeddings)  # reused: no 1 MB allocation per step
    adapter.train()
    for step in range(steps):
        noisy_embeddings.normal_(0.0, noise_std, generator=generator).add_(embeddings)
        logits = adapter(noisy_embeddings)
        loss = label_smoothing_cross_entropy(logits, targets, label_smoothing)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        losses[step] = loss.detach()
    return losses.tolist()


def make_teacher(adapter: nn.Module) -> nn.Module:
    """A frozen deep copy of the stage-1 adapter: no gradients, eval mode, never updated."""
    teacher = copy.deepcopy(adapter)
    teacher.requires_grad_(False)
    teacher.eval()
    return teacher
