"""Read MedCLIP-ViT checkpoints (release .bin, .safetensors, or the release zip) strictly, and
write the release layout back."""

from __future__ import annotations

import io
import os
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import safetensors.torch
import torch

from medguna.errors import CheckpointError
from medguna.hashing import file_sha256
from medguna.models.checkpoint_keys import (
    TEXT_PREFIX,
    VISION_PREFIX,
    map_checkpoint_key,
    released_buffer_value,
    released_state_dict_keys,
)
from medguna.models.medclip import MedClipModel, build_medclip
from medguna.models.medclip_config import CONFIG_FILE_NAME, MedClipConfig, full_size_config

BIN_NAME = "pytorch_model.bin"
SAFETENSORS_NAME = "model.safetensors"
RELEASE_ZIP_NAME = "medclip-vit-pretrained.zip"
_LISTED_KEYS = 12  # keys shown per problem in an error message


@dataclass
class LoadReport:
    """How every checkpoint entry was accounted for."""

    source: str
    used: list[str] = field(default_factory=list)
    recomputed: list[str] = field(default_factory=list)
    dropped: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)
    misshaped: list[tuple[str, tuple[int, ...], tuple[int, ...]]] = field(default_factory=list)

    def counts(self) -> dict[str, int]:
        return {
            "used": len(self.used),
            "recomputed": len(self.recomputed),
            "dropped": len(self.dropped),
            "missing": len(self.missing),
            "unexpected": len(self.unexpected),
            "misshaped": len(self.misshaped),
        }

    @property
    def total_entries(self) -> int:
        """Entries in the checkpoint file."""
        return (
            len(self.used)
            + len(self.recomputed)
            + len(self.dropped)
            + len(self.unexpected)
            + len(self.misshaped)
        )

    @property
    def ok(self) -> bool:
        return not (self.missing or self.unexpected or self.misshaped)

    def summary(self) -> str:
        parts = ", ".join(f"{name} {count}" for name, count in self.counts().items())
        return f"{self.total_entries} entries: {parts}"

    def raise_if_incompatible(self) -> None:
        """A partial load is never silent: any problem is a CheckpointError naming the keys."""
        if self.ok:
            return
        lines = [f"checkpoint {self.source} does not fit MedCLIP-ViT ({self.summary()})"]
        if self.misshaped:
            lines.append("keys of the wrong shape (key: expected -> found):")
            lines += [
                f"  {key}: {tuple(expected)} -> {tuple(found)}"
                for key, expected, found in self.misshaped[:_LISTED_KEYS]
            ]
        for title, keys in (("missing keys", self.missing), ("unexpected keys", self.unexpected)):
            if keys:
                lines.append(f"{title}: " + ", ".join(keys[:_LISTED_KEYS]))
                if len(keys) > _LISTED_KEYS:
                    lines[-1] += f" ... and {len(keys) - _LISTED_KEYS} more"
        lines.append(
            "Use the official medclip-vit-pretrained release (or a file written by "
            "save_released_format) with its matching medguna_medclip_config.json."
        )
        raise CheckpointError("\n".join(lines))


@dataclass
class LoadedMedClip:
    model: MedClipModel
    config: MedClipConfig
    report: LoadReport
    weights_path: Path
    sha256: str


def find_weights_file(checkpoint: str | Path) -> Path:
    """The weights file of a checkpoint directory (or the file itself)."""
    path = Path(checkpoint).expanduser()
    if not path.exists():
        raise CheckpointError(
            f"checkpoint path {path} does not exist: pass the directory holding {BIN_NAME}, "
            f"{SAFETENSORS_NAME} or {RELEASE_ZIP_NAME} (medguna never downloads weights)"
        )
    if path.is_file():
        return path
    for name in (SAFETENSORS_NAME, BIN_NAME, RELEASE_ZIP_NAME):
        if (path / name).is_file():
            return path / name
    zips = sorted(path.glob("*.zip"))
    if len(zips) == 1:
        return zips[0]
    present = sorted(p.name for p in path.iterdir())[:10]
    raise CheckpointError(
        f"no weights file in checkpoint directory {path}: expected {SAFETENSORS_NAME}, {BIN_NAME} "
        f"or {RELEASE_ZIP_NAME}; found {present or 'nothing'}. Put the downloaded MedCLIP-ViT "
        "release there."
    )


