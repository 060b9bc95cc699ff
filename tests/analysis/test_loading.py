"""Reading study folders: states, provenance, cohorts, and clear errors on bad folders."""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl
import pytest
from analysis_fixtures import CONFIGS, write_hand_study, write_study_json, write_trial

from medguna.analysis.loading import load_results
from medguna.errors import DataError, MedgunaError


def _status(results, dataset: str) -> dict[str, str]:
    rows = results.trials.filter(pl.col("dataset") == dataset)
    return {r["trial"][:5]: r["trial_status"] for r in rows.iter_rows(named=True)}


def test_trial_states_follow_the_contract(hand_results):
    assert _status(hand_results, "shenzhen") == {
        "t0000": "completed",
        "t0001": "completed",
        "t0002": "completed",
        "t0003": "stopped_early",
        "t0004": "failed",
        "t0005": "completed",
        "t0006": "completed",
    }
    failed = hand_results.trials.filter(pl.col("trial") == "t0004_abcd0004_00004").row(
        0, named=True
    )
    assert failed["error_reason"].startswith("TrialError: loss became NaN at epoch 2")


def test_one_row_per_trial_and_epoch_with_config_names(hand_results):
    epochs = hand_results.epochs
    assert epochs.height == 17 + 9 + 3  # shenzhen 3+3+3+1+1+3+3, guangzhou 3x3, montgomery 3
    for column in (
        "dataset",
        "adapter_width",
        "prompt_length",
        "entropy_weight",
        "description_source",
        "variant",
        "seed",
        "data_source",
        "encoder",
        "epoch",
        "trial_status",
        "cohort",
        "val_balanced_accuracy",
    ):
        assert column in epochs.columns
    assert "method_variant" not in epochs.columns  # one name, from config to column
    t0001 = epochs.filter((pl.col("dataset") == "shenzhen") & (pl.col("trial_number") == 1))
    assert t0001["epoch"].to_list() == [1, 2, 3]
    assert t0001["val_balanced_accuracy"].to_list() == [0.70, 0.80, 0.75]
    assert t0001["adapter_width"].to_list() == [64, 64, 64]


def test_final_row_metrics_and_objective(hand_results):
    row = hand_results.trials.filter(
        (pl.col("dataset") == "shenzhen") & (pl.col("trial_number") == 5)
    ).row(0, named=True)
    assert row["selected_epoch"] == 3
    assert row["objective_selected"] == pytest.approx(0.76)
    assert row["test_balanced_accuracy"] == pytest.approx(0.70)
    assert row["zeroshot_test_balanced_accuracy"] == pytest.approx(0.55)
    stopped = hand_results.trials.filter(pl.col("trial_status") == "stopped_early").row(
        0, named=True
    )
    assert stopped["objective_selected"] is None  # never ranked
    assert stopped["objective_best_epoch"] == pytest.approx(0.90)  # its best stage-2 epoch
    assert stopped["objective_best_so_far"] == pytest.approx(0.93)  # what ASHA read: stage 1 alone


def test_synthetic_rows_get_their_own_cohort(hand_results):
    cohorts = dict(hand_results.trials.select("dataset", "cohort").unique().iter_rows())
    assert cohorts == {"shenzhen": "real", "guangzhou": "real", "montgomery": "synthetic"}


def test_test_size_model_and_nan_values(tmp_path):
    study = write_study_json(
        tmp_path / "tiny", "tiny", ["isic2018"], {"isic2018": "synthetic"}, checkpoint="test-size"
    )
    folder = write_trial(
        study,
        "isic2018",
        0,
        CONFIGS["A"],
        1,
        [0.5, 0.6],
        test=0.55,
        zeroshot=0.5,
        data_source="synthetic",
        checkpoint="test-size",
    )
    # Ray writes non-finite floats as bare NaN, which Polars' NDJSON reader rejects.
    text = (folder / "result.json").read_text().replace('"val_auroc": 0.5', '"val_auroc": NaN')
    (folder / "result.json").write_text(text)
    write_trial(
        study,
        "isic2018",
        1,
        CONFIGS["B"],
        1,
        [],
        zeroshot=0.5,
        data_source="synthetic",
        checkpoint="test-size",
    )  # started, reported nothing yet
    results = load_results(study, progress=False)
    assert results.trials["cohort"].to_list() == ["synthetic-testsize", "synthetic-testsize"]
    assert results.trials["trial_status"].to_list() == ["completed", "incomplete"]
    first = results.epochs.filter(pl.col("trial_number") == 0)
    assert first["val_auroc"].to_list() == [None, 0.6]
    # The trial without epochs keeps a row, with provenance from study.json.
    empty = results.epochs.filter(pl.col("trial_number") == 1).row(0, named=True)
    assert empty["epoch"] is None and empty["checkpoint"] == "test-size"


