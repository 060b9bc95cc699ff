"""Writes study folders in exactly the results layout the study runner produces.

`write_hand_study` builds the hand-chosen study the tests check against literals:

study "handmade", objective val_balanced_accuracy (max), stage2_epochs 3, seeds 1..3
configurations (adapter_width, prompt_length, entropy_weight, description_source):
  A = (0, 113, 1.5, "lafter")   the paper's hyperparameters (is_paper_point on shenzhen t0000)
  B = (64, 16, 0.5, "llm")
  C = (128, 0, 1.0, "class_name")
shenzhen (real, zero-shot test balanced accuracy 0.55):
  t0000 A seed 1  completed  val [0.60, 0.70, 0.65] -> selected 2, objective 0.70, test 0.68
  t0001 B seed 1  completed  val [0.70, 0.80, 0.75] -> 0.80, test 0.74
  t0002 C seed 1  completed  val [0.60, 0.55, 0.50] -> selected 1, 0.60, test 0.58
  t0003 C seed 2  stopped early after epoch 1 (val 0.90, stage 1 alone 0.93: must not be ranked)
  t0004 A seed 2  failed at epoch 2 (error.txt: TrialError: loss became NaN ...; val 0.95 at 1)
  t0005 B seed 2  completed  val [0.70, 0.72, 0.76] -> selected 3, 0.76, test 0.70
  t0006 B seed 3  completed  val [0.78, 0.70, 0.70] -> selected 1, 0.78, test 0.78
guangzhou (real, zero-shot 0.60):
  t0000 A seed 1 -> 0.65, test 0.66;  t0001 B seed 1 -> 0.70, test 0.64;  t0002 C seed 1 -> 0.75,
  test 0.70
montgomery (synthetic data, zero-shot 0.50): t0000 A seed 1 -> 0.90, test 0.95
"""

from __future__ import annotations

import json
from pathlib import Path

import optuna

CONFIGS = {
    "A": {
        "adapter_width": 0,
        "prompt_length": 113,
        "entropy_weight": 1.5,
        "description_source": "lafter",
    },
    "B": {
        "adapter_width": 64,
        "prompt_length": 16,
        "entropy_weight": 0.5,
        "description_source": "llm",
    },
    "C": {
        "adapter_width": 128,
        "prompt_length": 0,
        "entropy_weight": 1.0,
        "description_source": "class_name",
    },
}
FIXED = {
    "ce_weight": 0.7,
    "confident_ratio": 0.1,
    "label_smoothing": 0.1,
    "stage1_steps": 4000,
    "stage1_noise_std": 0.1,
    "stage2_lr": 0.0005,
    "stage2_epochs": 3,
    "batch_size": 50,
    "variant": "medguna",
    "preprocessing": "medclip",
    "text_wrapper": "modality",
}
CLASSES = {
    "shenzhen": ("NORMAL", "TB"),
    "guangzhou": ("NORMAL", "PNEUMONIA"),
    "montgomery": ("NORMAL", "TB"),
    "isic2018": ("MEL", "NV"),
}


def write_study_json(
    study_dir: Path,
    name: str,
    datasets: list[str],
    data_source: dict[str, str],
    objective: str = "val_balanced_accuracy",
    checkpoint: str = "/ckpt/medclip",
    mode: str = "max",
) -> Path:
    study_dir.mkdir(parents=True, exist_ok=True)
    (study_dir / "study.json").write_text(
        json.dumps(
            {
                "study": name,
                "datasets": datasets,
                "objective": objective,
                "mode": mode,
                "data_source": data_source,
                "encoder": "medclip-vit",
                "checkpoint": checkpoint,
                "created": "2025-01-01T00:00:00",
            }
        )
    )
    return study_dir


