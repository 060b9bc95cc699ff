"""One registry of encoders and a small factory (open_clip / timm style)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from medguna.errors import ConfigError

if TYPE_CHECKING:
    from medguna.models.encoder import Encoder


class EncoderFactory(Protocol):
    def __call__(
        self,
        checkpoint: str | None,
        tokenizer: str | None,
        *,
        cache_dir: str | Path | None,
        vocab_texts: list[str] | None,
    ) -> Encoder: ...


_ENCODERS: dict[str, EncoderFactory] = {}


def register_encoder(name: str) -> Callable[[EncoderFactory], EncoderFactory]:
    """Decorator: make `factory` buildable as build_encoder(name, ...)."""

    def decorate(factory: EncoderFactory) -> EncoderFactory:
        if name in _ENCODERS and _ENCODERS[name] is not factory:
            raise ValueError(f"encoder name {name!r} is already registered")
        _ENCODERS[name] = factory
        return factory

    return decorate


def list_encoders() -> list[str]:
    return sorted(_ENCODERS)


def build_encoder(
    name: str = "medclip-vit",
    checkpoint: str | None = None,
    tokenizer: str | None = None,
    *,
    cache_dir: str | Path | None = None,
    vocab_texts: list[str] | None = None,
) -> Encoder:
    """Build a registered encoder; checkpoint None (or "demo") means the shipped demonstration
    encoder, "test-size" the random-weight test-size model."""
    factory = _ENCODERS.get(name)
    if factory is None:
        raise ConfigError(f"unknown encoder {name!r}; registered encoders: {list_encoders()}")
    return factory(
        None if checkpoint is None else str(checkpoint),
        None if tokenizer is None else str(tokenizer),
        cache_dir=cache_dir,
        vocab_texts=vocab_texts,
    )
