#!/usr/bin/env python
"""Does label-free adaptation help under an acquisition shift? (run by hand, not by CI)

    python benchmarks/shift_benchmark.py [--datasets shenzhen,...] [--seeds 3] [--first-seed 0]
                                         [--study-trials 6] [--scale 2] [--draw-seed 0]
                                         [--warm-point name=value,...] [--entropy-arms W,...]
                                         [--skip-arms ARM,...] [--work DIR]

Per dataset (all five by default) and seed, on the SYNTHETIC stand-in under its modality's `demo`
acquisition shift, with the shipped DEMONSTRATION encoder (pretrained on the unshifted drawings):
  zero-shot       the encoder's class prompts, no adaptation;
  reference       method=reference at the paper's settings (113 prompts, linear adapter, entropy
                  1.5, the reference's sentences, CLIP preprocessing);
  medguna         the corrected variant's defaults;
  medguna entropy W  only with --entropy-arms: the corrected defaults with entropy_weight=W (the
                  row of the default weight is the `medguna` arm's, not run twice); the closing
                  lines compare each weight with 0 over the (dataset, seed) pairs;
  medguna prompt-free  the same with prompt_length=0 (stage 2 tunes the adapter only), a point of
                  the study's search space;
  study best      the best of a small Optuna TPE search over the study's search space (the same
                  space, trial function and objective a study uses, and like a study it tries the
                  paper's point first; selected on validation, scored once on test);
  study best (wide space)  the same search, as many trials, over `search=wide` (the default space
                  plus stage 2's optimiser, learning rate and strong-view augmentation);
  warm point      only with --warm-point: that configuration of the corrected variant (the rest at
                  its defaults), fixed in advance; the wide-space study then also tries it second,
                  after the paper's point, as `search.warm_start` enqueues another study's finding;
  oracle pseudo-labels  the corrected default with stage 2 trained on the training images' true
                  labels (runtime.control=oracle_pseudo_labels): not label-free and not a result,
                  the most that better pseudo-labels could buy with this student and budget.
Every arm runs at the demonstration's budget (the study's demo_method: stage-1 steps, stage-2
epochs, batch size, stage 2's optimiser and learning rate), as a study on synthetic data does; the
reference arm takes its step counts but keeps the paper's optimiser (SGD at 5e-4). Each seed sets method.seed and
data.split_seed; --draw-seed (data.synthetic_seed) picks which draw of the stand-ins' images is used,
so a finding made on one draw can be checked on new images; --draw-per-seed gives each seed its own
draw, so the intervals also cover which images were drawn (on one draw they cover only the split and
training). The gain is test balanced accuracy minus zero-shot's on the same test images; the table
gives its mean over seeds with a 95% t interval, and in how many runs selection kept stage 1 alone
(no stage-2 epoch beat the teacher on validation). Writes results.csv and results.md under --work
and prints the Markdown table and the wall time. --entropy-prompt-free and --prompt-free-oracle run
those arms at prompt_length=0 (cheap: a cached bank of view features); --skip-arms leaves optional
arms out to fit a time budget; --merge prints the table of several earlier --work folders together
(one process per dataset, run side by side, then merged).
Nothing here is a MedCLIP result: synthetic data, demonstration encoder.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import tempfile
import time
from pathlib import Path

import optuna
import polars as pl

from medguna.analysis.stats import mean_ci
from medguna.compose import compose_study
from medguna.config import apply_method_params
from medguna.data.datasets import DATASETS
from medguna.results import OBJECTIVE_SELECTED
from medguna.study.space import DefineByRun, inside_space, paper_point
from medguna.trial.loop import run_trial
from medguna.trial.reporting import PrintReporter


def trial_row(cfg) -> dict:
    return run_trial(cfg, PrintReporter(verbose=False))


def validation_best(study_cfg, dataset: str, method, trials: int, seed: int,
                    warm: dict | None = None) -> tuple[float, dict, dict] | None:
    """The best of a small Optuna TPE search over `study_cfg`'s space, as a study runs it: the same
    trial function and objective, the paper's point first (then `warm`, a point of the space, as a
    warm start enqueues one); best by the validation objective."""
    space = study_cfg.search.space
    finals: list[tuple[float, dict, dict]] = []

    def objective(trial: optuna.Trial) -> float:
        DefineByRun(space, {})(trial)
        final = trial_row(study_cfg.trial_config(dataset, apply_method_params(method, trial.params)))
        finals.append((final[OBJECTIVE_SELECTED], final, dict(trial.params)))
        return final[OBJECTIVE_SELECTED]

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(direction="maximize",
                                sampler=optuna.samplers.TPESampler(seed=study_cfg.search.sampler_seed + seed))
    point = paper_point(space) if study_cfg.search.enqueue_reference else None
    for enqueued in (point, warm):
        if enqueued is not None:
            study.enqueue_trial(enqueued)
    study.optimize(objective, n_trials=trials, catch=(Exception,))
    if not finals:
        return None
    return max(finals, key=lambda item: item[0] if math.isfinite(item[0]) else -math.inf)


def warm_point_in(space: dict, warm_method) -> dict:
    """The warm point's method as a point of `space`: its value of every searched dimension."""
    point = {name: getattr(warm_method, name) for name in space}
    if not inside_space(space, point):
        raise SystemExit(f"--warm-point: {point} is not a point of the wide space {space}")
    return point


