"""Generate a description file: prompt, sample (cached), clean, count, write with provenance."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path

from tqdm import tqdm

from medguna.data.datasets import DatasetSpec
from medguna.errors import ConfigError, DescriptionError
from medguna.text.describe.backends import Backend, Completion, SamplingSettings
from medguna.text.describe.cache import CompletionCache, cache_key_fields
from medguna.text.describe.cleaning import (
    CleaningRules,
    clean_completion,
    deduplicate,
    raw_sentence_count,
)
from medguna.text.describe.prompts import PROMPT_FAMILIES, ClassPrompt, build_prompts
from medguna.text.describe.provenance import build_provenance, provenance_path, write_json


@dataclass
class DescribeResult:
    """What a run produced: sentences per class (label order) and how many survived cleaning."""

    descriptions: dict[str, list[str]]
    counts: dict[str, dict[str, int]]
    requests_sent: int = 0
    samples_from_cache: int = 0
    out_file: Path | None = None
    provenance_file: Path | None = None
    prompts: list[ClassPrompt] = field(default_factory=list)


def sample_prompt(
    prompt: ClassPrompt,
    backend: Backend,
    cache: CompletionCache,
    sampling: SamplingSettings,
    samples: int,
    max_per_request: int,
    progress: tqdm,
) -> tuple[list[Completion], int, int]:
    """`samples` completions of one prompt, from the cache where possible.

    Returns the completions (by sample index), the requests sent and the cache hits.
    """
    identity = backend.identity
    keys = [cache_key_fields(identity["backend"], identity["model"], prompt.text, sampling, index)
            for index in range(samples)]
    completions: list[Completion | None] = [cache.get(key) for key in keys]
    missing = [index for index, completion in enumerate(completions) if completion is None]
    hits = samples - len(missing)
    progress.update(hits)
    requests = 0
    while missing:
        asked = min(len(missing), max_per_request)
        # A server may return fewer choices than asked (Ollama ignores n): ask again for the rest.
        answers = backend.complete(prompt.text, sampling, asked, first_index=missing[0])[:asked]
        requests += 1
        if not answers:
            raise DescriptionError(
                f"{identity['backend']} back-end returned no completion for {prompt.text!r}"
            )
        for index, answer in zip(missing, answers):
            cache.put(keys[index], answer)  # at once, so a kill loses at most one request
            completions[index] = answer
        missing = missing[len(answers):]
        progress.update(len(answers))
    return [completion for completion in completions if completion is not None], requests, hits


def describe_dataset(
    spec: DatasetSpec,
    backend: Backend,
    cache: CompletionCache,
    out_file: str | Path,
    sampling: SamplingSettings | None = None,
    samples_per_prompt: int = 10,
    families: tuple[str, ...] = tuple(PROMPT_FAMILIES),
    rules: CleaningRules | None = None,
    max_per_request: int = 8,
    min_sentences: int = 1,
    show_progress: bool = True,
) -> DescribeResult:
    """Write `out_file` ({class: [sentence, ...]} in label order) and its provenance sidecar."""
    if samples_per_prompt < 1:
        raise ConfigError(f"--samples must be >= 1, got {samples_per_prompt}")
    if max_per_request < 1:
        raise ConfigError(f"--max-per-request must be >= 1, got {max_per_request}")
    out_file = Path(out_file)
    sampling = sampling or SamplingSettings()
    rules = rules or CleaningRules()
    prompts = build_prompts(spec, families)
    by_class: dict[str, list[tuple[ClassPrompt, list[Completion]]]] = {c: [] for c in spec.classes}
    requests_sent = samples_from_cache = 0
    with tqdm(total=len(prompts) * samples_per_prompt, desc=f"describe {spec.name}",
              unit="sample", disable=not show_progress) as progress:
        for prompt in prompts:
            completions, requests, hits = sample_prompt(
                prompt, backend, cache, sampling, samples_per_prompt, max_per_request, progress
            )
            by_class[prompt.class_name].append((prompt, completions))
            requests_sent += requests
            samples_from_cache += hits

    descriptions: dict[str, list[str]] = {}
    counts: dict[str, dict[str, int]] = {}
    for class_name, answered in by_class.items():
        kept = [sentence for prompt, completions in answered for completion in completions
                for sentence in clean_completion(completion.text, prompt.text,
                                                 completion.finish_reason == "length", rules)]
        unique = deduplicate(kept)
        all_completions = [completion for _, completions in answered for completion in completions]
        counts[class_name] = {
            "completions": len(all_completions),
            "raw_sentences": sum(raw_sentence_count(c.text) for c in all_completions),
            "after_rules": len(kept),
            "kept": len(unique),
        }
        descriptions[class_name] = unique
    short = {name: len(sentences) for name, sentences in descriptions.items()
             if len(sentences) < min_sentences}
    if short:
        raise DescriptionError(
            f"too few sentences survived cleaning for {short} (need {min_sentences} per class); "
            "raise --samples or --max-tokens, or try another --model (answers are cached, "
            "so a rerun only pays for new samples)"
        )

    description_bytes = write_json(out_file, descriptions)
    provenance = build_provenance(
        dataset=spec.name,
        identity=backend.identity,
        sampling=sampling.as_dict(),
        samples_per_prompt=samples_per_prompt,
        prompts=[asdict(prompt) for prompt in prompts],
        cleaning=asdict(rules),
        counts=counts,
        requests_sent=requests_sent,
        samples_from_cache=samples_from_cache,
        description_file=out_file,
        description_bytes=description_bytes,
    )
    sidecar = provenance_path(out_file)
    write_json(sidecar, provenance)
    return DescribeResult(descriptions, counts, requests_sent, samples_from_cache,
                          out_file, sidecar, prompts)
