"""What every text-generation back-end offers: sampling settings in, completions out."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Protocol

from medguna.errors import ConfigError


@dataclass(frozen=True)
class SamplingSettings:
    """How completions are sampled; part of every cache key and of the provenance."""

    temperature: float = 0.99  # MedUnA's value
    top_p: float = 1.0
    max_tokens: int = 256
    seed: int | None = None  # None: the HTTP back-end sends no seed; the HF back-end uses 0

    def __post_init__(self) -> None:
        if not self.temperature > 0:
            raise ConfigError(
                f"temperature must be > 0 for sampling, got {self.temperature}; "
                "MedUnA used 0.99"
            )
        if not 0 < self.top_p <= 1:
            raise ConfigError(f"top_p must be in (0, 1], got {self.top_p}")
        if self.max_tokens < 1:
            raise ConfigError(f"max_tokens must be >= 1, got {self.max_tokens}")

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Completion:
    """One sampled answer; finish_reason "length" means the text was cut off."""

    text: str
    finish_reason: str | None = None


class Backend(Protocol):
    """A source of completions. `identity` names it in cache keys and provenance."""

    @property
    def identity(self) -> dict[str, str]:
        """Backend kind, model and (credential-free) location; never secrets."""
        ...

    def complete(
        self, prompt: str, sampling: SamplingSettings, count: int, first_index: int
    ) -> list[Completion]:
        """Sample up to `count` completions of `prompt` (possibly fewer: callers ask again).

        `first_index` is the sample index of the first completion asked for, so that seeded
        back-ends give different samples to different indices.
        """
        ...

    def close(self) -> None:
        """Release connections or memory."""
        ...