def write_trial(
    study_dir: Path,
    dataset: str,
    number: int,
    config: dict,
    seed: int,
    val: list[float],
    *,
    zeroshot: float,
    test: float | None = None,
    data_source: str = "real",
    checkpoint: str = "/ckpt/medclip",
    reference: bool = False,
    error: str | None = None,
    objective: str = "val_balanced_accuracy",
    control: str = "none",
    protocol: str = "validation",
    selected_epoch: int | None = None,
    stage1: float | None = None,
) -> Path:
    """One trial folder. `test` given: the trial completed all its epochs (final row written).
    `stage1`: stage 1's validation value, where it competes in the best-so-far objective."""
    study = json.loads((study_dir / "study.json").read_text())["study"]
    trial_id = f"abcd{number:04d}_{number:05d}"
    folder = study_dir / dataset / f"t{number:04d}_{trial_id}"
    folder.mkdir(parents=True)
    params = {**FIXED, **config, "seed": seed, "dataset": dataset, "is_paper_point": reference}
    (folder / "params.json").write_text(json.dumps(params, indent=2, sort_keys=True))
    lines = []
    best_so_far = stage1 if stage1 is not None else float("-inf")
    for epoch, value in enumerate(val, start=1):
        best_so_far = max(best_so_far, value)
        row = {
            "study": study,
            "dataset": dataset,
            "data_source": data_source,
            "encoder": "medclip-vit",
            "checkpoint": checkpoint,
            "checkpoint_sha256": "0123abcd",
            "variant": params["variant"],
            "control": control,
            "protocol": protocol,
            "code_version": "test",
            "epoch": epoch,
            "objective_best_so_far": best_so_far,
            "loss": 1.0 / epoch,
            "loss_ce": 0.5 / epoch,
            "loss_entropy": -0.5,
            "lr": 0.0005,
            "images_per_second": 100.0,
            "pseudo_label_accuracy": 0.6,
            "val_accuracy": value,
            "val_balanced_accuracy": value,
            "val_macro_f1": value,
            "val_auroc": value,
            "val_information_maximization": value / 2,
            "val_effective_classes": 1.9,
            "val_max_class_share": 0.55,
            "val_collapsed": 0,
            "val_teacher_agreement": 0.8,
            "zeroshot_val_accuracy": zeroshot,
            "zeroshot_val_balanced_accuracy": zeroshot,
            "zeroshot_val_macro_f1": zeroshot,
            "zeroshot_val_auroc": zeroshot,
            "peak_memory_mb": 512.0,
            **{f"val_recall_{c}": value for c in CLASSES[dataset]},
            # What Ray adds to every row.
            "training_iteration": epoch,
            "trial_id": trial_id,
            "timestamp": 1700000000 + epoch,
            "done": False,
            "time_total_s": 10.0 * epoch,
            "config": params,
        }
        if test is not None and epoch == len(val):
            values = [v if objective == "val_balanced_accuracy" else v / 2 for v in val]
            best = max(range(len(val)), key=lambda i: values[i])
            row.update(
                {
                    "selected_epoch": best + 1 if selected_epoch is None else selected_epoch,
                    "objective": objective,
                    "objective_selected": values[best],
                    "test_accuracy": test,
                    "test_balanced_accuracy": test,
                    "test_macro_f1": test,
                    "test_auroc": test,
                    "zeroshot_test_accuracy": zeroshot,
                    "zeroshot_test_balanced_accuracy": zeroshot,
                    "zeroshot_test_macro_f1": zeroshot,
                    "zeroshot_test_auroc": zeroshot,
                    "status": "completed",
                    "done": True,
                    **{f"test_recall_{c}": test for c in CLASSES[dataset]},
                }
            )
        lines.append(json.dumps(row))
    (folder / "result.json").write_text("".join(line + "\n" for line in lines))
    if error:
        (folder / "error.txt").write_text(
            "Failure # 1 (occurred at 2025-01-01_00-00-00)\nTraceback (most recent call last):\n"
            '  File "trial.py", line 1, in run\n' + error + "\n"
        )
    return folder


