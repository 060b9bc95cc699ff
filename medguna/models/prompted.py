"""Visual prompts in the Swin tower (docs/method.md §4-5), two ways.

reference: MedUnA's insertion. Prompt tokens go into the flat patch sequence after token 0 and
    the encoder is told the longer sequence is an s x s grid. Swin has no CLS token, so this
    re-reads the 56x56 image as s x s (shearing every row) and changes all later grids
    (57/29/15/8 for L = 113); only L = (56+k)^2 - 3136 is possible.

grid (medguna's default): image tokens stay on their 56x56 grid and any L >= 0 works. The L
    prompt tokens are a separate sequence that every window can read: in each Swin block a
    window's queries attend over its 49 tokens *plus* the L prompt tokens (relative position
    bias and the shifted-window mask apply to the image-image part; prompt columns get no bias
    and no mask). The prompts are updated by the same block weights, attending to themselves
    and to the mean of the block's (normalised) image tokens, one extra key that keeps the cost
    at L x (L + 1). At each patch merging a prompt is repeated 4x and goes through the same
    norm + reduction, so its width follows the stage. Final LayerNorm and average pool cover the
    image tokens only. The loop below calls the Swin modules' own weights.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from medguna.errors import ConfigError
from medguna.models.medclip import MedClipVisionModel, repeat_gray_to_rgb

INSERTIONS = ("grid", "reference")
_SHIFT_MASK_VALUE = -100.0  # the value transformers' Swin uses, so L = 0 matches it exactly


def valid_reference_lengths(grid_side: int, count: int) -> list[int]:
    """The first `count` prompt lengths the reference insertion can take: (g+k)^2 - g^2."""
    return [(grid_side + k) ** 2 - grid_side**2 for k in range(count)]


def expand_prompts(prompts: torch.Tensor, batch_size: int, width: int) -> torch.Tensor:
    """(L, C), (1, L, C) or (B, L, C) prompts -> (B, L, C); C must be the Swin embed_dim."""
    if prompts.dim() == 2:
        prompts = prompts.unsqueeze(0)
    if prompts.dim() != 3 or prompts.shape[0] not in (1, batch_size):
        raise ConfigError(
            f"prompts must have shape (L, {width}), (1, L, {width}) or ({batch_size}, L, {width}); "
            f"got {tuple(prompts.shape)}"
        )
    if prompts.shape[-1] != width:
        raise ConfigError(
            f"prompt width {prompts.shape[-1]} does not match the Swin embed_dim {width} "
            "(Encoder.prompt_dim); create prompts of shape (L, prompt_dim)"
        )
    return prompts.expand(batch_size, -1, -1)


def reference_prompted_features(
    vision_model: MedClipVisionModel, pixels: torch.Tensor, prompts: torch.Tensor
) -> torch.Tensor:
    """MedUnA's insertion: prompts after token 0, the sequence re-read as an s x s grid."""
    swin = vision_model.model
    tokens, (height, width) = swin.embeddings(repeat_gray_to_rgb(pixels))
    prompts = expand_prompts(prompts, tokens.shape[0], tokens.shape[-1]).to(tokens.dtype)
    length = prompts.shape[1]
    total = height * width + length
    side = math.isqrt(total)
    if side * side != total or height != width:
        lengths = valid_reference_lengths(height, math.isqrt(total) - height + 3)
        nearest = sorted(lengths, key=lambda valid: (abs(valid - length), valid))[:2]
        raise ConfigError(
            f"prompt_length {length} is impossible with insertion='reference': the "
            f"{height}x{width} patches plus the prompts must form a square grid, so the length "
            f"must be (56+k)^2 - 3136; nearest valid lengths: {sorted(nearest)}. "
            "Use insertion='grid' for any length."
        )
    tokens = torch.cat([tokens[:, :1], prompts, tokens[:, 1:]], dim=1)
    encoded = swin.encoder(tokens, (side, side)).last_hidden_state
    pooled = swin.layernorm(encoded).mean(dim=1)
    return vision_model.projection_head(pooled)


