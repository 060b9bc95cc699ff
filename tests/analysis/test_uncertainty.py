"""Intervals, paired verdicts, reliability diagrams and the label-free selection check in the report,
on the hand-made study plus constructed per-image predictions."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl
import pytest
from analysis_fixtures import write_hand_study
from scipy import stats

from medguna.analysis.loading import load_results
from medguna.analysis.paired import BETTER, NOT_DISTINGUISHABLE
from medguna.analysis.report import build_report
from medguna.analysis.selection_check import selection_check
from medguna.trial.predictions import prediction_frame, write_predictions

N = 80  # test images, 40 per class
LABELS = np.array([0] * (N // 2) + [1] * (N // 2))


def _probs(correct: np.ndarray, confidence: float = 0.9) -> np.ndarray:
    predicted = np.where(correct, LABELS, 1 - LABELS)
    probs = np.full((N, 2), 1 - confidence)
    probs[np.arange(N), predicted] = confidence
    return probs


def _write(trial_dir: Path, adapted: np.ndarray, zeroshot: np.ndarray) -> None:
    import torch

    ids = [f"img{i:03d}.png" for i in range(N)]
    frames = [prediction_frame(model, "test", epoch, ids, torch.tensor(LABELS), torch.tensor(probs),
                               ["NORMAL", "TB"])
              for model, epoch, probs in (("adapted", 2, adapted), ("zeroshot", 0, zeroshot))]
    write_predictions(trial_dir, frames)


@pytest.fixture(scope="module")
def study_with_predictions(tmp_path_factory) -> Path:
    study = write_hand_study(tmp_path_factory.mktemp("runs"), with_optuna=False)
    rng = np.random.default_rng(4)
    coin = _probs(rng.random(N) < 0.5, confidence=0.6)
    reference = rng.random(N) < 0.85
    near_reference = reference.copy()
    near_reference[:2] = ~near_reference[:2]  # two images apart from the paper's configuration
    shenzhen = study / "shenzhen"
    _write(next(shenzhen.glob("t0000_*")), _probs(reference), coin)
    _write(next(shenzhen.glob("t0001_*")), _probs(near_reference), coin)
    _write(next(shenzhen.glob("t0002_*")), coin, coin)  # no better than zero-shot
    return study


def test_leaderboard_rows_carry_intervals_and_verdicts(study_with_predictions, tmp_path):
    results = load_results(study_with_predictions, progress=False)
    assert results.predictions.height == 3 * 2 * N  # three trials, adapted + zero-shot
    report = build_report(results, tmp_path / "analysis")
    board = pl.read_csv(tmp_path / "analysis" / "leaderboard_shenzhen.csv").filter(
        pl.col("trial").str.slice(0, 5).is_in(["t0000", "t0001", "t0002"]))
    rows = {r["trial"][:5]: r for r in board.iter_rows(named=True)}
    for row in rows.values():
        assert 0 <= row["test_balanced_accuracy_ci95_test_images_low"] <= row[
            "test_balanced_accuracy_ci95_test_images_high"] <= 1
    assert rows["t0001"]["vs_zeroshot_verdict"] == BETTER
    assert rows["t0001"]["verdict_role"] == "primary"  # rank 1 on shenzhen: the study's pick
    assert rows["t0001"]["vs_zeroshot"].startswith("better (p=")
    assert rows["t0001"]["vs_paper_hparams_discordant"] == 2
    assert rows["t0001"]["vs_paper_hparams_verdict"] == NOT_DISTINGUISHABLE
    # Two images apart, both the same way: 2 of the 4 sign patterns reach |d|, p = 0.5.
    assert rows["t0001"]["vs_paper_hparams"] == "not distinguishable (p=0.5, 2 discordant)"
    # Not the study's pick: its exact p is shown, but no better/worse word.
    assert rows["t0000"]["verdict_role"] == "exploratory"
    assert rows["t0000"]["vs_zeroshot_verdict"] == BETTER
    assert rows["t0000"]["vs_zeroshot"].startswith("exploratory (p=")
    assert rows["t0002"]["vs_zeroshot_verdict"] == NOT_DISTINGUISHABLE
    assert rows["t0002"]["vs_zeroshot_mcnemar_p"] == 1.0  # identical predictions
    assert rows["t0002"]["vs_zeroshot_discordant"] == 0
    assert rows["t0000"]["vs_paper_hparams_verdict"] is None  # the paper's point itself
    markdown = (tmp_path / "analysis" / "leaderboard_shenzhen.md").read_text()
    assert "vs_zeroshot" in markdown and "not distinguishable" in markdown
    reliability = tmp_path / "analysis" / "figures" / "reliability_shenzhen_real.png"
    assert reliability in report.figures and reliability.read_bytes()[:4] == b"\x89PNG"


def test_selection_check_tau_matches_scipy_and_the_hand_count(hand_results):
    table = selection_check(hand_results.trials, hand_results.epochs)
    row = table.filter((pl.col("dataset") == "shenzhen")
                       & (pl.col("criterion") == "val_information_maximization")).row(0, named=True)
    # Selected-epoch val (IM = val / 2 in the fixture) vs test over the 5 completed trials:
    # 0.60/0.58, 0.70/0.68, 0.76/0.70, 0.78/0.78, 0.80/0.74: 9 concordant pairs, 1 discordant.
    assert row["kendall_tau"] == pytest.approx(0.8)
    expected = stats.kendalltau([0.30, 0.35, 0.38, 0.39, 0.40], [0.58, 0.68, 0.70, 0.78, 0.74])
    assert (row["kendall_tau"], row["kendall_p"]) == pytest.approx((expected.statistic, expected.pvalue))
    # It picks t0001 (test 0.74); the best trial scores 0.78; labels pick the same trial.
    assert row["picked_trial"].startswith("t0001")
    assert (row["cost_vs_best"], row["cost_vs_labelled"]) == pytest.approx((0.04, 0.0))
    agreement = table.filter((pl.col("dataset") == "shenzhen")
                             & (pl.col("criterion") == "val_teacher_agreement")).row(0, named=True)
    assert agreement["kendall_tau"] is None or np.isnan(agreement["kendall_tau"])  # constant 0.8
    assert (agreement["picked_trial"], agreement["cost_vs_best"]) == (None, None)  # cannot select


def test_short_leaderboard_line_carries_the_interval_and_verdict(study_with_predictions):
    from medguna.analysis.report import leaderboard_text

    text = leaderboard_text(load_results(study_with_predictions, progress=False))
    shenzhen = text.split("\nshenzhen")[1]  # only shenzhen's trials have predictions here
    line = next(x for x in shenzhen.splitlines() if "t0001_" in x)
    assert "[95% CI over test images " in line and "better (p=" in line and "vs zero-shot" in line


def test_pareto_front_of_accuracy_against_calibration():
    from medguna.analysis.pareto import pareto_mask

    accuracy = np.array([0.80, 0.70, 0.75, 0.60, 0.80])
    ece = np.array([0.20, 0.05, 0.10, 0.30, 0.25])
    # 0.80/0.20 beats 0.80/0.25 (same accuracy, better ECE); 0.60/0.30 is beaten by every other.
    assert pareto_mask(accuracy, ece).tolist() == [True, True, True, False, False]


def test_auroc_headline_gets_an_interval_and_the_balanced_accuracy_verdict(study_with_predictions):
    from medguna.analysis.uncertainty import trial_uncertainty, with_uncertainty

    results = load_results(study_with_predictions, progress=False)
    table = trial_uncertainty(results.trials, results.predictions, "auroc", n_resamples=300)
    row = table.filter(pl.col("trial").str.starts_with("t0001")).row(0, named=True)
    # No exact paired test of AUROC here: its bootstrap interval is a size only.
    assert row["vs_zeroshot_auroc_diff_ci95_test_images_low"] > 0
    assert "vs_zeroshot_auroc_p" not in table.columns
    assert row["vs_zeroshot_verdict_test"].startswith("sign-flip permutation of balanced accuracy")
    assert row["vs_zeroshot_verdict"] == BETTER
    board = with_uncertainty(table.select("study", "dataset", "trial"), table, "auroc")
    text = board.filter(pl.col("trial").str.starts_with("t0001"))["vs_zeroshot"][0]
    assert text == (f"better (p={row['vs_zeroshot_verdict_p']:.3g}, "
                    f"{row['vs_zeroshot_discordant']} discordant)")


def test_values_at_the_selected_epoch_read_stage1_alone_from_the_final_row():
    """A trial that kept stage 1 alone (selected_epoch 0) has no epoch-0 row: its values at the
    selected epoch are the final row's stage1_* columns, not missing."""
    import polars as pl

    from medguna.analysis.selection_check import at_selected_epoch

    rows = [
        {"study": "s", "dataset": "d", "trial": "a", "epoch": 1, "status": "running",
         "val_balanced_accuracy": 0.6, "selected_epoch": None, "stage1_val_balanced_accuracy": None},
        {"study": "s", "dataset": "d", "trial": "a", "epoch": 2, "status": "completed",
         "val_balanced_accuracy": 0.7, "selected_epoch": 0, "stage1_val_balanced_accuracy": 0.8},
        {"study": "s", "dataset": "d", "trial": "b", "epoch": 1, "status": "running",
         "val_balanced_accuracy": 0.65, "selected_epoch": None, "stage1_val_balanced_accuracy": None},
        {"study": "s", "dataset": "d", "trial": "b", "epoch": 2, "status": "completed",
         "val_balanced_accuracy": 0.5, "selected_epoch": 1, "stage1_val_balanced_accuracy": 0.6},
    ]
    values = at_selected_epoch(pl.DataFrame(rows), ("val_balanced_accuracy",)).sort("trial")
    assert values["trial"].to_list() == ["a", "b"]
    assert values["val_balanced_accuracy"].to_list() == [0.8, 0.65]


