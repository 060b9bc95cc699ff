"""Controls and protocols are cohorts of their own: never ranked with ordinary trials, labelled
wherever they appear; results written under the earlier paper-point name still load."""

from __future__ import annotations

import json

import polars as pl
import pytest
from analysis_fixtures import CONFIGS, write_hand_study, write_study_json, write_trial

from medguna.analysis.cohorts import cohort_label, cohort_slug
from medguna.analysis.console_text import leaderboard_text
from medguna.analysis.effects import effect_table
from medguna.analysis.leaderboards import dataset_leaderboard
from medguna.analysis.loading import load_results
from medguna.analysis.report import build_report

ORACLE = "real-control_oracle_pseudo_labels"


@pytest.fixture(scope="module")
def with_oracle(tmp_path_factory):
    root = tmp_path_factory.mktemp("runs")
    ordinary = write_hand_study(root, with_optuna=False)
    oracle = write_study_json(root / "oracle", "oracle", ["shenzhen"], {"shenzhen": "real"})
    # Trained on the true labels: a validation score no ordinary trial reaches.
    write_trial(oracle, "shenzhen", 0, CONFIGS["B"], 1, [0.90, 0.95, 0.97], test=0.96,
                zeroshot=0.55, control="oracle_pseudo_labels")
    write_trial(oracle, "shenzhen", 1, CONFIGS["C"], 1, [0.85, 0.93, 0.91], test=0.92,
                zeroshot=0.55, control="oracle_pseudo_labels")
    reference = write_study_json(root / "refproto", "refproto", ["shenzhen"], {"shenzhen": "real"})
    write_trial(reference, "shenzhen", 0, CONFIGS["B"], 1, [0.70, 0.99, 0.75], test=0.80,
                zeroshot=0.55, protocol="reference")
    return load_results([ordinary, oracle, reference], progress=False)


def test_an_oracle_control_is_not_ranked_with_ordinary_trials(with_oracle):
    board = dataset_leaderboard(with_oracle.trials, "shenzhen", with_oracle.param_names)
    ordinary = board.filter(pl.col("cohort") == "real")
    # The hand study's ranks, unchanged by the control's 0.97 and 0.93 on validation.
    assert [t[:5] for t in ordinary.filter(pl.col("rank").is_not_null())["trial"]] == [
        "t0001", "t0006", "t0005", "t0000", "t0002"]
    assert ordinary["rank"].drop_nulls().to_list() == [1, 2, 3, 4, 5]
    control = board.filter(pl.col("cohort") == ORACLE)
    assert control["study"].unique().to_list() == ["oracle"]
    assert control["rank"].to_list() == [1, 2]  # ranked among controls only
    protocol = board.filter(pl.col("cohort") == "real-protocol_reference")
    assert protocol["rank"].to_list() == [1] and protocol["study"][0] == "refproto"


def test_controls_and_protocols_are_labelled_everywhere(with_oracle, tmp_path):
    assert cohort_label(ORACLE) == "CONTROL runtime.control=oracle_pseudo_labels"
    assert cohort_slug("real", "/ckpt", "oracle_pseudo_labels") == ORACLE
    assert cohort_slug("real", "/ckpt", "none", "validation") == "real"
    build_report(with_oracle, tmp_path)
    board = (tmp_path / "leaderboard_shenzhen.md").read_text()
    assert "## CONTROL runtime.control=oracle_pseudo_labels (not a real result)" in board
    assert "## PROTOCOL runtime.protocol=reference (not a real result)" in board
    across = (tmp_path / "leaderboard_across.md").read_text()
    assert "CONTROL runtime.control=oracle_pseudo_labels" in across
    text = leaderboard_text(with_oracle)
    assert "shenzhen [CONTROL runtime.control=oracle_pseudo_labels — not a real result]" in text
    # The console's ordinary shenzhen line still starts from the ordinary study's best.
    lines = text.splitlines()
    heading = next(i for i, line in enumerate(lines)
                   if line.startswith("shenzhen: 5 completed, 1 stopped_early, 1 failed; zero-shot test 0.550"))
    assert lines[heading].endswith("completed trials kept stage 1 alone")  # the count follows
    first = lines[heading + 1]
    assert first.startswith("  #1 t0001_abcd0001_00001: test 0.740")


def test_results_written_as_is_reference_config_load_as_the_paper_point(tmp_path):
    study = write_hand_study(tmp_path, with_optuna=False)
    for params_file in study.glob("*/t*/params.json"):
        params = json.loads(params_file.read_text())
        flag = params.pop("is_paper_point")
        params_file.write_text(json.dumps(params))
        # The reporter tagged every result row, under the earlier name.
        result = params_file.parent / "result.json"
        rows = [{**json.loads(line), "is_reference_config": flag} for line in result.read_text().splitlines()]
        result.write_text("".join(json.dumps(row) + "\n" for row in rows))
    trials = load_results(study, progress=False).trials
    assert "is_reference_config" not in trials.columns
    marked = trials.filter(pl.col("is_paper_point")).sort("dataset")
    assert marked["dataset"].to_list() == ["guangzhou", "montgomery", "shenzhen"]