def parse_warm_point(text: str | None) -> dict:
    """`name=value,...` -> method parameters (0 -> int, 2e-3 -> float, anything else a string)."""
    if not text:
        return {}

    def scalar(value: str):
        for kind in (int, float):
            try:
                return kind(value)
            except ValueError:
                pass
        return value

    params = {}
    for item in text.split(","):
        name, sep, value = item.partition("=")
        if not sep:
            raise SystemExit(f"--warm-point: {item!r} is not name=value")
        params[name.strip()] = scalar(value.strip())
    return params


# What the reference arm takes of the demonstration's budget: how long it trains, not how (its
# optimiser and learning rate stay the paper's).
STEP_COUNTS = ("stage1_steps", "stage2_epochs", "batch_size")


# Arms a run may leave out (--skip-arms), to fit a time budget; zero-shot, the defaults and the
# oracle always run.
OPTIONAL_ARMS = ("reference", "medguna prompt-free", "study best", "study best (wide space)")


def weight_text(weight: float) -> str:
    return f"{weight:+g}" if weight else "0"


def entropy_arm(weight: float, prompt_free: bool = False) -> str:
    return f"medguna{' prompt-free' if prompt_free else ''} entropy {weight_text(weight)}"


def run_dataset_seed(dataset: str, seed: int, study_trials: int, cache_dir: str, scale: float,
                     draw_seed: int = 0, warm: dict | None = None,
                     entropy_weights: tuple[float, ...] = (), skip: frozenset[str] = frozenset(),
                     entropy_prompt_free: bool = False, oracle_prompt_free: bool = False) -> list[dict]:
    """Rows of one dataset and seed: one per arm, each with its test and zero-shot figures."""
    overrides = [f"storage.cache_dir={cache_dir}", f"data.split_seed={seed}", f"method.seed={seed}",
                 f"data.synthetic_scale={scale}", f"data.synthetic_seed={draw_seed}"]
    corrected = compose_study(overrides)
    wide = compose_study([*overrides, "search=wide"])  # + stage 2's optimiser, lr and strong view
    reference = compose_study([*overrides, "method=reference"], search=False)
    # The demonstration's budget (study.demo_method: stage-1 steps, epochs, batch), as a study on
    # synthetic data uses, so the benchmark measures the runs a user's first study makes.
    budget = corrected.study.demo_method
    corrected_method = apply_method_params(corrected.method, budget)
    reference_method = apply_method_params(reference.method, {k: v for k, v in budget.items() if k in STEP_COUNTS})
    rows = []

    def record(arm: str, final: dict, params: dict | None = None) -> None:
        rows.append({
            "dataset": dataset, "seed": seed, "arm": arm,
            OBJECTIVE_SELECTED: final[OBJECTIVE_SELECTED],
            "test_balanced_accuracy": final["test_balanced_accuracy"],
            "zeroshot_test_balanced_accuracy": final["zeroshot_test_balanced_accuracy"],
            "gain": final["test_balanced_accuracy"] - final["zeroshot_test_balanced_accuracy"],
            "collapsed": bool(final.get("test_collapsed", False)),
            "selected_epoch": final["selected_epoch"],  # 0: stage 1 alone beat every stage-2 epoch
            "params": "" if params is None else ", ".join(f"{k}={v}" for k, v in params.items()),
            "trial_seconds": final["trial_seconds"],
        })

    if "reference" not in skip:
        record("reference", trial_row(reference.trial_config(dataset, reference_method)))
    default_final = trial_row(corrected.trial_config(dataset, corrected_method))
    record("medguna", default_final)
    prompt_free = apply_method_params(corrected_method, {"prompt_length": 0})
    prompt_free_final = None
    if "medguna prompt-free" not in skip or entropy_prompt_free:
        prompt_free_final = trial_row(corrected.trial_config(dataset, prompt_free))
        record("medguna prompt-free", prompt_free_final)
    # The entropy arms: the defaults (or the prompt-free point) at each weight; the default weight's
    # row is the arm already run, not a second run of the same trial.
    base_method, base_final = (prompt_free, prompt_free_final) if entropy_prompt_free else (corrected_method, default_final)
    for weight in entropy_weights:
        final = base_final if weight == base_method.entropy_weight else trial_row(
            corrected.trial_config(dataset, apply_method_params(base_method, {"entropy_weight": weight})))
        record(entropy_arm(weight, entropy_prompt_free), final, {"entropy_weight": weight})

    wide_warm = None
    if warm:
        warm_method = apply_method_params(corrected_method, warm)  # unnamed dimensions at the defaults
        record("warm point", trial_row(corrected.trial_config(dataset, warm_method)), warm)
        wide_warm = warm_point_in(wide.search.space, warm_method)

    for arm, searched, warm_start in (("study best", corrected, None),
                                      ("study best (wide space)", wide, wide_warm)):
        if arm in skip:
            continue
        best = validation_best(searched, dataset, corrected_method, study_trials, seed, warm_start)
        if best is not None:  # selected on validation only; its test figure is read once, here
            record(arm, best[1], best[2])
    # An upper bound, not an arm a user can run on unlabelled data: last in the table.
    oracle = compose_study([*overrides, "runtime.control=oracle_pseudo_labels"], search=False)
    oracle_method = prompt_free if oracle_prompt_free else corrected_method
    record("oracle pseudo-labels" + (" (prompt-free)" if oracle_prompt_free else ""),
           trial_row(oracle.trial_config(dataset, oracle_method)))
    return rows


