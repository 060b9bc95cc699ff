"""The student of stage 2: learnable visual prompt tokens and the adapter, on the frozen encoder."""

from __future__ import annotations

import torch
from torch import nn

from medguna.method.teacher import student_logits

# The reference initialises its prompt tokens uniformly in [-0.0833, 0.0833] (docs/method.md §4).
PROMPT_INIT_BOUND = 0.0833


class Student(nn.Module):
    """Trainable part of stage 2: prompt tokens and the student adapter.

    The frozen encoder is held outside the module tree, so checkpoints and DDP see only what trains.
    In training mode the prompted forward goes through `image_forward(pixels, prompts)` (the trial
    compiles it once checked); evaluation, at other batch sizes and without gradients, goes through
    its `eager` form.
    """

    def __init__(self, encoder, adapter: nn.Module, prompt_length: int, image_forward,
                 normalize_features: bool, generator: torch.Generator) -> None:
        super().__init__()
        self.__dict__["encoder"] = encoder
        self.__dict__["image_forward"] = image_forward
        self.adapter = adapter
        self.normalize_features = normalize_features
        if prompt_length > 0:
            init = torch.empty(prompt_length, encoder.prompt_dim)
            init.uniform_(-PROMPT_INIT_BOUND, PROMPT_INIT_BOUND, generator=generator)
            self.prompts = nn.Parameter(init)
        else:
            self.prompts = None

    def forward(self, pixels: torch.Tensor | None = None, features: torch.Tensor | None = None):
        if features is None:
            image_forward = self.image_forward if self.training else self.image_forward.eager
            features = image_forward(pixels, self.prompts)
        return student_logits(self.adapter, features.float(), normalize=self.normalize_features)