def write_optuna_db(study_dir: Path, dataset: str, trials: list[dict]) -> Path:
    """`trials`: dicts with config, value, outcome, trial_id; as the runner exports them."""
    study = json.loads((study_dir / "study.json").read_text())["study"]
    path = study_dir / dataset / "optuna.db"
    storage = f"sqlite:///{path}"
    optuna_study = optuna.create_study(
        study_name=f"{study}-{dataset}", storage=storage, direction="maximize"
    )
    distributions = {
        "adapter_width": optuna.distributions.CategoricalDistribution([0, 64, 128]),
        "prompt_length": optuna.distributions.IntDistribution(0, 128),
        "entropy_weight": optuna.distributions.FloatDistribution(0.0, 2.0),
        "description_source": optuna.distributions.CategoricalDistribution(
            ["lafter", "llm", "class_name"]
        ),
    }
    for spec in trials:
        failed = spec["outcome"] == "failed"
        optuna_study.add_trial(
            optuna.trial.create_trial(
                params=spec["config"],
                distributions=distributions,
                value=None if failed else spec["value"],
                state=optuna.trial.TrialState.FAIL if failed else optuna.trial.TrialState.COMPLETE,
                user_attrs={"trial_id": spec["trial_id"], "outcome": spec["outcome"]},
            )
        )
    return path


def write_hand_study(root: Path, with_optuna: bool = True) -> Path:
    """The hand-chosen study described in the module docstring; returns its folder."""
    study_dir = write_study_json(
        root / "handmade",
        "handmade",
        ["shenzhen", "guangzhou", "montgomery"],
        {"shenzhen": "real", "guangzhou": "real", "montgomery": "synthetic"},
    )
    A, B, C = CONFIGS["A"], CONFIGS["B"], CONFIGS["C"]
    sz = {"zeroshot": 0.55}
    write_trial(study_dir, "shenzhen", 0, A, 1, [0.60, 0.70, 0.65], test=0.68, reference=True, **sz)
    write_trial(study_dir, "shenzhen", 1, B, 1, [0.70, 0.80, 0.75], test=0.74, **sz)
    write_trial(study_dir, "shenzhen", 2, C, 1, [0.60, 0.55, 0.50], test=0.58, **sz)
    write_trial(study_dir, "shenzhen", 3, C, 2, [0.90], stage1=0.93, **sz)
    write_trial(
        study_dir,
        "shenzhen",
        4,
        A,
        2,
        [0.95],
        error="TrialError: loss became NaN at epoch 2 (entropy term); lower stage2_lr",
        **sz,
    )
    write_trial(study_dir, "shenzhen", 5, B, 2, [0.70, 0.72, 0.76], test=0.70, **sz)
    write_trial(study_dir, "shenzhen", 6, B, 3, [0.78, 0.70, 0.70], test=0.78, **sz)
    gz = {"zeroshot": 0.60}
    write_trial(
        study_dir, "guangzhou", 0, A, 1, [0.65, 0.60, 0.60], test=0.66, reference=True, **gz
    )
    write_trial(study_dir, "guangzhou", 1, B, 1, [0.50, 0.70, 0.60], test=0.64, **gz)
    write_trial(study_dir, "guangzhou", 2, C, 1, [0.75, 0.70, 0.74], test=0.70, **gz)
    write_trial(
        study_dir,
        "montgomery",
        0,
        A,
        1,
        [0.80, 0.90, 0.85],
        test=0.95,
        reference=True,
        zeroshot=0.50,
        data_source="synthetic",
    )
    if with_optuna:
        full = [("A", 0.70, 0), ("B", 0.80, 1), ("C", 0.60, 2), ("B", 0.76, 5), ("B", 0.78, 6)]
        specs = [
            {"config": CONFIGS[c], "value": v, "outcome": "completed", "trial_id": f"abcd{n:04d}_{n:05d}"}
            for c, v, n in full
        ]
        specs.append(
            {"config": C, "value": 0.90, "outcome": "stopped_early", "trial_id": "abcd0003_00003"}
        )
        specs.append({"config": A, "value": None, "outcome": "failed", "trial_id": "abcd0004_00004"})
        write_optuna_db(study_dir, "shenzhen", specs)
        write_optuna_db(
            study_dir,
            "montgomery",
            [{"config": A, "value": 0.90, "outcome": "completed", "trial_id": "abcd0000_00000"}],
        )
    return study_dir