def summarise(rows: pl.DataFrame) -> pl.DataFrame:
    out = []
    for (dataset, arm), group in rows.group_by(["dataset", "arm"], maintain_order=True):
        gain = mean_ci(group["gain"].to_list())
        zero = mean_ci(group["zeroshot_test_balanced_accuracy"].to_list())
        test = mean_ci(group["test_balanced_accuracy"].to_list())
        out.append({
            "dataset": dataset, "arm": arm, "seeds": gain.n,
            "zero_shot": zero.mean, "test": test.mean, "gain": gain.mean,
            "gain_low": gain.low, "gain_high": gain.high,
            "ci_excludes_zero": gain.low is not None and (gain.low > 0 or gain.high < 0),
            "collapsed_runs": int(group["collapsed"].sum()),
            "stage1_kept": int((group["selected_epoch"] == 0).sum()),
        })
    return pl.DataFrame(out)


def entropy_comparison(rows: pl.DataFrame, weights: tuple[float, ...], prompt_free: bool = False) -> str:
    """Each entropy weight's gain minus weight 0's, paired over the (dataset, seed) pairs: mean and
    95% t interval over the pairs (it covers seeds, draws and datasets together, not test images
    within a run), and the decision rule fixed before the run (docs/demonstration.md)."""
    if 0.0 not in weights:
        return ""
    gains = {w: rows.filter(pl.col("arm") == entropy_arm(w, prompt_free)).sort(["dataset", "seed"]) for w in weights}
    base = gains[0.0]["gain"].to_list()
    lines = ["| entropy weight | mean gain | paired difference to 0 (95% t interval over pairs) | pairs |",
             "|---|---|---|---|"]
    means, intervals = {}, {}
    for w in weights:
        mine = gains[w]["gain"].to_list()
        means[w] = sum(mine) / len(mine)
        diff = mean_ci([a - b for a, b in zip(mine, base, strict=True)])
        intervals[w] = diff
        ci = "" if diff.low is None else f" [{diff.low:+.3f}, {diff.high:+.3f}]"
        lines.append(f"| {weight_text(w)} | {means[w]:+.3f} | {diff.mean:+.3f}{ci} | {diff.n} |")
    best = max(weights, key=lambda w: means[w])
    holds = best != 0.0 and intervals[best].low is not None and intervals[best].low > 0
    chosen = best if holds else 0.0
    lines.append("")
    lines.append(f"Highest mean gain: entropy weight {weight_text(best)}. Decision rule: it becomes the default "
                 f"only if its paired difference to 0 has a 95% interval above zero; otherwise 0. "
                 f"Outcome: {weight_text(chosen)}.")
    return "\n".join(lines)


