"""The report's answer card per dataset, from a hand-made summary row."""

from __future__ import annotations

import polars as pl

from medguna.analysis.html_summary import summary_section

METRIC = "balanced_accuracy"


def _row(**extra) -> dict:
    return {
        "dataset": "shenzhen", "cohort": "real", "trials": 3, "completed": 2, "stopped_early": 1,
        "failed": 0, "incomplete": 0, "stage1_alone": 1, "confirm_trials": 2, "trial": "t0002_ab",
        "configuration": "adapter_width=64", "tied_first": 1, "selected_epoch": 1,
        "objective_selected": 0.853, "is_paper_point": False, f"test_{METRIC}": 0.833,
        f"test_{METRIC}_ci95_test_images_low": 0.762, f"test_{METRIC}_ci95_test_images_high": 0.905,
        f"zeroshot_test_{METRIC}": 0.650, "gain_vs_zeroshot": 0.183, "vs_zeroshot": "better (p=0.0213, 42 discordant)",
        f"paper_test_{METRIC}": 0.713, "gain_vs_paper": 0.120, "vs_paper_hparams": None,
        "confirm_seeds": 2, "confirm_interval": "0.637-0.662 (range of 2 seeds)", **extra,
    }


def test_the_confirmation_line_says_how_far_fresh_seeds_land_from_the_selected_trial():
    below = summary_section(pl.DataFrame([_row(**{f"confirm_test_{METRIC}_mean": 0.650})]), METRIC)
    # 0.650 - 0.833 = -0.183: the selected trial's score did not hold on fresh seeds.
    assert ("confirmation, 2 fresh seeds: mean test 0.650, 0.637-0.662 (range of 2 seeds); "
            "0.183 below the search trial's 0.833</li>") in below
    above = summary_section(pl.DataFrame([_row(**{f"confirm_test_{METRIC}_mean": 0.845})]), METRIC)
    assert "; 0.012 above the search trial's 0.833</li>" in above
    same = summary_section(pl.DataFrame([_row(**{f"confirm_test_{METRIC}_mean": 0.833})]), METRIC)
    assert "; the same as the search trial's</li>" in same
    assert "vs the paper's hyperparameters (0.713): <b>+0.120</b>" in below