def test_missing_folder_and_study_json(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        load_results(tmp_path / "nowhere", progress=False)
    (tmp_path / "bare").mkdir()
    with pytest.raises(DataError, match=r"study\.json is missing"):
        load_results(tmp_path / "bare", progress=False)


def test_study_json_without_objective(tmp_path):
    (tmp_path / "s").mkdir()
    (tmp_path / "s" / "study.json").write_text(json.dumps({"study": "s", "datasets": ["shenzhen"]}))
    with pytest.raises(DataError, match="no key 'objective'"):
        load_results(tmp_path / "s", progress=False)


def test_empty_study_folder_is_an_error(tmp_path):
    study = write_study_json(tmp_path / "s", "s", ["shenzhen"], {"shenzhen": "real"})
    (study / "shenzhen").mkdir()
    with pytest.raises(MedgunaError, match="no trial folders"):
        load_results(study, progress=False)


def test_partial_trial_folder_names_the_file(tmp_path):
    study = write_study_json(tmp_path / "s", "s", ["shenzhen"], {"shenzhen": "real"})
    folder = write_trial(study, "shenzhen", 0, CONFIGS["A"], 1, [0.5], zeroshot=0.5)
    (folder / "params.json").unlink()
    with pytest.raises(DataError, match=r"t0000_abcd0000_00000/params\.json is missing"):
        load_results(study, progress=False)


def test_unreadable_study_json_and_params_name_the_file_and_the_repair(tmp_path):
    study = write_study_json(tmp_path / "s", "s", ["shenzhen"], {"shenzhen": "real"})
    folder = write_trial(study, "shenzhen", 0, CONFIGS["A"], 1, [0.5], zeroshot=0.5)
    (folder / "params.json").write_text('{"lr": 0.0')
    with pytest.raises(DataError, match=r"t0000_abcd0000_00000/params\.json is not readable JSON "
                                        r"\(JSONDecodeError: .*\); it holds the trial's hyperparameters: "
                                        r"copy it again or delete the trial"):
        load_results(study, progress=False)
    (folder / "params.json").write_bytes(b"\xff\xfe")
    with pytest.raises(DataError, match=r"params\.json is not text .*copy it again or delete the trial"):
        load_results(study, progress=False)
    (study / "study.json").write_text('["s"]')
    with pytest.raises(DataError, match=r"s/study\.json holds list, not a JSON object; rewrite or restore it"):
        load_results(study, progress=False)


def test_a_trial_that_failed_before_it_started_is_a_failed_row(tmp_path):
    # Ray writes only error.txt when a trial fails before it starts (an actor it could not reuse).
    study = write_study_json(tmp_path / "s", "s", ["shenzhen"], {"shenzhen": "real"})
    write_trial(study, "shenzhen", 0, CONFIGS["A"], 1, [0.5], zeroshot=0.5)
    broken = study / "shenzhen" / "t0001_abcd0001_00001"
    broken.mkdir()
    (broken / "error.txt").write_text("Failure # 1\nTrainable runner reuse requires reset_config() to be "
                                      "implemented and return True.\n")
    trials = load_results(study, progress=False).trials.sort("trial_number")
    assert trials.height == 2 and trials["trial_status"][1] == "failed"
    assert trials["error_reason"][1].startswith("Trainable runner reuse requires reset_config()")


def test_corrupt_result_line_names_file_and_line(tmp_path):
    study = write_study_json(tmp_path / "s", "s", ["shenzhen"], {"shenzhen": "real"})
    folder = write_trial(study, "shenzhen", 0, CONFIGS["A"], 1, [0.5, 0.6], zeroshot=0.5)
    lines = (folder / "result.json").read_text().splitlines()
    (folder / "result.json").write_text(lines[0] + "\n" + lines[1][:40] + "\n")
    with pytest.raises(DataError, match=r"result\.json line 2 is not valid JSON"):
        load_results(study, progress=False)


def test_missing_dataset_folder_becomes_a_note(tmp_path):
    study = write_study_json(
        tmp_path / "s", "s", ["shenzhen", "idrid"], {"shenzhen": "real", "idrid": "real"}
    )
    write_trial(study, "shenzhen", 0, CONFIGS["A"], 1, [0.5], zeroshot=0.5)
    results = load_results(study, progress=False)
    assert any("idrid" in note for note in results.notes)


def test_same_study_name_twice_is_refused(tmp_path: Path):
    for root in ("a", "b"):
        study = write_study_json(tmp_path / root / "s", "s", ["shenzhen"], {"shenzhen": "real"})
        write_trial(study, "shenzhen", 0, CONFIGS["A"], 1, [0.5], zeroshot=0.5)
    with pytest.raises(DataError, match="both hold study 's'"):
        load_results([tmp_path / "a" / "s", tmp_path / "b" / "s"], progress=False)


def test_a_study_whose_trials_all_failed_before_any_epoch_loads_as_failed(tmp_path):
    # A checkpoint every trial fails to load: no result rows at all, only params and error.txt.
    study = write_study_json(tmp_path / "s", "s", ["idrid"], {"idrid": "real"})
    for number in (1, 2):
        write_trial(study, "idrid", number, CONFIGS["A"], seed=number, val=[], zeroshot=0.2,
                    error="CheckpointError: checkpoint path /nowhere does not exist")
    results = load_results([study], progress=False)
    assert results.trials["trial_status"].to_list() == ["failed", "failed"]
    assert results.trials["error_reason"].to_list() == ["CheckpointError: checkpoint path /nowhere does not exist"] * 2
    assert results.epochs.height == 2 and results.epochs["epoch"].null_count() == 2


def test_analysis_ranks_an_earlier_study_by_its_selected_objective(tmp_path):
    study = write_hand_study(tmp_path, with_optuna=False)
    for result in study.glob("*/t*/result.json"):  # back to the names rows had before
        rows = [json.loads(line) for line in result.read_text().splitlines() if line.strip()]
        for row in rows:
            if "objective_selected" in row:
                row["objective_value"] = row.pop("objective_selected")
            row["method_variant"] = row.pop("variant")
        result.write_text("".join(json.dumps(row) + "\n" for row in rows))
    trials = load_results(study, progress=False).trials
    row = trials.filter((pl.col("dataset") == "shenzhen") & (pl.col("trial_number") == 5)).row(0, named=True)
    assert row["objective_selected"] == pytest.approx(0.76) and row["variant"] == "medguna"
    assert "objective_value" not in trials.columns and "method_variant" not in trials.columns