def test_the_baseline_arm_is_listed_unranked_and_compared_with_the_selected_trial(tmp_path):
    import shutil

    from analysis_fixtures import CONFIGS, write_trial

    from medguna.analysis.leaderboards import BASELINE_LABEL
    from medguna.analysis.report import leaderboard_text

    study = write_hand_study(tmp_path / "runs", with_optuna=False)
    # The reference variant at the paper's point, as medguna.study.baseline lays it out; its
    # validation score (0.99) would rank it first if it were ranked.
    folder = write_trial(study, "shenzhen", 7, CONFIGS["A"], 1, [0.90, 0.99, 0.95], test=0.60,
                         zeroshot=0.55, reference=True)
    baseline_dir = study / "shenzhen_baseline"
    baseline_dir.mkdir()
    shutil.move(folder, baseline_dir / "t0000_abcd0007_00007")
    rng = np.random.default_rng(4)
    coin = _probs(rng.random(N) < 0.5, confidence=0.6)
    selected = np.ones(N, dtype=bool)
    weaker = selected.copy()
    weaker[:12] = False  # 12 images the selected trial gets right and the baseline does not
    _write(next((study / "shenzhen").glob("t0001_*")), _probs(selected), coin)
    _write(baseline_dir / "t0000_abcd0007_00007", _probs(weaker), coin)
    results = load_results(study, progress=False)
    build_report(results, tmp_path / "analysis")
    board = pl.read_csv(tmp_path / "analysis" / "leaderboard_shenzhen.csv")
    assert board["rank"].drop_nulls().to_list() == [1, 2, 3, 4, 5]  # the hand study's, unchanged
    base = board.filter(pl.col("trial").str.starts_with("baseline/"))
    assert base.height == 1 and base["rank"][0] is None
    assert base["paper_hparams"][0] == BASELINE_LABEL
    top = board.filter(pl.col("rank") == 1).row(0, named=True)
    assert top["trial"].startswith("t0001") and top["verdict_role"] == "primary"
    # 12 discordant images all for the selected trial: exact p = 2 / 2^12.
    assert top["vs_reference_variant_discordant"] == 12
    assert top["vs_reference_variant"] == "better (p=0.000488, 12 discordant)"
    # Its paper's-hyperparameters comparison is against the search's ★ trial (t0000, which has no
    # predictions here), never against the baseline arm, though that one runs the paper's values too.
    assert "vs_paper_hparams" not in board.columns
    text = leaderboard_text(results)
    assert any(line.startswith("  unranked baseline/t0000_abcd0007_00007") and BASELINE_LABEL in line
               for line in text.splitlines())
