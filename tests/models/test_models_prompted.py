"""The prompted Swin path: MedUnA's reference insertion and medguna's grid insertion."""

from __future__ import annotations

import pytest
import torch

from medguna.errors import ConfigError
from medguna.models.prompted import (
    grid_block_forward,
    grid_prompted_features,
    reference_prompted_features,
    valid_reference_lengths,
)


@pytest.fixture(scope="module")
def pixels() -> torch.Tensor:
    return torch.randn(2, 3, 224, 224, generator=torch.Generator().manual_seed(1))


def _prompts(length: int, width: int = 24, seed: int = 0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return (torch.rand(length, width, generator=generator) * 2 - 1) * 0.0833


def test_valid_reference_lengths_by_hand():
    assert valid_reference_lengths(56, 4) == [0, 113, 228, 345]  # 57^2-3136, 58^2-3136, ...


def test_zero_prompts_equal_plain_encoder(encoder, pixels):
    with torch.no_grad():
        plain = encoder.image_features(pixels)
        grid = encoder.image_features(pixels, _prompts(0), insertion="grid")
        reference = encoder.image_features(pixels, _prompts(0), insertion="reference")
    torch.testing.assert_close(grid, plain, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(reference, plain, atol=1e-6, rtol=1e-6)


@pytest.mark.parametrize("length", [7, 50, 113])
def test_grid_takes_any_length(encoder, pixels, length):
    with torch.no_grad():
        plain = encoder.image_features(pixels[:1])
        prompted = encoder.image_features(pixels[:1], _prompts(length), insertion="grid")
    assert prompted.shape == (1, 512) and torch.isfinite(prompted).all()
    assert not torch.allclose(prompted, plain)


def _stage_grids(vision_model, run) -> list[tuple[int, int]]:
    grids: list[tuple[int, int]] = []

    def record(_module, args, _kwargs):
        grids.append(tuple(args[1]))

    hooks = [
        stage.register_forward_pre_hook(record, with_kwargs=True)
        for stage in vision_model.model.encoder.layers
    ]
    try:
        with torch.no_grad():
            run()
    finally:
        for hook in hooks:
            hook.remove()
    return grids


def test_reference_113_runs_on_57_grid_and_shifts_every_stage(encoder, pixels):
    vision = encoder.model.vision_model
    grids = _stage_grids(vision, lambda: reference_prompted_features(vision, pixels, _prompts(113)))
    assert grids == [(57, 57), (29, 29), (15, 15), (8, 8)]
    plain_grids = _stage_grids(vision, lambda: vision(pixels))
    assert plain_grids == [(56, 56), (28, 28), (14, 14), (7, 7)]


def test_reference_rejects_lengths_off_the_square_and_names_nearest(encoder, pixels):
    with pytest.raises(ConfigError, match=r"prompt_length 50 .*nearest valid lengths: \[0, 113\]"):
        encoder.image_features(pixels, _prompts(50), insertion="reference")
    with pytest.raises(ConfigError, match=r"nearest valid lengths: \[113, 228\]"):
        encoder.image_features(pixels, _prompts(200), insertion="reference")


def test_prompt_width_must_match_embed_dim(encoder, pixels):
    with pytest.raises(ConfigError, match="prompt width 96 does not match the Swin embed_dim 24"):
        encoder.image_features(pixels, torch.zeros(5, 96))


def test_grid_keeps_patch_positions_perturbation_stays_in_its_window(encoder):
    swin = encoder.model.vision_model.model
    block = swin.encoder.layers[0].blocks[0]  # unshifted windows of 7x7 patches
    image = torch.randn(1, 3, 224, 224, generator=torch.Generator().manual_seed(2))
    changed = image.clone()
    changed[:, :, 40:44, 40:44] += 1.0  # patch (row 10, col 10): window rows/cols 7..13
    prompts = _prompts(11).unsqueeze(0)
    with torch.no_grad():
        outputs = []
        for pixels in (image, changed):
            tokens, dims = swin.embeddings(pixels)
            outputs.append(grid_block_forward(block, tokens, prompts, dims))
    (image_a, prompts_a), (image_b, prompts_b) = outputs
    moved = (image_a - image_b).abs().amax(dim=-1).view(56, 56) > 0
    window = torch.zeros(56, 56, dtype=torch.bool)
    window[7:14, 7:14] = True
    assert moved[10, 10] and moved.sum() > 1
    assert not moved[~window].any()
    # prompts see the image only through its mean, so they do change
    assert not torch.equal(prompts_a, prompts_b)


def test_gradients_reach_prompts_not_frozen_encoder(encoder, pixels):
    prompts = _prompts(9).requires_grad_(True)
    encoder.zero_grad(set_to_none=True)
    for parameter in encoder.parameters():
        parameter.requires_grad_(False)
    try:
        features = grid_prompted_features(encoder.model.vision_model, pixels[:1], prompts)
        features.square().sum().backward()
        assert prompts.grad is not None and prompts.grad.abs().sum() > 0
        assert all(parameter.grad is None for parameter in encoder.parameters())
    finally:
        for parameter in encoder.parameters():
            parameter.requires_grad_(True)


def test_reference_gradients_reach_prompts(encoder, pixels):
    prompts = _prompts(113).requires_grad_(True)
    features = reference_prompted_features(encoder.model.vision_model, pixels[:1], prompts)
    features.sum().backward()
    assert prompts.grad is not None and prompts.grad.abs().sum() > 0
    encoder.zero_grad(set_to_none=True)


def test_batched_prompts_shape(encoder, pixels):
    with torch.no_grad():
        shared = encoder.image_features(pixels, _prompts(5))
        per_image = encoder.image_features(pixels, _prompts(5).expand(2, -1, -1))
    torch.testing.assert_close(shared, per_image)
    with pytest.raises(ConfigError, match=r"prompts must have shape"):
        encoder.image_features(pixels, torch.zeros(3, 5, 24))


def test_reference_output_does_not_depend_on_call_order(encoder, pixels):
    # transformers clamps Swin's shift as a side effect of a 7x7 forward; medguna fixes it at
    # build time, so a reference forward gives the same result before and after a plain one.
    vision = encoder.model.vision_model
    with torch.no_grad():
        first = reference_prompted_features(vision, pixels[:1], _prompts(113))
        vision(pixels[:1])
        again = reference_prompted_features(vision, pixels[:1], _prompts(113))
    assert torch.equal(first, again)
    last_stage = vision.model.encoder.layers[-1]
    assert [block.shift_size for block in last_stage.blocks] == [0, 0]
