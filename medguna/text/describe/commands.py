"""`medguna describe`: the command line of description generation."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from medguna.data.datasets import DATASETS, DatasetSpec, get_dataset
from medguna.errors import ConfigError, MedgunaError
from medguna.study_config import StorageConfig
from medguna.text.describe.backends import Backend, SamplingSettings
from medguna.text.describe.cache import DEFAULT_CACHE_DIR, CompletionCache
from medguna.text.describe.cleaning import CleaningRules
from medguna.text.describe.http_backend import API_KINDS, OpenAICompatibleBackend
from medguna.text.describe.prompts import PROMPT_FAMILIES, build_prompts
from medguna.text.describe.retry import RetryPolicy
from medguna.text.describe.run import describe_dataset
from medguna.text.describe.set_run import describe_set, summary_lines
from medguna.text.sets import SETS_SUBDIR, check_set_name, sets_dir_for


def add_commands(subparsers: argparse._SubParsersAction) -> None:
    """Register `describe` on the top-level CLI's subparsers."""
    parser = subparsers.add_parser(
        "describe",
        help="generate class descriptions for a dataset, or a description set, with an LLM",
        description="Prompt an LLM for each class of DATASET, clean the answers and write a "
                    "description file {class: [sentence, ...]} plus <FILE>.provenance.json "
                    "(--out), or write description set NAME for every dataset of a study "
                    "(--set NAME --study STUDY, or --datasets a,b,c), used as "
                    "method.description_source=set:NAME.",
    )
    parser.add_argument("dataset", metavar="DATASET", nargs="?",
                        help=f"one of: {', '.join(DATASETS)} (with --out)")
    parser.add_argument("--model", required=True,
                        help="model name served by the endpoint, or (--backend hf) a local "
                             "Hugging Face model directory")
    parser.add_argument("--out", help="description file to write (JSON), for one DATASET")
    parser.add_argument("--set", dest="set_name", metavar="NAME",
                        help="write description set NAME: one file per dataset in "
                             "<sets-dir>/NAME/, resuming where an earlier run stopped")
    which = parser.add_mutually_exclusive_group()
    which.add_argument("--study", help="with --set: every dataset of this study "
                                       "(studies/conf/study/), e.g. chestxray")
    which.add_argument("--datasets", help="with --set: comma-separated datasets, e.g. "
                                          "shenzhen,montgomery")
    parser.add_argument("--sets-dir", default=None,
                        help="folder of description sets (default: <storage.cache_dir>/"
                             f"{SETS_SUBDIR} of the study's configuration, where studies look)")
    parser.add_argument("--backend", choices=("openai", "hf"), default="openai",
                        help="OpenAI-compatible HTTP endpoint, or a local transformers model")
    parser.add_argument("--base-url", default="https://api.openai.com/v1",
                        help="endpoint base URL, e.g. http://127.0.0.1:8000/v1 for vLLM")
    parser.add_argument("--api", choices=API_KINDS, default="chat",
                        help="chat/completions or (instruct models) completions")
    parser.add_argument("--api-key-env", default="OPENAI_API_KEY",
                        help="environment variable holding the API key (optional for local "
                             "servers); the key itself is never accepted on the command line")
    parser.add_argument("--samples", "-n", type=int, default=10,
                        help="completions per prompt (each prompt family, each class)")
    parser.add_argument("--temperature", type=float, default=0.99)
    parser.add_argument("--top-p", type=float, default=1.0)
    parser.add_argument("--max-tokens", type=int, default=256)
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--families", default=",".join(PROMPT_FAMILIES),
                        help=f"comma-separated prompt families (default: all: "
                             f"{', '.join(PROMPT_FAMILIES)})")
    parser.add_argument("--max-per-request", type=int, default=8,
                        help="completions asked per HTTP request (the API's n)")
    parser.add_argument("--min-words", type=int, default=3,
                        help="drop cleaned sentences with fewer words")
    parser.add_argument("--cache-dir", default=str(DEFAULT_CACHE_DIR))
    parser.add_argument("--timeout", type=float, default=60.0, help="seconds per HTTP request")
    parser.add_argument("--max-attempts", type=int, default=6,
                        help="tries per request on 429/5xx/timeouts before giving up")
    parser.add_argument("--device", default="cpu", help="torch device for --backend hf")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    parser.set_defaults(func=run_describe)


