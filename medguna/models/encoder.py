"""The Encoder interface the rest of medguna uses, and the MedCLIP-ViT factory behind it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm
from transformers import PreTrainedTokenizerBase

from medguna.config import DEMO_CHECKPOINT, TEST_SIZE_CHECKPOINT
from medguna.errors import CheckpointError, ConfigError, DataError
from medguna.models.checkpoint import load_medclip_checkpoint
from medguna.models.demo_encoder import demo_checkpoint_dir
from medguna.models.medclip import MedClipModel, parameter_counts
from medguna.models.medclip_config import DEMO_NAME, test_size_config
from medguna.models.prompted import INSERTIONS, prompted_image_features
from medguna.models.registry import register_encoder
from medguna.models.test_size import ensure_test_size_checkpoint
from medguna.models.tokenizer import (
    VOCAB_FILE_NAME,
    load_tokenizer,
    tokenizer_fingerprint,
)


class Encoder(nn.Module):
    """A CLIP-style encoder: normalised text embeddings, raw (optionally prompted) image features.

    Nothing is frozen here; the caller decides what trains.
    """

    def __init__(
        self, model: MedClipModel, tokenizer: PreTrainedTokenizerBase, info: dict[str, Any]
    ) -> None:
        super().__init__()
        self.model = model
        self.tokenizer = tokenizer
        self.info = info
        self.train(model.training)  # a loaded model is in eval mode; the wrapper says the same

    @property
    def embed_dim(self) -> int:
        return self.model.config.projection_dim

    @property
    def prompt_dim(self) -> int:
        return self.model.config.prompt_dim

    @property
    def image_size(self) -> int:
        return int(self.model.config.vision["image_size"])

    @property
    def max_text_tokens(self) -> int:
        """Longest text the text tower takes, [CLS] and [SEP] included: its position embeddings
        (512 for Bio_ClinicalBERT, as the reference, which never truncates; 128 at test size)."""
        return int(self.model.config.text["max_position_embeddings"])

    @property
    def device(self) -> torch.device:
        return self.model.logit_scale.device

    def encode_texts(
        self, texts: list[str], batch_size: int = 64, progress: bool = False
    ) -> torch.Tensor:
        """(N, embed_dim) L2-normalised text embeddings, in the order of `texts`.

        Texts are batched by token length (less padding); the masked token mean makes each row
        equal to encoding that text alone. Only texts over `max_text_tokens` are truncated.
        """
        if isinstance(texts, str) or not all(isinstance(text, str) for text in texts):
            raise ConfigError("encode_texts takes a list of strings")
        if batch_size < 1:
            raise ConfigError(f"batch_size must be >= 1, got {batch_size}")
        if not texts:
            return torch.empty(0, self.embed_dim, device=self.device)
        limit = self.max_text_tokens
        lengths = [len(ids) for ids in self.tokenizer(list(texts), truncation=True, max_length=limit)["input_ids"]]
        order = sorted(range(len(texts)), key=lambda index: lengths[index])
        rows: list[torch.Tensor] = []
        starts = range(0, len(order), batch_size)
        for start in tqdm(starts, desc="encoding texts", disable=not progress):
            batch = [texts[index] for index in order[start : start + batch_size]]
            tokens = self.tokenizer(
                batch,
                padding=True,
                truncation=True,
                max_length=limit,
                return_tensors="pt",
            ).to(self.device)
            features = self.model.text_model(tokens["input_ids"], tokens["attention_mask"])
            rows.append(F.normalize(features, dim=-1))
        sorted_embeddings = torch.cat(rows)
        embeddings = torch.empty_like(sorted_embeddings)
        embeddings[torch.tensor(order, device=embeddings.device)] = sorted_embeddings
        return embeddings

    def image_features(
        self,
        pixels: torch.Tensor,
        prompts: torch.Tensor | None = None,
        insertion: str = "grid",
    ) -> torch.Tensor:
        """(B, 1|3, 224, 224) pixels -> (B, embed_dim) raw projected features (not normalised).

        prompts: (L, prompt_dim) learnable tokens, or None for the plain encoder;
        insertion: "grid" (image stays on its grid, any L) or "reference" (MedUnA's).
        """
        if (
            pixels.dim() != 4
            or pixels.shape[1] not in (1, 3)
            or tuple(pixels.shape[2:]) != (self.image_size, self.image_size)
        ):
            raise DataError(
                f"pixels must have shape (B, 1 or 3, {self.image_size}, {self.image_size}); "
                f"got {tuple(pixels.shape)}: resize/crop images to {self.image_size} first"
            )
        if insertion not in INSERTIONS:
            raise ConfigError(f"unknown prompt insertion {insertion!r}; choose one of {INSERTIONS}")
        return prompted_image_features(self.model.vision_model, pixels, prompts, insertion)

    def forward(
        self, pixels: torch.Tensor, prompts: torch.Tensor | None = None, insertion: str = "grid"
    ) -> torch.Tensor:
        return self.image_features(pixels, prompts, insertion)


def tokenizer_folder(tokenizer: str | None, weights: Path) -> Path:
    """The folder holding Bio_ClinicalBERT's vocab.txt: the one given, or the checkpoint's own."""
    if tokenizer is not None:
        folder = Path(tokenizer).expanduser()
        if not (folder / VOCAB_FILE_NAME).is_file():
            raise CheckpointError(f"tokenizer folder {folder} has no {VOCAB_FILE_NAME}: pass the folder of "
                                  "Bio_ClinicalBERT's vocab.txt (check-model --tokenizer DIR)")
        return folder
    if (weights.parent / VOCAB_FILE_NAME).is_file():
        return weights.parent
    raise CheckpointError(
        f"no tokenizer given and no {VOCAB_FILE_NAME} beside {weights}: pass tokenizer=<folder of "
        "Bio_ClinicalBERT's vocab.txt> (check-model --tokenizer DIR)"
    )


@register_encoder("medclip-vit")
def build_medclip_vit(
    checkpoint: str | None,
    tokenizer: str | None,
    *,
    cache_dir: str | Path | None,
    vocab_texts: list[str] | None,
) -> Encoder:
    """MedCLIP-ViT from a local checkpoint; None or "demo": the shipped demonstration encoder;
    "test-size": the same architecture with random weights, built offline."""
    if checkpoint == TEST_SIZE_CHECKPOINT:
        if cache_dir is None or not vocab_texts:
            raise ConfigError(
                "the test-size model needs cache_dir and vocab_texts (the texts its vocabulary is "
                "built from). Pass checkpoint=<folder of the MedCLIP-ViT release> for the real model."
            )
        source: str | Path = ensure_test_size_checkpoint(cache_dir, vocab_texts)
    elif checkpoint is None or checkpoint == DEMO_CHECKPOINT:
        source = demo_checkpoint_dir()
    else:
        source = checkpoint
    loaded = load_medclip_checkpoint(source)
    tokenizer_dir = tokenizer_folder(tokenizer, loaded.weights_path)
    text_tokenizer = load_tokenizer(tokenizer_dir)
    vocab_rows = loaded.config.text["vocab_size"]
    if len(text_tokenizer) > vocab_rows:
        raise CheckpointError(
            f"tokenizer {tokenizer_dir} has {len(text_tokenizer)} tokens but the checkpoint embeds "
            f"{vocab_rows}: use the tokenizer that belongs to this checkpoint"
        )
    is_demo = loaded.config.name == DEMO_NAME
    is_test_size = loaded.config.name == test_size_config().name
    info = {
        "encoder": "medclip-vit",
        # A demonstration encoder is labelled as one wherever it was loaded from (pretrain-demo --out
        # DIR included), so its results can never read as MedCLIP's.
        "checkpoint": (DEMO_CHECKPOINT if is_demo else TEST_SIZE_CHECKPOINT
                       if checkpoint == TEST_SIZE_CHECKPOINT else str(loaded.weights_path)),
        "checkpoint_path": str(loaded.weights_path),
        "checkpoint_sha256": loaded.sha256,
        "is_test_size": is_test_size,
        "is_demo": is_demo,
        "tokenizer": str(tokenizer_dir),
        "tokenizer_sha256": tokenizer_fingerprint(tokenizer_dir),
        "parameters": parameter_counts(loaded.model),
        "load_report": {"entries": loaded.report.total_entries, **loaded.report.counts()},
    }
    return Encoder(loaded.model, text_tokenizer, info)