def _to_windows(grid: torch.Tensor, window: int) -> torch.Tensor:
    """(B, H, W, C) -> (B, windows, window*window, C), windows in row-major order."""
    batch, height, width, channels = grid.shape
    grid = grid.view(batch, height // window, window, width // window, window, channels)
    return grid.permute(0, 1, 3, 2, 4, 5).reshape(batch, -1, window * window, channels)


def _from_windows(windows: torch.Tensor, window: int, height: int, width: int) -> torch.Tensor:
    """Inverse of _to_windows."""
    batch, channels = windows.shape[0], windows.shape[-1]
    grid = windows.view(batch, height // window, width // window, window, window, channels)
    return grid.permute(0, 1, 3, 2, 4, 5).reshape(batch, height, width, channels)


def _shift_mask(
    height: int, width: int, window: int, shift: int, device: torch.device
) -> torch.Tensor:
    """(windows, T, T) additive mask keeping shifted windows from mixing wrapped-around regions."""

    def regions(size: int) -> torch.Tensor:
        index = torch.arange(size, device=device)
        return (index >= size - window).long() + (index >= size - shift).long()

    region = regions(height)[:, None] * 3 + regions(width)[None, :]
    region_windows = _to_windows(region[None, :, :, None].float(), window)[0, :, :, 0]
    differs = region_windows[:, :, None] != region_windows[:, None, :]
    return differs.float() * _SHIFT_MASK_VALUE


def _window_and_shift(block: nn.Module, dims: tuple[int, int]) -> tuple[int, int]:
    """transformers' rule: a grid no larger than the window is one unshifted window."""
    window, shift = int(block.window_size), int(block.shift_size)
    if min(dims) <= window:
        return min(dims), 0
    return window, shift


def grid_block_forward(
    block: nn.Module, image: torch.Tensor, prompts: torch.Tensor, dims: tuple[int, int]
) -> tuple[torch.Tensor, torch.Tensor]:
    """One Swin block (a transformers SwinLayer) on image tokens (B, H*W, C) and prompts (B, L, C)."""
    attention = block.attention
    heads, head_dim = attention.num_attention_heads, attention.head_dim
    height, width = dims
    batch, _, channels = image.shape
    length = prompts.shape[1]
    window, shift = _window_and_shift(block, dims)
    bias_window = attention.relative_position_bias.window_size[0]
    if window != bias_window:
        raise ConfigError(
            f"a {height}x{width} grid needs window {window} but the relative position table is for "
            f"{bias_window}: the image size must be 224 (patch grid 56)"
        )
    attention_dropout = attention.attention_dropout if block.training else 0.0

    def split_heads(tokens: torch.Tensor) -> torch.Tensor:  # (..., T, C) -> (..., heads, T, d)
        return tokens.unflatten(-1, (heads, head_dim)).transpose(-3, -2)

    def merge_heads(tokens: torch.Tensor) -> torch.Tensor:  # (..., heads, T, d) -> (..., T, C)
        return tokens.transpose(-3, -2).flatten(-2)

    image_normed = block.layernorm_before(image)
    prompts_normed = block.layernorm_before(prompts)
    grid = image_normed.view(batch, height, width, channels)
    pad_right, pad_bottom = (-width) % window, (-height) % window
    grid = F.pad(grid, (0, 0, 0, pad_right, 0, pad_bottom))
    padded_height, padded_width = height + pad_bottom, width + pad_right
    if shift:
        grid = torch.roll(grid, shifts=(-shift, -shift), dims=(1, 2))
    windows = _to_windows(grid, window)  # (B, nW, T, C)

    query = split_heads(attention.q_proj(windows))  # (B, nW, h, T, d)
    key = split_heads(attention.k_proj(windows))
    value = split_heads(attention.v_proj(windows))
    prompt_key = split_heads(attention.k_proj(prompts_normed)).unsqueeze(1)  # (B, 1, h, L, d)
    prompt_value = split_heads(attention.v_proj(prompts_normed)).unsqueeze(1)
    window_count = windows.shape[1]
    key = torch.cat([key, prompt_key.expand(-1, window_count, -1, -1, -1)], dim=-2)
    value = torch.cat([value, prompt_value.expand(-1, window_count, -1, -1, -1)], dim=-2)

    image_bias = attention.relative_position_bias()[0]  # (h, T, T)
    if shift:
        image_bias = (
            image_bias[None]
            + _shift_mask(padded_height, padded_width, window, shift, image.device)[:, None]
        )
    else:
        image_bias = image_bias[None].expand(window_count, -1, -1, -1)
    prompt_bias = image_bias.new_zeros(*image_bias.shape[:-1], length)
    mask = torch.cat([image_bias, prompt_bias], dim=-1).to(query.dtype)  # (nW, h, T, T+L)

    attended = F.scaled_dot_product_attention(
        query, key, value, attn_mask=mask, dropout_p=attention_dropout, scale=attention.scaling
    )
    attended = block.dropout(attention.o_proj(merge_heads(attended)))  # (B, nW, T, C)
    grid = _from_windows(attended, window, padded_height, padded_width)
    if shift:
        grid = torch.roll(grid, shifts=(shift, shift), dims=(1, 2))
    attended = grid[:, :height, :width].reshape(batch, height * width, channels)
    image = image + block.drop_path(attended)
    image = image + block.dropout(block.mlp(block.layernorm_after(image)))

    if length:
        context = torch.cat([prompts_normed, image_normed.mean(dim=1, keepdim=True)], dim=1)
        prompt_attended = F.scaled_dot_product_attention(
            split_heads(attention.q_proj(prompts_normed)),
            split_heads(attention.k_proj(context)),
            split_heads(attention.v_proj(context)),
            dropout_p=attention_dropout,
            scale=attention.scaling,
        )
        prompt_attended = block.dropout(attention.o_proj(merge_heads(prompt_attended)))
        prompts = prompts + block.drop_path(prompt_attended)
        prompts = prompts + block.dropout(block.mlp(block.layernorm_after(prompts)))
    return image, prompts


def merge_prompts(downsample: nn.Module, prompts: torch.Tensor) -> torch.Tensor:
    """A prompt passes patch merging as if it filled all 4 cells: (B, L, C) -> (B, L, 2C)."""
    return downsample.reduction(downsample.norm(torch.cat([prompts] * 4, dim=-1)))


def grid_prompted_features(
    vision_model: MedClipVisionModel, pixels: torch.Tensor, prompts: torch.Tensor
) -> torch.Tensor:
    """Prompted image features with the image kept on its patch grid (any prompt length)."""
    swin = vision_model.model
    image, dims = swin.embeddings(repeat_gray_to_rgb(pixels))
    prompts = expand_prompts(prompts, image.shape[0], image.shape[-1]).to(image.dtype)
    for stage in swin.encoder.layers:
        for block in stage.blocks:
            image, prompts = grid_block_forward(block, image, prompts, dims)
        if stage.downsample is not None:
            image = stage.downsample(image, dims)
            prompts = merge_prompts(stage.downsample, prompts)
            dims = ((dims[0] + 1) // 2, (dims[1] + 1) // 2)
    pooled = swin.layernorm(image).mean(dim=1)
    return vision_model.projection_head(pooled)


def prompted_image_features(
    vision_model: MedClipVisionModel,
    pixels: torch.Tensor,
    prompts: torch.Tensor | None,
    insertion: str = "grid",
) -> torch.Tensor:
    """(B, 512) raw image features; prompts None is the plain MedCLIP forward."""
    if insertion not in INSERTIONS:
        raise ConfigError(f"unknown prompt insertion {insertion!r}; choose one of {INSERTIONS}")
    if prompts is None:
        return vision_model(pixels)
    if insertion == "reference":
        return reference_prompted_features(vision_model, pixels, prompts)
    return grid_prompted_features(vision_model, pixels, prompts)