def make_backend(args: argparse.Namespace) -> Backend:
    if args.backend == "hf":
        # Imported here: transformers is slow to import and the HTTP path does not need it.
        from medguna.text.describe.hf_backend import HuggingFaceBackend

        return HuggingFaceBackend(args.model, device=args.device)
    return OpenAICompatibleBackend(
        args.base_url,
        args.model,
        api=args.api,
        api_key=os.environ.get(args.api_key_env) or None,
        api_key_env=args.api_key_env,
        timeout_s=args.timeout,
        retry=RetryPolicy(max_attempts=args.max_attempts),
    )


def run_describe(args: argparse.Namespace) -> int:
    """Run `medguna describe`; 0 on success, 1 with a message on stderr for bad input."""
    if args.set_name is not None:
        return run_describe_set(args)
    try:
        if args.dataset is None or args.out is None or args.study or args.datasets:
            raise ConfigError(
                "name one DATASET and --out FILE, or a description set with --set NAME "
                "--study STUDY (or --datasets a,b,c)"
            )
        spec = get_dataset(args.dataset)
        sampling = SamplingSettings(args.temperature, args.top_p, args.max_tokens, args.seed)
        families = _families(args)
        backend = make_backend(args)
        try:
            result = describe_dataset(
                spec, backend, CompletionCache(args.cache_dir), args.out,
                **_generation_options(args, sampling, families),
            )
        finally:
            backend.close()
    except MedgunaError as error:
        print(f"medguna describe: error: {error}", file=sys.stderr)
        return 1
    for class_name, count in result.counts.items():
        print(f"{class_name}: {count['kept']} sentences kept of {count['raw_sentences']} "
              f"({count['completions']} completions)")
    print(f"wrote {result.out_file} and {result.provenance_file} "
          f"({result.requests_sent} requests, {result.samples_from_cache} samples from cache)")
    return 0


def _generation_options(args, sampling, families) -> dict:
    """The settings one dataset's generation and a whole set's share (sampling, cleaning, progress)."""
    return {"sampling": sampling, "samples_per_prompt": args.samples, "families": families,
            "rules": CleaningRules(min_words=args.min_words), "max_per_request": args.max_per_request,
            "show_progress": not args.no_progress}


def _families(args: argparse.Namespace) -> tuple[str, ...]:
    return tuple(name.strip() for name in args.families.split(",") if name.strip())


def set_targets(args: argparse.Namespace) -> tuple[list[DatasetSpec], Path]:
    """The datasets a set is written for and the folder of sets, from --study/--datasets."""
    if args.out is not None:
        raise ConfigError("--out writes one file; a set writes <sets-dir>/NAME/<dataset>.json: "
                          "drop --out (or drop --set)")
    cache_dir = StorageConfig.cache_dir
    if args.study:
        from medguna.compose import compose_study

        study = compose_study([f"study={args.study}"], search=False)
        names, cache_dir = list(study.study.datasets), study.storage.cache_dir
    elif args.datasets or args.dataset:
        names = [n.strip() for n in (args.datasets or args.dataset).split(",") if n.strip()]
    else:
        raise ConfigError("--set needs the datasets to describe: --study STUDY or --datasets a,b,c")
    sets_dir = Path(args.sets_dir) if args.sets_dir else sets_dir_for(cache_dir)
    return [get_dataset(name) for name in names], sets_dir


def run_describe_set(args: argparse.Namespace) -> int:
    """`medguna describe --set NAME ...`: every dataset's file of the set, then a summary."""
    try:
        check_set_name(args.set_name)
        specs, sets_dir = set_targets(args)
        sampling = SamplingSettings(args.temperature, args.top_p, args.max_tokens, args.seed)
        families = _families(args)
        for spec in specs:  # unknown families or modalities fail before any request
            build_prompts(spec, families)
        backend = make_backend(args)
        try:
            result = describe_set(
                args.set_name, specs, backend, CompletionCache(args.cache_dir), sets_dir,
                **_generation_options(args, sampling, families),
            )
        finally:
            backend.close()
    except MedgunaError as error:
        print(f"medguna describe: error: {error}", file=sys.stderr)
        return 1
    print("\n".join(summary_lines(result)))
    return 0