def test_effects_count_stage1_alone_and_show_no_iqr_for_one_trial(tmp_path):
    study = write_study_json(tmp_path / "s", "s", ["shenzhen"], {"shenzhen": "real"})
    A, B = CONFIGS["A"], CONFIGS["B"]
    # Objective values 0.70 and 0.80 (A, one kept stage 1 alone), 0.76 (B, stage 2 kept).
    write_trial(study, "shenzhen", 0, A, 1, [0.60, 0.70, 0.65], test=0.68, zeroshot=0.55)
    write_trial(study, "shenzhen", 1, A, 2, [0.70, 0.80, 0.75], test=0.74, zeroshot=0.55, selected_epoch=0)
    write_trial(study, "shenzhen", 2, B, 1, [0.70, 0.72, 0.76], test=0.70, zeroshot=0.55)
    trials = load_results(study, progress=False).trials
    every = effect_table(trials, "description_source").sort("description_source")
    assert every["description_source"].to_list() == ["lafter", "llm"]
    assert every["n"].to_list() == [2, 1] and every["n_stage1_alone"].to_list() == [1, 0]
    lafter, llm = every.row(0, named=True), every.row(1, named=True)
    # Two values: linear quartiles of the objectives of the two A trials.
    assert lafter["objective_median"] == pytest.approx(0.75)
    assert lafter["objective_iqr"] == pytest.approx(0.05)
    # One value: no quartiles (a dash in Markdown), never an IQR of 0.
    assert llm["objective_median"] == pytest.approx(0.76)
    assert (llm["objective_q25"], llm["objective_iqr"]) == (None, None)
    kept = effect_table(trials, "description_source", stage2_only=True).sort("description_source")
    assert kept["n"].to_list() == [1, 1] and kept["n_stage1_alone"].to_list() == [0, 0]


def _set_rows(folder, **values):
    lines = [json.loads(line) for line in (folder / "result.json").read_text().splitlines()]
    for row in lines:
        row.update({k: v for k, v in values.items() if not k.startswith("stage1_") or "status" in row})
    (folder / "result.json").write_text("".join(json.dumps(row) + "\n" for row in lines))


def test_teacher_agreement_is_checked_over_stage2_epochs_only(tmp_path):
    from medguna.analysis.selection_check import selection_check

    study = write_study_json(tmp_path / "s", "s", ["shenzhen"], {"shenzhen": "real"})
    A, B, C = CONFIGS["A"], CONFIGS["B"], CONFIGS["C"]
    kept1 = write_trial(study, "shenzhen", 0, A, 1, [0.60, 0.62, 0.61], test=0.60, zeroshot=0.55,
                        selected_epoch=0)
    # Stage 1 alone agrees with its own labels: 1.0 by construction, whatever its test score.
    _set_rows(kept1, stage1_val_teacher_agreement=1.0, stage1_val_balanced_accuracy=0.7)
    for number, config, agreement, test in ((1, B, 0.70, 0.66), (2, C, 0.80, 0.70), (3, A, 0.90, 0.75)):
        folder = write_trial(study, "shenzhen", number, config, number + 1, [0.60, 0.70, 0.65], test=test,
                             zeroshot=0.55)
        _set_rows(folder, val_teacher_agreement=agreement)
    results = load_results(study, progress=False)
    row = selection_check(results.trials, results.epochs).filter(
        pl.col("criterion") == "val_teacher_agreement").row(0, named=True)
    assert (row["measured_over"], row["n_stage1_alone_left_out"], row["n_trials"]) == (
        "stage-2 epochs only", 1, 3)
    # Agreement 0.70 < 0.80 < 0.90 against tests 0.66 < 0.70 < 0.75: tau 1, picks t0003.
    assert row["kendall_tau"] == pytest.approx(1.0)
    assert row["picked_trial"].startswith("t0003") and row["cost_vs_best"] == pytest.approx(0.0)
    labelled = selection_check(results.trials, results.epochs).filter(
        pl.col("criterion") == "val_balanced_accuracy").row(0, named=True)
    assert (labelled["measured_over"], labelled["n_trials"]) == ("selected epoch", 4)


def test_a_trial_ray_failed_before_params_json_is_a_failed_row(tmp_path):
    from medguna.analysis.console_text import short_leaderboard

    study = write_hand_study(tmp_path, with_optuna=False)
    folder = study / "montgomery" / "t0003_41a8d4f6"
    folder.mkdir()
    reason = "Trainable runner reuse requires reset_config() to be implemented and return True."
    (folder / "error.txt").write_text(f"Failure # 1 (occurred at 2026-12-06_13-40-25)\n{reason}\n")
    trials = load_results(study, progress=False).trials
    row = trials.filter(pl.col("trial") == "t0003_41a8d4f6").row(0, named=True)
    assert (row["trial_status"], row["dataset"]) == ("failed", "montgomery")
    assert reason in row["error_reason"]
    text = short_leaderboard(study)  # the report is written, not refused
    # Its missing params are not another value: fixed ones (batch_size) do not become searched.
    assert "montgomery" in text and "batch_size" not in text
