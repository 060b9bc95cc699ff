"""MedCLIP-ViT built from configuration; attribute names mirror the released checkpoint."""

from __future__ import annotations

import torch
from torch import nn
from transformers import BertModel, SwinModel

from medguna.models.medclip_config import MedClipConfig


class MedClipVisionModel(nn.Module):
    """Swin tower: average-pooled SwinModel output, then a 512-d projection without bias."""

    def __init__(self, config: MedClipConfig) -> None:
        super().__init__()
        self.model = SwinModel(config.swin_config(), add_pooling_layer=True)
        self.projection_head = nn.Linear(config.vision_width, config.projection_dim, bias=False)
        fix_swin_window_state(self.model)

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        """(B, 1|3, H, W) pixels -> (B, projection_dim) raw (unnormalised) image features."""
        pixels = repeat_gray_to_rgb(pixels)
        pooled = self.model(pixel_values=pixels).pooler_output
        return self.projection_head(pooled)


class MedClipTextModel(nn.Module):
    """BERT tower: mean over tokens of hidden states 1, 2 and -1, averaged, then projected."""

    def __init__(self, config: MedClipConfig) -> None:
        super().__init__()
        self.model = BertModel(config.bert_config(), add_pooling_layer=True)
        self.projection_head = nn.Linear(
            config.text["hidden_size"], config.projection_dim, bias=False
        )

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """Token ids (B, T) and mask (B, T) -> (B, projection_dim) raw text features.

        MedCLIP averages over *all* positions; it only ever saw unpadded single texts, so the
        mean here is restricted to real tokens, which makes a padded batch equal to one text
        at a time.
        """
        output = self.model(
            input_ids=input_ids, attention_mask=attention_mask, output_hidden_states=True
        )
        states = output.hidden_states
        layers = torch.stack([states[1], states[2], states[-1]])  # (3, B, T, H)
        weights = attention_mask.to(layers.dtype)[None, :, :, None]  # (1, B, T, 1)
        token_mean = (layers * weights).sum(dim=2) / weights.sum(dim=2)  # (3, B, H)
        return self.projection_head(token_mean.mean(dim=0))


class MedClipModel(nn.Module):
    """The two towers and the (unused by MedUnA) CLIP temperature."""

    def __init__(self, config: MedClipConfig) -> None:
        super().__init__()
        self.config = config
        self.vision_model = MedClipVisionModel(config)
        self.text_model = MedClipTextModel(config)
        self.logit_scale = nn.Parameter(torch.tensor(float(config.logit_scale_init)))


def repeat_gray_to_rgb(pixels: torch.Tensor) -> torch.Tensor:
    """MedCLIP repeats a 1-channel image to the 3 channels Swin expects."""
    if pixels.shape[1] == 1:
        return pixels.repeat(1, 3, 1, 1)
    return pixels


def fix_swin_window_state(swin: SwinModel) -> None:
    """Apply transformers' window clamp once, from each block's configured grid.

    transformers' SwinLayer clamps window and shift *as a side effect of forward* when the grid
    is no larger than the window, so the last stage's shift depends on which input ran first
    (a 7x7 grid sets shift 0 forever; an 8x8 reference grid would otherwise keep shift 3).
    Clamping at build time, as the original Swin does, makes every forward deterministic.
    """
    for stage in swin.encoder.layers:
        for block in stage.blocks:
            block.set_shift_and_window_size(block.input_resolution)


def build_medclip(config: MedClipConfig, seed: int | None = None) -> MedClipModel:
    """Construct a MedCLIP-ViT from config; with a seed the random init is reproducible.

    The seeded path also gives the Swin relative-position tables small random values (they
    start at zero in transformers) so that a test-size model exercises the position bias.
    """
    if seed is None:
        return MedClipModel(config)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = MedClipModel(config)
        with torch.no_grad():
            for stage in model.vision_model.model.encoder.layers:
                for block in stage.blocks:
                    table = block.attention.relative_position_bias.relative_position_bias_table
                    nn.init.trunc_normal_(table, std=0.02)
    return model


def count_parameters(module: nn.Module) -> int:
    return sum(parameter.numel() for parameter in module.parameters())


def parameter_counts(model: MedClipModel) -> dict[str, int]:
    """Parameters per tower (projection heads included), as shown in Encoder.info."""
    return {
        "vision": count_parameters(model.vision_model),
        "text": count_parameters(model.text_model),
        "logit_scale": model.logit_scale.numel(),
    }