def _load_bin(source: str | io.BytesIO) -> object:
    try:
        return torch.load(
            source, map_location="cpu", weights_only=True, mmap=isinstance(source, str)
        )
    except RuntimeError as error:
        if isinstance(source, str) and "mmap" in str(error):
            # pre-1.6 (non-zip) torch files cannot be memory-mapped; read them normally
            return torch.load(source, map_location="cpu", weights_only=True)
        raise


def _read_zip_member(zip_path: Path) -> dict[str, torch.Tensor] | object:
    """Read the weights inside the release zip without extracting it to disk."""
    with zipfile.ZipFile(zip_path) as archive:
        members = [
            info
            for info in archive.infolist()
            if Path(info.filename).name in (BIN_NAME, SAFETENSORS_NAME)
        ]
        if not members:
            raise CheckpointError(
                f"zip {zip_path} holds no {BIN_NAME} or {SAFETENSORS_NAME} "
                f"(members: {archive.namelist()[:10]}); is it the MedCLIP-ViT release zip?"
            )
        member = members[0]
        data = archive.read(member)
    if member.filename.endswith(".safetensors"):
        return safetensors.torch.load(data)
    return _load_bin(io.BytesIO(data))


def read_state_dict(weights: Path) -> dict[str, torch.Tensor]:
    """Load a flat state dict with weights-only readers; unreadable files are CheckpointErrors."""
    try:
        if weights.suffix == ".zip":
            state = _read_zip_member(weights)
        elif weights.suffix == ".safetensors":
            state = safetensors.torch.load_file(str(weights), device="cpu")
        else:
            state = _load_bin(str(weights))
    except CheckpointError:
        raise
    except Exception as error:  # torch/zip/safetensors raise many types for a damaged file
        raise CheckpointError(
            f"cannot read weights file {weights}: it is truncated, corrupt or not a weights-only "
            f"file ({type(error).__name__}: {str(error)[:200]}). Download it again."
        ) from error
    if not isinstance(state, dict) or not all(
        isinstance(key, str) and isinstance(value, torch.Tensor) for key, value in state.items()
    ):
        raise CheckpointError(
            f"weights file {weights} does not hold a flat state dict of tensors "
            f"(found {type(state).__name__}); MedCLIP-ViT releases are flat state dicts"
        )
    return state


def _check_architecture(state: dict[str, torch.Tensor], source: str) -> None:
    """Name the problem when the file is some other model, instead of listing 400 keys."""
    has_vision = any(key.startswith(VISION_PREFIX) for key in state)
    has_text = any(key.startswith(TEXT_PREFIX) for key in state)
    sample = ", ".join(sorted(state)[:5])
    if not (has_vision and has_text):
        raise CheckpointError(
            f"{source} is not a MedCLIP-ViT checkpoint: expected keys under '{VISION_PREFIX}' and "
            f"'{TEXT_PREFIX}', found e.g. {sample or 'no keys'}"
        )
    if VISION_PREFIX + "embeddings.patch_embeddings.projection.weight" not in state:
        kind = "MedCLIP-ResNet" if VISION_PREFIX + "conv1.weight" in state else "an unknown model"
        raise CheckpointError(
            f"{source} is not a MedCLIP-ViT checkpoint (its vision tower looks like {kind}: "
            f"no Swin patch embedding); medguna's 'medclip-vit' encoder needs the ViT release"
        )


