"""`medguna trial`: one trial from the command line, on the synthetic stand-in and test-size MedCLIP."""

from __future__ import annotations

import json
import math
from pathlib import Path

import polars as pl
import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from test_predictions import check_trial_predictions  # tests/trial is on sys.path

from medguna.cli import main
from medguna.data.synthetic import synthesize

TINY = ["method.stage1_steps=20", "method.stage2_epochs=2", "method.batch_size=8",
        "method.prompt_length=4", "runtime.eval_batch_size=32", "data.synthetic_scale=1"]
# What accelerate picks with runtime.mixed_precision=auto: bf16 on a GPU that has it (GPU runs of the suite).
DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
PRECISION = "bf16" if DEVICE == "cuda" and torch.cuda.is_bf16_supported() else "no"


def _storage(tmp: Path) -> list[str]:
    return [f"storage.cache_dir={tmp / 'cache'}", f"storage.path={tmp / 'runs'}"]


def _final_row(out: str) -> dict:
    return json.loads(out.strip().splitlines()[-1])


def test_trial_prints_final_metrics_and_writes_tensorboard(tmp_path, capsys):
    code = main(["trial", "dataset=montgomery", *_storage(tmp_path), *TINY,
                 "--logdir", str(tmp_path / "tb"), "--quiet"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert "SYNTHETIC stand-in data (demonstration)" in captured.err
    assert "DEMONSTRATION encoder" in captured.err and f"mixed precision {PRECISION}" in captured.err

    final = _final_row(captured.out)
    assert final["status"] == "completed"
    assert (final["dataset"], final["data_source"], final["checkpoint"]) == ("montgomery", "synthetic", "demo")
    assert (final["device"].split(" ")[0], final["mixed_precision"]) == (DEVICE, PRECISION)
    assert final["selected_epoch"] in (0, 1, 2)  # 0: stage 1 alone beat both epochs on validation
    for prefix in ("test_", "zeroshot_test_", "val_"):
        assert 0.0 <= final[f"{prefix}balanced_accuracy"] <= 1.0
        assert {f"{prefix}recall_NORMAL", f"{prefix}recall_TB"} <= final.keys()
    assert math.isfinite(final["loss"]) and final["images_per_second"] > 0
    assert f"per-image predictions (selected epoch and zero-shot): {tmp_path / 'tb' / 'predictions.parquet'}" \
        in captured.err
    check_trial_predictions(tmp_path / "tb", final, ["NORMAL", "TB"])
    ids = pl.read_parquet(tmp_path / "tb" / "predictions.parquet")["image_id"]
    assert ids.str.starts_with("CXR_png/MCUCXR_").all()  # relative to the data root

    events = EventAccumulator(str(tmp_path / "tb"))
    events.Reload()
    scalars = events.Tags()["scalars"]
    # One value per epoch under the result column's name, grouped by its prefix.
    assert [e.step for e in events.Scalars("val/balanced_accuracy")] == [1, 2]
    assert {"train/loss", "train/loss_entropy", "train/pseudo_label_accuracy"} <= set(scalars)
    assert events.Scalars("train/loss")[-1].value == pytest.approx(final["loss"], rel=1e-5)


def test_data_root_shorthand_reads_the_given_folder(tmp_path, capsys):
    root = synthesize("shenzhen", tmp_path / "ChinaSet", seed=3, scale=0.5)
    code = main(["trial", "dataset=shenzhen", f"data.root={root}", *_storage(tmp_path), *TINY,
                 "--logdir", str(tmp_path / "tb")])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    # Without --quiet: a readable line per epoch and the selection on stderr, JSON alone on stdout.
    assert "epoch 1: loss " in captured.err and "epoch 2: loss " in captured.err
    assert "selected epoch " in captured.err and "by val_balanced_accuracy: test balanced_accuracy" in captured.err
    assert len(captured.out.strip().splitlines()) == 1
    # A stand-in passed as a root is still labelled synthetic (its marker file says so).
    assert f"SYNTHETIC stand-in data at {root}" in captured.err
    assert _final_row(captured.out)["data_source"] == "synthetic"
    # The trial read the given folder: no demonstration stand-in was written to the cache.
    assert not (tmp_path / "cache" / "synthetic").exists()


def test_unknown_hyperparameter_is_a_clear_error(tmp_path, capsys):
    code = main(["trial", "dataset=shenzhen", *_storage(tmp_path), "method.entropy_wieght=1.0"])
    err = capsys.readouterr().err
    assert code == 2
    assert "entropy_wieght" in err


def test_overrides_after_an_option_are_read_and_checked(tmp_path, capsys):
    code = main(["trial", "dataset=shenzhen", *_storage(tmp_path), "--quiet", "method.batch_size=0"])
    err = capsys.readouterr().err
    assert code == 2 and "method.batch_size=0 is invalid: expected >= 1" in err
    with pytest.raises(SystemExit):
        main(["trial", "--quiet", "--no-such-option"])
    assert "unrecognized arguments: --no-such-option" in capsys.readouterr().err


def test_a_cache_dir_that_cannot_be_written_is_a_clear_error(tmp_path, capsys):
    (tmp_path / "afile").write_text("")
    code = main(["trial", "dataset=shenzhen", f"storage.cache_dir={tmp_path / 'afile' / 'cache'}",
                 f"storage.path={tmp_path / 'runs'}"])
    err = capsys.readouterr().err
    assert code == 2 and "storage.cache_dir=" in err and "cannot be written (Not a directory" in err


def test_diverging_trial_fails_with_its_reason(tmp_path, capsys):
    # The reference variant's entropy term is NaN when floor(confident_ratio * batch) == 0.
    code = main(["trial", "dataset=shenzhen", *_storage(tmp_path), "method=reference",
                 "method.stage1_steps=20", "method.stage2_epochs=1", "method.batch_size=8",
                 "method.prompt_length=0", "--logdir", str(tmp_path / "tb"), "--quiet"])
    err = capsys.readouterr().err
    assert code == 1
    assert "trial failed: TrialError: loss became nan" in err


def test_reference_variant_refuses_an_impossible_prompt_length_before_training(tmp_path, capsys):
    code = main(["trial", "dataset=shenzhen", *_storage(tmp_path), "method=reference", "method.prompt_length=4"])
    err = capsys.readouterr().err
    assert code == 2
    assert "method.prompt_length=4 is invalid" in err and "[0, 113, 228," in err
    assert not (tmp_path / "cache").exists()  # refused before any data or model work


def test_reference_trial_ignores_the_study_search_space(tmp_path, capsys):
    # The default space lists prompt lengths the reference variant refuses; one trial searches nothing.
    code = main(["trial", "dataset=montgomery", *_storage(tmp_path), "method=reference", *TINY[:2],
                 "method.batch_size=16", "method.prompt_length=0", "--logdir", str(tmp_path / "tb"), "--quiet"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    final = _final_row(captured.out)
    assert final["variant"] == "reference"
    # fp32 as the reference, even where bf16 is available, unless runtime.mixed_precision says otherwise
    assert "protocol validation; mixed precision no" in captured.err and final["mixed_precision"] == "no"


def test_python_dash_m_medguna_trial_is_the_trial_command():
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-m", "medguna.trial", "--help"], check=False,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("usage: medguna trial") and "--logdir" in done.stdout
