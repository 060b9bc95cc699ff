"""Leaderboards, seeds and effects on the hand-made study, checked against hand computation
(see analysis_fixtures for the values)."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from medguna.analysis.effects import effect_table
from medguna.analysis.leaderboards import across_leaderboard, dataset_leaderboard, seeds_table


def test_dataset_leaderboard_order_gains_and_reference(hand_results):
    board = dataset_leaderboard(hand_results.trials, "shenzhen", hand_results.param_names)
    assert [t[:5] for t in board["trial"]] == [
        "t0001",
        "t0006",
        "t0005",
        "t0000",
        "t0002",
        "t0003",
        "t0004",
    ]
    assert board["rank"].to_list() == [1, 2, 3, 4, 5, None, None]
    assert board["trial_status"].to_list()[-2:] == ["stopped_early", "failed"]
    assert board["gain_balanced_accuracy"].to_list()[:5] == pytest.approx(
        [0.19, 0.23, 0.15, 0.13, 0.03]
    )
    assert board["paper_hparams"].to_list()[3] == "★ paper's hyperparameters"
    notes = board["note"].to_list()
    # ASHA judged it by its best so far, stage 1 alone (0.93), not by its epoch 1 (0.90).
    assert notes[5] == "stopped after epoch 1 of 3 (best val so far 0.93, stage 1 alone; stage 2's best 0.9)"
    assert notes[6].startswith("TrialError: loss became NaN")
    # The searched parameters are columns; fixed ones (batch_size) are not.
    assert {"adapter_width", "prompt_length", "entropy_weight", "description_source"} <= set(
        board.columns
    )
    assert "batch_size" not in board.columns


def test_a_stopped_trial_whose_validation_collapsed_says_so(hand_results):
    trials = hand_results.trials.with_columns(
        pl.when(pl.col("trial_status") == "stopped_early").then(1.0).otherwise(pl.col("ever_collapsed"))
        .alias("ever_collapsed"))
    board = dataset_leaderboard(trials, "shenzhen", hand_results.param_names)
    stopped = board.filter(pl.col("trial_status") == "stopped_early")["note"].to_list()
    note = ("stopped after epoch 1 of 3 (best val so far 0.93, stage 1 alone; stage 2's best 0.9;"
            " validation collapsed to one class)")
    assert stopped == [note]


def test_across_datasets_by_mean_rank_then_gain(hand_results):
    across = across_leaderboard(hand_results.trials, hand_results.param_names)
    real = across.filter(pl.col("cohort") == "real")
    # Shenzhen ranks B 1 (mean of seeds 0.78), A 2, C 3; guangzhou C 1, B 2, A 3.
    assert real["adapter_width"].to_list() == [64, 128, 0]
    assert real["mean_rank"].to_list() == [1.5, 2.0, 2.5]
    assert real["mean_gain_balanced_accuracy"].to_list() == pytest.approx([0.115, 0.065, 0.095])
    assert real["coverage"].to_list() == ["2/2", "2/2", "2/2"]
    assert real["paper_hparams"].to_list() == ["", "", "★ paper's hyperparameters"]
    synthetic = across.filter(pl.col("cohort") == "synthetic")
    assert synthetic.height == 1 and synthetic["ranks"][0] == "montgomery:1"


def test_seed_spread_is_the_range_below_five_seeds(hand_results):
    seeds = seeds_table(hand_results.trials, hand_results.param_names)
    assert seeds.height == 1  # only B on shenzhen ran with several seeds
    row = seeds.row(0, named=True)
    assert row["seeds"] == "1, 2, 3" and row["n"] == 3
    # Tests 0.74, 0.70, 0.78: mean 0.74, the range (not a t interval) 0.70-0.78.
    assert row["test_balanced_accuracy_mean"] == pytest.approx(0.74)
    assert row["interval_over_seeds"] == "range"
    assert (row["test_balanced_accuracy_low_seeds"], row["test_balanced_accuracy_high_seeds"]) == (
        pytest.approx(0.70), pytest.approx(0.78))
    assert row["test_balanced_accuracy_over_seeds"] == "0.700-0.780 (range of 3 seeds)"
    assert row["gain_balanced_accuracy_mean"] == pytest.approx(0.19)
    assert row["objective_high_seeds"] == pytest.approx(0.80) and row["seeds_note"] == ""
    assert "test_balanced_accuracy_ci_low" not in seeds.columns


def test_two_seeds_show_their_range_and_agreeing_seeds_say_so():
    from medguna.analysis.stats import seed_summary

    two = seed_summary([0.78, 0.80])
    assert (two.kind, two.low, two.high) == ("range", 0.78, 0.80)
    assert two.text() == "0.780-0.800 (range of 2 seeds)"
    # The t interval over these two would be 0.79 +- 12.706 * 0.01414 / sqrt 2: [0.663, 0.917];
    # over 0.5 and 0.95 it would leave [0, 1]. The range never does.
    wide = seed_summary([0.5, 0.95])
    assert (wide.low, wide.high) == (0.5, 0.95)
    agree = seed_summary([0.783, 0.783])
    assert agree.zero_width and agree.text() == "0.783-0.783 (range of 2 seeds; seeds agree, zero width)"
    # Float summation puts numpy's mean of three of the confirmation's 0.8333333333333333 one ulp
    # above them.
    value = 0.8333333333333333
    assert np.array([value] * 3).mean() > value
    same = seed_summary([value] * 3)
    assert same.low <= same.mean <= same.high
    one = seed_summary([0.7])
    assert (one.low, one.high, one.text()) == (None, None, "0.700 (one seed: no spread)")


def test_five_seeds_get_a_percentile_bootstrap_inside_the_values():
    from medguna.analysis.stats import seed_summary

    values = [0.90, 0.95, 0.99, 1.0, 1.0]
    summary = seed_summary(values)
    assert summary.kind == "percentile bootstrap" and summary.mean == pytest.approx(0.968)
    # Every resample mean lies within [min, max], so the interval cannot leave [0, 1].
    assert 0.90 <= summary.low < summary.mean < summary.high <= 1.0
    assert summary.text().endswith("(95% percentile bootstrap over 5 seeds)")


def test_effect_of_description_source(hand_results):
    table = effect_table(hand_results.trials, "description_source")
    llm = table.filter(
        (pl.col("dataset") == "shenzhen") & (pl.col("description_source") == "llm")
    ).row(0, named=True)
    assert llm["n"] == 3
    assert llm["objective_median"] == pytest.approx(0.78)
    assert llm["objective_q25"] == pytest.approx(0.77)
    assert llm["objective_iqr"] == pytest.approx(0.02)
    assert llm["gain_balanced_accuracy_iqr"] == pytest.approx(0.04)
    # Stopped (C, seed 2) and failed (A, seed 2) trials are not counted.
    counts = dict(
        table.filter(pl.col("dataset") == "shenzhen").select("description_source", "n").iter_rows()
    )
    assert counts == {"class_name": 1, "lafter": 1, "llm": 3}


def test_buckets_of_prompt_length_and_entropy_weight(hand_results):
    prompt = effect_table(hand_results.trials, "prompt_length").filter(
        pl.col("dataset") == "shenzhen"
    )
    assert prompt["prompt_length"].to_list() == ["0 (no prompts)", "1-16", "65-128"]
    entropy = effect_table(hand_results.trials, "entropy_weight").filter(
        pl.col("dataset") == "shenzhen"
    )
    assert entropy["entropy_weight"].to_list() == ["(0, 0.5]", "(0.5, 1]", "(1, 2]"]
    assert entropy["n"].to_list() == [3, 1, 1]


def test_test_selected_figure_is_kept_labelled_but_never_ranked(tmp_path):
    """runtime.protocol=reference adds test_selected_* (chosen on test): the trials table keeps
    it with its note; leaderboards rank by validation and never show or rank by it."""
    import json

    from analysis_fixtures import CONFIGS, write_study_json, write_trial

    from medguna.analysis.loading import load_results
    from medguna.errors import DataError

    study = write_study_json(tmp_path / "proto", "proto", ["shenzhen"], {"shenzhen": "real"})
    # t0000: best on validation (0.80) but worst test_selected; t0001 the reverse.
    for number, (config, val, selected) in enumerate([("A", [0.70, 0.80], 0.60), ("B", [0.50, 0.55], 0.99)]):
        folder = write_trial(study, "shenzhen", number, CONFIGS[config], 1, val, zeroshot=0.5, test=0.7)
        lines = (folder / "result.json").read_text().splitlines()
        final = json.loads(lines[-1])
        final.update({"protocol": "reference", "test_selected_epoch": 1, "test_selected_accuracy": selected,
                      "test_selected_balanced_accuracy": selected,
                      "test_selected_note": "optimistic: chosen on test, as the reference reports"})
        (folder / "result.json").write_text("\n".join([*lines[:-1], json.dumps(final)]) + "\n")
    results = load_results(study, progress=False)
    assert results.trials["test_selected_accuracy"].to_list() == [0.60, 0.99]
    assert set(results.trials["test_selected_note"]) == {"optimistic: chosen on test, as the reference reports"}
    board = dataset_leaderboard(results.trials, "shenzhen", results.param_names)
    assert [t[:5] for t in board["trial"]] == ["t0000", "t0001"] and board["rank"].to_list() == [1, 2]
    across = across_leaderboard(results.trials, results.param_names)
    for table in (board, across):
        assert not [c for c in table.columns if "test_selected" in c]
    for metric in ("selected_accuracy", "test_selected_accuracy"):
        with pytest.raises(DataError, match="test_selected_\\* is chosen on test and never ranked"):
            dataset_leaderboard(results.trials, "shenzhen", results.param_names, metric)
        with pytest.raises(DataError, match="never ranked"):
            across_leaderboard(results.trials, results.param_names, metric)