def map_state_dict(
    model: MedClipModel, state: dict[str, torch.Tensor], source: str
) -> tuple[dict[str, torch.Tensor], LoadReport]:
    """Translate a checkpoint to today's keys and account for every entry."""
    expected = model.state_dict()
    expected_keys = set(expected)
    report = LoadReport(source=source)
    mapped: dict[str, torch.Tensor] = {}
    for key, tensor in state.items():
        mapping = map_checkpoint_key(key, expected_keys)
        if mapping.action == "unknown":
            report.unexpected.append(key)
        elif mapping.action == "dropped":
            report.dropped.append(key)
        elif mapping.action == "recomputed":
            rebuilt = released_buffer_value(mapping.target, model.get_buffer(mapping.target))
            if tuple(rebuilt.shape) != tuple(tensor.shape):
                report.misshaped.append((key, tuple(rebuilt.shape), tuple(tensor.shape)))
            elif not torch.equal(rebuilt, tensor.to(rebuilt.dtype)):
                raise CheckpointError(
                    f"{source}: buffer {key} differs from the one rebuilt from the config "
                    "(window size or position count differ): the checkpoint does not match "
                    "this architecture"
                )
            else:
                report.recomputed.append(key)
        elif mapping.target in mapped:
            raise CheckpointError(
                f"{source}: two entries map to {mapping.target} (old and new names both present); "
                "keep one layout per file"
            )
        elif tuple(expected[mapping.target].shape) != tuple(tensor.shape):
            report.misshaped.append(
                (key, tuple(expected[mapping.target].shape), tuple(tensor.shape))
            )
        else:
            mapped[mapping.target] = tensor
            report.used.append(key)
    shaped_wrong = {map_checkpoint_key(key, expected_keys).target for key, _, _ in report.misshaped}
    report.missing = [key for key in expected if key not in mapped and key not in shaped_wrong]
    return mapped, report


def config_for_checkpoint(weights: Path) -> MedClipConfig:
    """medguna's config json beside the weights, else the official full-size architecture."""
    config_path = weights.parent / CONFIG_FILE_NAME
    return MedClipConfig.load(config_path) if config_path.is_file() else full_size_config()


def load_medclip_checkpoint(checkpoint: str | Path) -> LoadedMedClip:
    """Build MedCLIP-ViT from config and load a checkpoint into it strictly.

    The model comes back in eval mode (as from_pretrained does): Swin's drop-path and BERT's
    dropout are training-time noise, and MedUnA only ever uses MedCLIP frozen.
    """
    weights = find_weights_file(checkpoint)
    config = config_for_checkpoint(weights)
    state = read_state_dict(weights)
    _check_architecture(state, str(weights))
    model = build_medclip(config)
    mapped, report = map_state_dict(model, state, str(weights))
    report.raise_if_incompatible()
    model.load_state_dict(mapped, strict=True)
    model.eval()
    return LoadedMedClip(model, config, report, weights, file_sha256(weights))


def released_state_dict(model: MedClipModel) -> dict[str, torch.Tensor]:
    """Today's model as the flat dict MedCLIP's code saved under transformers 4.2x."""
    current = model.state_dict()
    current_keys = set(current)
    out: dict[str, torch.Tensor] = {}
    for released in released_state_dict_keys(model.config):
        mapping = map_checkpoint_key(released, current_keys)
        if mapping.action == "used":
            out[released] = current[mapping.target].detach().cpu().clone()
        elif mapping.action == "recomputed":
            buffer = model.get_buffer(mapping.target)
            out[released] = released_buffer_value(mapping.target, buffer).cpu()
        else:
            raise CheckpointError(f"released key {released} has no counterpart in today's model")
    used = {map_checkpoint_key(key, current_keys).target for key in out}
    left_over = sorted(set(current) - used)
    if left_over:
        raise CheckpointError(
            f"today's model has entries the release layout lacks: {left_over[:10]}"
        )
    return out


def save_released_format(model: MedClipModel, directory: str | Path, *, safetensors: bool = False) -> Path:
    """Write the release layout (pytorch_model.bin, or model.safetensors) plus medguna's config json.

    Returns the weights file. safetensors holds the same keys; it is what medguna ships, since it
    is read without unpickling anything.
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    target = directory / (SAFETENSORS_NAME if safetensors else BIN_NAME)
    partial = directory / f".{target.name}.{os.getpid()}.partial"
    state = released_state_dict(model)
    if safetensors:
        safetensors_save(state, partial)
    else:
        torch.save(state, partial)
    os.replace(partial, target)  # a reader never sees a half-written file
    model.config.save(directory)
    return target


def safetensors_save(state: dict[str, torch.Tensor], path: Path) -> None:
    # safetensors refuses tensors that share memory; the release's buffers are independent copies.
    safetensors.torch.save_file({k: v.contiguous() for k, v in state.items()}, str(path))