def markdown(summary: pl.DataFrame) -> str:
    lines = ["| dataset | arm | zero-shot | adapted | gain (95% CI over seeds) | seeds | stage 1 kept |",
             "|---|---|---|---|---|---|---|"]
    for r in summary.iter_rows(named=True):
        ci = "" if r["gain_low"] is None else f" [{r['gain_low']:+.3f}, {r['gain_high']:+.3f}]"
        mark = " **" if r["ci_excludes_zero"] and r["gain"] > 0 else ""
        lines.append(f"| {r['dataset']} | {r['arm']} | {r['zero_shot']:.3f} | {r['test']:.3f} | "
                     f"{mark}{r['gain']:+.3f}{ci}{mark.strip() and '**'} | {r['seeds']} | {r['stage1_kept']} |")
    means = summary.group_by("arm", maintain_order=True).agg(pl.col("gain").mean())
    lines.append("")
    lines.append("Mean gain over datasets: " + ", ".join(
        f"{r['arm']} {r['gain']:+.3f}" for r in means.iter_rows(named=True)))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--datasets", default=",".join(DATASETS))
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--first-seed", type=int, default=0,
                        help="seeds run from here (method.seed and data.split_seed), e.g. 3 for seeds never used before")
    parser.add_argument("--study-trials", type=int, default=6)
    parser.add_argument("--scale", type=float, default=2.0,
                        help="stand-in size (data.synthetic_scale): 2 gives test splits of 30-60 images")
    parser.add_argument("--draw-seed", type=int, default=0,
                        help="which draw of the stand-ins' images (data.synthetic_seed); 0 is the one studies use")
    parser.add_argument("--draw-per-seed", action="store_true",
                        help="each seed on its own draw of the images (data.synthetic_seed = the seed), so the "
                             "intervals cover which images were drawn, not only the split and the training")
    parser.add_argument("--warm-point", default=None,
                        help="a configuration fixed in advance, e.g. prompt_length=0,stage2_optimizer=adamw: "
                             "an arm of its own, and the wide study's second point")
    parser.add_argument("--entropy-arms", default="",
                        help="comma-separated entropy weights, each an arm of the corrected defaults, "
                             "compared with weight 0 at the end, e.g. 1.5,0,-1.5")
    parser.add_argument("--entropy-prompt-free", action="store_true",
                        help="run the entropy arms at prompt_length=0 (adapter-only stage 2 on cached views: cheap)")
    parser.add_argument("--prompt-free-oracle", action="store_true",
                        help="run the oracle arm at prompt_length=0 (the adapter's upper bound; cheap)")
    parser.add_argument("--merge", default="",
                        help="comma-separated --work folders of earlier runs: print their results.csv together "
                             "(table and entropy comparison) instead of running anything")
    parser.add_argument("--skip-arms", default="",
                        help=f"comma-separated arms not to run, of: {', '.join(OPTIONAL_ARMS)}")
    parser.add_argument("--work", type=Path, default=None, help="where caches and results go (default: a temp dir)")
    args = parser.parse_args(argv)
    warm = parse_warm_point(args.warm_point)
    entropy_weights = tuple(float(w) for w in args.entropy_arms.split(",") if w.strip())
    skip = frozenset(a.strip() for a in args.skip_arms.split(",") if a.strip())
    if skip - set(OPTIONAL_ARMS):
        raise SystemExit(f"--skip-arms: {sorted(skip - set(OPTIONAL_ARMS))} are not arms that can be skipped "
                         f"({', '.join(OPTIONAL_ARMS)})")
    work = args.work or Path(tempfile.mkdtemp(prefix="medguna-shift-"))
    work.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    rows: list[dict] = []
    merged = [Path(folder.strip()) for folder in args.merge.split(",") if folder.strip()]
    for folder in merged:
        rows += pl.read_csv(folder / "results.csv").to_dicts()
    for dataset in ([] if merged else args.datasets.split(",")):
        for seed in range(args.first_seed, args.first_seed + args.seeds):
            t0 = time.perf_counter()
            new = run_dataset_seed(dataset, seed, args.study_trials, str(work / "cache"), args.scale,
                                   seed if args.draw_per_seed else args.draw_seed, warm, entropy_weights, skip,
                                   args.entropy_prompt_free, args.prompt_free_oracle)
            rows += new
            print(f"[shift-benchmark] {dataset} seed {seed}: " + "; ".join(
                f"{r['arm']} {r['test_balanced_accuracy']:.3f} (zero-shot {r['zeroshot_test_balanced_accuracy']:.3f})"
                for r in new) + f" [{time.perf_counter() - t0:.0f} s]", flush=True)
            pl.DataFrame(rows).write_csv(work / "results.csv")  # kept as it grows: nothing lost on Ctrl-C
    summary = summarise(pl.DataFrame(rows))
    table = markdown(summary)
    entropy = entropy_comparison(pl.DataFrame(rows), entropy_weights, args.entropy_prompt_free)
    if entropy:
        table += "\n\n" + entropy
    minutes = (time.perf_counter() - started) / 60
    header = (f"SYNTHETIC stand-ins under the `demo` shift, DEMONSTRATION encoder (not MedCLIP); "
              f"scale {args.scale:g}, image draw {'= seed' if args.draw_per_seed else args.draw_seed}, "
              f"seeds {args.first_seed}-"
              f"{args.first_seed + args.seeds - 1}, {args.study_trials} study trials"
              + (f", warm point {args.warm_point}" if warm else "")
              + (f", entropy arms {args.entropy_arms}" if entropy_weights else "")
              + (" (prompt-free)" if entropy_weights and args.entropy_prompt_free else "")
              + (f", merged from {args.merge}" if merged else "")
              + (f", arms skipped: {args.skip_arms}" if skip else "")
              + f"; {minutes:.1f} min on {os.cpu_count()} CPU cores")
    (work / "results.md").write_text(header + "\n\n" + table + "\n")
    summary.write_csv(work / "summary.csv")
    print(header)
    print(table)
    print(f"written: {work / 'results.csv'}, {work / 'summary.csv'}, {work / 'results.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
