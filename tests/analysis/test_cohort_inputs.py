"""Trials that read different files under one name (a replaced checkpoint, an edited description
file) land in different cohorts, so no leaderboard ranks them together."""

from __future__ import annotations

import polars as pl

from medguna.analysis.cohorts import cohort_heading, cohort_title, with_input_split


def _rows(checkpoints, descriptions, sources):
    n = len(checkpoints)
    return pl.DataFrame({
        "study": ["s"] * n, "dataset": ["shenzhen"] * n, "trial": [f"t{i}" for i in range(n)],
        "cohort": ["real"] * n, "checkpoint_sha256": checkpoints, "descriptions_sha256": descriptions,
        "description_source": sources,
    })


def test_a_replaced_checkpoint_splits_the_cohort_and_one_version_keeps_it():
    rows = with_input_split(_rows(["aaaa1111ff", "aaaa1111ff", "bbbb2222ff"], ["d1"] * 3, ["curated"] * 3),
                            ("study", "dataset", "trial"))
    assert rows["cohort"].to_list() == ["real-ckptaaaa1111", "real-ckptaaaa1111", "real-ckptbbbb2222"]
    assert cohort_heading("real-ckptbbbb2222") == "Real data, full model (checkpoint sha256 bbbb2222)"
    assert cohort_title("real-ckptbbbb2222") == " [checkpoint sha256 bbbb2222]"
    assert cohort_title("synthetic-demo-ckptbbbb2222").endswith("— not a real result]")
    same = with_input_split(_rows(["aaaa1111ff"] * 2, ["d1", "d2"], ["curated", "templates"]))
    assert same["cohort"].to_list() == ["real", "real"]  # two sources, each one version: one cohort


def test_an_edited_description_file_splits_only_its_source_trials():
    rows = with_input_split(_rows(["c"] * 3, ["0123456789", "9876543210", "d2"],
                                  ["file:/d.json", "file:/d.json", "curated"]))
    assert rows["cohort"].to_list() == ["real-desc01234567", "real-desc98765432", "real"]


def test_every_epoch_of_a_trial_shares_its_cohort():
    rows = _rows(["aaaa1111ff", None, "bbbb2222ff"], ["d"] * 3, ["curated"] * 3).with_columns(
        pl.Series("trial", ["t0", "t0", "t1"]))
    assert with_input_split(rows, ("study", "dataset", "trial"))["cohort"].to_list() == [
        "real-ckptaaaa1111", "real-ckptaaaa1111", "real-ckptbbbb2222"]
