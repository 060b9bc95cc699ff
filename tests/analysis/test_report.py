"""The whole report: files written and read back, labels, the runner's short leaderboard, CLI."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import polars as pl
import pytest
from analysis_fixtures import CONFIGS, write_study_json, write_trial

from medguna.analysis.console_text import short_leaderboard
from medguna.analysis.report import write_report
from medguna.errors import DataError

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def report_dir(hand_study: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("report")
    index = write_report([hand_study], out, progress=False)
    assert index == out / "index.md"
    return out


def test_every_table_in_three_formats(report_dir):
    stems = [
        "leaderboard_shenzhen",
        "leaderboard_guangzhou",
        "leaderboard_montgomery",
        "leaderboard_across",
        "effects_description_source",
        "effects_prompt_length",
        "effects_adapter_width",
        "effects_entropy_weight",
        "importance_shenzhen",
        "importance_montgomery",
        "seeds",
    ]
    for stem in stems:
        for suffix in ("md", "csv", "parquet"):
            assert (report_dir / f"{stem}.{suffix}").is_file(), f"{stem}.{suffix}"
    board = pl.read_parquet(report_dir / "leaderboard_shenzhen.parquet")
    from_csv = pl.read_csv(report_dir / "leaderboard_shenzhen.csv")
    assert board["trial"].to_list() == from_csv["trial"].to_list()
    assert board["rank"].to_list() == [1, 2, 3, 4, 5, None, None]


def test_markdown_sections_keep_synthetic_apart(report_dir):
    across = (report_dir / "leaderboard_across.md").read_text()
    real_at = across.index("## Real data, full model")
    synthetic_at = across.index("## SYNTHETIC DATA (not a real result)")
    assert real_at < synthetic_at
    assert "montgomery" not in across[real_at:synthetic_at]
    montgomery = (report_dir / "leaderboard_montgomery.md").read_text()
    assert "SYNTHETIC DATA" in montgomery and "Real data" not in montgomery
    shenzhen = (report_dir / "leaderboard_shenzhen.md").read_text()
    assert "| 4 | t0000_abcd0000_00000 | completed | ★ paper's hyperparameters |" in shenzhen
    assert "★ reference" not in shenzhen
    assert "| +0.190 |" in shenzhen


def test_the_summary_markdown_is_the_answer_and_the_csv_keeps_every_column(report_dir):
    md = (report_dir / "summary.md").read_text()
    header = next(line for line in md.splitlines() if line.startswith("| dataset |"))
    assert header.split(" | ")[:4] == ["| dataset", "trial", "configuration", "selected_epoch"]
    assert "vs_paper_hparams" in header and "tied_first" not in header
    # Shenzhen's pick is t0001 (B, seed 1): test 0.74 against zero-shot 0.55 (the paper's point: 0.68).
    shenzhen = next(line for line in md.splitlines() if line.startswith("| shenzhen |"))
    assert "| t0001_abcd0001_00001 |" in shenzhen and "| +0.190 |" in shenzhen
    csv = pl.read_csv(report_dir / "summary.csv")
    assert {"tied_first", "trials", "zeroshot_test_balanced_accuracy"} <= set(csv.columns)


def test_figures_are_pngs_named_by_cohort(report_dir):
    figures = sorted(p.name for p in (report_dir / "figures").glob("*.png"))
    assert "zeroshot_vs_adapted_real.png" in figures
    assert "zeroshot_vs_adapted_synthetic.png" in figures
    assert "history_montgomery_synthetic.png" in figures
    assert "params_shenzhen_real.png" in figures and "curves_shenzhen_real.png" in figures
    for name in figures:
        assert (report_dir / "figures" / name).read_bytes()[:8] == PNG_MAGIC


def test_index_links_tables_figures_and_notes(report_dir):
    index = (report_dir / "index.md").read_text()
    assert "[CSV](leaderboard_across.csv)" in index
    assert "![history_shenzhen_real](figures/history_shenzhen_real.png)" in index
    assert "**Warning:**" in index and "SYNTHETIC DATA" in index
    assert "| real | handmade | shenzhen | 5 | 1 | 1 | 0 | 7 |" in index
    assert "importance skipped" in index


def test_short_leaderboard(hand_study):
    text = short_leaderboard(hand_study, top=2)
    lines = text.splitlines()
    shenzhen = lines.index("shenzhen: 5 completed, 1 stopped_early, 1 failed; zero-shot test 0.550; "
                           "0 of 5 completed trials kept stage 1 alone")
    assert lines[shenzhen + 1].startswith(
        "  #1 t0001_abcd0001_00001: test 0.740 (+0.190), val 0.800"
    )
    assert lines[shenzhen + 2].startswith("  #2 t0006")
    assert lines[shenzhen + 3].startswith("  #4 t0000") and lines[shenzhen + 3].endswith(
        "★ paper's hyperparameters"
    )
    assert any(line.startswith("montgomery [SYNTHETIC DATA") for line in lines)


def test_a_row_that_kept_stage1_alone_says_so():
    from medguna.analysis.console_text import short_row

    row = {"rank": 1, "trial": "t0001", "trial_status": "completed", "paper_hparams": "",
           "test_balanced_accuracy": 0.8, "gain_balanced_accuracy": 0.1, "objective_selected": 0.7,
           "selected_epoch": 0}
    assert short_row(row, ["adapter_width"], "balanced_accuracy").startswith(
        "#1 t0001: test 0.800 (+0.100), val 0.700 (stage 1 alone) [adapter_width=")
    assert "stage 1" not in short_row({**row, "selected_epoch": 2}, ["adapter_width"], "balanced_accuracy")


def test_default_out_dir_and_test_size_label(tmp_path):
    study = write_study_json(
        tmp_path / "tiny", "tiny", ["shenzhen"], {"shenzhen": "real"}, checkpoint="test-size"
    )
    write_trial(
        study,
        "shenzhen",
        0,
        CONFIGS["A"],
        1,
        [0.5, 0.6],
        test=0.55,
        zeroshot=0.5,
        checkpoint="test-size",
        reference=True,
    )
    index = write_report(study, progress=False)
    assert index == study / "analysis" / "index.md"
    board = (study / "analysis" / "leaderboard_shenzhen.md").read_text()
    assert "## TEST-SIZE MODEL (not a real result)" in board
    assert (study / "analysis" / "figures" / "history_shenzhen_real-testsize.png").is_file()
    seeds = (study / "analysis" / "seeds.md").read_text()
    assert "no configuration ran with several seeds" in seeds


def test_empty_study_gives_a_clear_error(tmp_path):
    study = write_study_json(tmp_path / "s", "s", ["shenzhen"], {"shenzhen": "real"})
    with pytest.raises(DataError, match="no trial folders"):
        write_report(study, tmp_path / "out", progress=False)


def _cli():
    path = Path(__file__).resolve().parents[2] / "analysis" / "leaderboard.py"
    spec = importlib.util.spec_from_file_location("leaderboard_cli", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_command_line(hand_study, tmp_path, capsys):
    cli = _cli()
    assert cli.main([str(hand_study), "--out", str(tmp_path / "out")]) == 0
    printed = capsys.readouterr().out
    assert "#1 t0001_abcd0001_00001" in printed and "Across datasets" in printed
    assert (tmp_path / "out" / "index.md").is_file()
    assert cli.main([str(tmp_path / "missing")]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_a_study_whose_every_trial_failed_at_start_reports_the_reasons(tmp_path):
    # What Ray leaves when a trial fails before its first report: params.json without the
    # is_paper_point tag, an empty result.json, and error.txt.
    import json

    study = write_study_json(tmp_path / "broken", "broken", ["montgomery"], {"montgomery": "real"})
    reasons = ["medguna.errors.DataError: cannot decode image a.png; replace or delete the file"] * 2 + [
        "medguna.errors.DataError: image file not found: b.png"]
    for number, reason in enumerate(reasons, start=1):
        folder = study / "montgomery" / f"t{number:04d}_abc{number}"
        folder.mkdir(parents=True)
        (folder / "params.json").write_text(json.dumps({"adapter_width": 0, "dataset": "montgomery"}))
        (folder / "result.json").write_text("")
        (folder / "error.txt").write_text(f"Traceback (most recent call last):\n  ...\n{reason}\n")
    text = short_leaderboard(study)
    assert "montgomery: 3 failed" in text
    assert f"  2 failed: {reasons[0]}" in text and f"  1 failed: {reasons[2]}" in text
    out = write_report([study], None)
    assert "| real | broken | montgomery | 0 | 0 | 3 | 0 | 3 |" in out.read_text()
    assert "image file not found: b.png" in (out.parent / "leaderboard_montgomery.md").read_text()


def test_the_console_says_how_many_trials_kept_stage1_alone():
    import polars as pl

    from medguna.analysis.console_text import stage1_alone_text

    completed = pl.DataFrame({"selected_epoch": [0, 2, 0]})
    assert stage1_alone_text(completed) == "; 2 of 3 completed trials kept stage 1 alone"
    assert stage1_alone_text(completed.head(0)) == ""
