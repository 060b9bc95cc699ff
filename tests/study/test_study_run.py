"""A real small study on synthetic data: Ray Tune + Optuna, results, TensorBoard, Optuna export."""

from __future__ import annotations

import glob
import json
from itertools import takewhile
from pathlib import Path

import optuna
import polars as pl
import pytest
import torch
from conftest import tiny_overrides

from medguna.compose import compose_study
from medguna.errors import ConfigError
from medguna.results import COMPLETE_MARKER
from medguna.study.runner import run_study

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def small_study(tmp_path_factory, shared_cache, local_ray):
    tmp = tmp_path_factory.mktemp("study")
    cfg = compose_study(["study=chestxray", "study.datasets=[montgomery]", "study.demo_num_samples=3",
                         *tiny_overrides(tmp, shared_cache),
                         "search.space.prompt_length.choices=[0,4,113]",
                         # Without ASHA: on the demonstration encoder trials differ, so ASHA may stop
                         # one after epoch 1 depending on finishing order; these tests check that every
                         # trial runs all its epochs and writes everything.
                         "search.scheduler=none"])
    lines: list[str] = []
    plan = run_study(cfg, log=lines.append)
    return plan, Path(plan.study_dir), "\n".join(lines)


def _trial_dirs(exp: Path) -> list[Path]:
    return sorted(p for p in exp.iterdir() if p.is_dir() and p.name.startswith("t0"))


def test_banner_says_what_runs(small_study):
    plan, _, log = small_study
    assert plan.budget == "demo"
    assert "DEMONSTRATION" in log and "SYNTHETIC" in log and "DEMONSTRATION encoder" in log and "not MedCLIP" in log
    assert "3 per dataset" in log and "tensorboard --logdir" in log


def test_every_trial_completed_with_results_checkpoints_and_params(small_study):
    _, study_dir, _ = small_study
    info = json.loads((study_dir / "study.json").read_text())
    assert info["datasets"] == ["montgomery"] and info["data_source"] == {"montgomery": "synthetic"}
    from medguna.versions import describe_code, git_state

    assert info["code_version"] == describe_code() and info["git_commit"] == git_state()["git_commit"]
    assert info["torch_version"] == torch.__version__
    exp = study_dir / "montgomery"
    trials = _trial_dirs(exp)
    assert len(trials) == 3
    for trial in trials:
        params = json.loads((trial / "params.json").read_text())
        for name in ("adapter_width", "entropy_weight", "prompt_length", "description_source", "seed"):
            assert name in params
        assert params["stage2_epochs"] == 2 and params["dataset"] == "montgomery"
        rows = pl.read_ndjson(trial / "result.json")
        assert rows["epoch"].to_list() == [1, 2]
        final = rows.row(-1, named=True)
        assert final["status"] == "completed" and final["data_source"] == "synthetic"
        assert final["checkpoint"] == "demo" and final["selected_epoch"] in (0, 1, 2)  # 0: stage 1 alone
        assert final["code_version"] == info["code_version"] and final["torch_version"] == torch.__version__
        assert 0.0 <= final["test_balanced_accuracy"] <= 1.0
        assert final["objective_selected"] == final["objective_best_so_far"] == max([*rows["val_balanced_accuracy"].to_list(),
                                                final["stage1_val_balanced_accuracy"]])
        assert list(trial.glob("checkpoint_*")), f"no epoch checkpoint in {trial}"
    assert (exp / COMPLETE_MARKER).is_file()


def test_the_paper_point_runs_first(small_study):
    _, study_dir, _ = small_study
    first = _trial_dirs(study_dir / "montgomery")[0]
    params = json.loads((first / "params.json").read_text())
    paper = (params["adapter_width"], params["entropy_weight"], params["prompt_length"],
             params["description_source"])
    assert paper == (0, 1.5, 113, "curated+templates")
    flags = [pl.read_ndjson(t / "result.json")["is_paper_point"].to_list()
             for t in _trial_dirs(study_dir / "montgomery")]
    assert flags[0] == [True, True] and not any(any(f) for f in flags[1:])


def test_tensorboard_events_hold_the_trial_tags(small_study):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    _, study_dir, _ = small_study
    trial = _trial_dirs(study_dir / "montgomery")[0]
    assert glob.glob(str(trial / "events.out.tfevents.*")), "events not synced into the storage path"
    events = EventAccumulator(str(trial), size_guidance={"scalars": 0, "images": 0})
    events.Reload()
    scalars = set(events.Tags()["scalars"])
    for tag in ("train/loss", "train/loss_ce", "train/loss_entropy", "train/lr", "train/images_per_second",
                "train/pseudo_label_accuracy", "val/balanced_accuracy", "val/information_maximization",
                "val/objective_best_so_far", "val/objective_selected", "zeroshot/val_balanced_accuracy",
                "test/balanced_accuracy", "zeroshot/test_balanced_accuracy", "stage1/final_loss"):
        assert tag in scalars, tag
    # Every tag in one of the five groups: no Ray duplicates (ray/tune/...), no lone hparam/ points.
    assert {tag.split("/")[0] for tag in scalars} == {"train", "val", "test", "stage1", "zeroshot"}, scalars
    assert [e.step for e in events.Scalars("val/balanced_accuracy")] == [1, 2]
    assert all(e.step > 0 for tag in scalars for e in events.Scalars(tag))  # epochs count from 1
    assert "test_confusion_matrix" in events.Tags()["images"]
    # One events file, the trial's own (none from Ray's logger), holding its HParams session too.
    assert len(glob.glob(str(trial / "**" / "events.out.tfevents.*"), recursive=True)) == 1
    assert "_hparams_/session_start_info" in events.PluginTagToContent("hparams")


def test_optuna_study_exported_to_sqlite(small_study):
    _, study_dir, _ = small_study
    storage = f"sqlite:///{study_dir / 'montgomery' / 'optuna.db'}"
    study = optuna.load_study(study_name="chestxray-montgomery", storage=storage)
    assert len(study.trials) == 3
    assert {t.user_attrs["outcome"] for t in study.trials} == {"completed"}
    assert all(t.state == optuna.trial.TrialState.COMPLETE for t in study.trials)
    assert set(study.trials[0].params) == {"adapter_width", "entropy_weight", "prompt_length",
                                           "description_source"}
    # The database the study wrote while it ran, kept whole: each epoch's value, real times, and
    # what ties a trial to medguna's results.
    folders = [t.name for t in _trial_dirs(study_dir / "montgomery")]
    for t in study.trials:
        assert sorted(t.intermediate_values) == [1, 2]
        assert t.datetime_start < t.datetime_complete
        assert t.user_attrs["tensorboard_run"] == f"montgomery/{Path(t.user_attrs['trial_folder']).name}"
        assert "test_balanced_accuracy" in t.user_attrs
    assert sorted(Path(t.user_attrs["trial_folder"]).name for t in study.trials) == folders
    assert sorted(t.user_attrs["medguna_trial"] for t in study.trials) == ["t0001", "t0002", "t0003"]
    # The paper's point is the first trial Tune launched (t0001); Optuna numbers trials as they start.
    by_number = sorted(study.trials, key=lambda t: t.user_attrs["medguna_trial"])
    assert [t.user_attrs["paper_point"] for t in by_number] == [True, False, False]


def test_rerun_of_a_finished_study_reruns_nothing(small_study, shared_cache):
    plan, study_dir, _ = small_study
    before = {p.name: (p / "result.json").stat().st_mtime_ns for p in _trial_dirs(study_dir / "montgomery")}
    lines: list[str] = []
    run_study(plan.config, log=lines.append)
    after = {p.name: (p / "result.json").stat().st_mtime_ns for p in _trial_dirs(study_dir / "montgomery")}
    assert before == after
    assert any("already complete" in line for line in lines)


@pytest.fixture(scope="module")
def study_report(small_study, tmp_path_factory) -> Path:
    """The small study's report folder, written once for the tests that read it."""
    from medguna.analysis.report import write_report

    _, study_dir, _ = small_study
    return write_report([study_dir], tmp_path_factory.mktemp("report"), progress=False).parent


def test_analysis_reads_the_study(small_study, study_report):
    from medguna.analysis.console_text import short_leaderboard

    _, study_dir, _ = small_study
    text = short_leaderboard(study_dir)
    assert "montgomery" in text and "SYNTHETIC" in text
    assert (study_report / "index.md").is_file()
    assert (study_report / "leaderboard_montgomery.csv").is_file()


def test_failing_trials_are_recorded_and_the_study_goes_on(tmp_path, shared_cache, local_ray, capsys):
    # The reference entropy term is NaN when floor(0.1 * batch) == 0 (docs/method.md §5.6): batch 8
    # trials fail with that reason, batch 16 trials complete.
    overrides = [o for o in tiny_overrides(tmp_path, shared_cache) if not o.startswith(("search.", "study.demo_method.batch"))]
    cfg = compose_study([
        "study=chestxray", "study.datasets=[montgomery]", "study.demo_num_samples=4", "method=reference",
        *overrides, "~search.space", "+search.space={batch_size: {type: categorical, choices: [8, 16]}}",
        "~study.demo_method.batch_size", "+study.demo_method.prompt_length=0", "search.sampler_seed=0",
        "resources.max_failures=0",
    ])
    plan = run_study(cfg, log=lambda line: None)
    exp = Path(plan.study_dir) / "montgomery"
    outcomes = {}
    for trial in _trial_dirs(exp):
        batch = json.loads((trial / "params.json").read_text())["batch_size"]
        error = trial / "error.txt"
        outcomes.setdefault(batch, set()).add("failed" if error.is_file() else "completed")
        if error.is_file():
            assert "loss became nan" in error.read_text().lower()
    assert outcomes == {8: {"failed"}, 16: {"completed"}}
    # The progress display named each failure with its reason and counted it.
    printed = capsys.readouterr().out.splitlines()
    # A finished trial's line wraps at 80 columns onto indented lines: read it whole.
    failed = [" ".join([line, *(more.strip() for more in takewhile(lambda x: x.startswith(" "), printed[i + 1:]))])
              for i, line in enumerate(printed) if line.startswith("[montgomery] t0") and " failed " in line]
    assert failed and all("loss became nan" in line.lower() for line in failed)
    # The status: the bar and time on one line, the counts on the next.
    status = [i for i, line in enumerate(printed) if "/4 finished | " in line]
    assert printed[status[-1]].startswith("[montgomery] [") and f"{len(failed)} failed" in printed[status[-1] + 1]
    study = optuna.load_study(study_name="chestxray-montgomery", storage=f"sqlite:///{exp / 'optuna.db'}")
    outcomes = sorted(t.user_attrs["outcome"] for t in study.trials)
    assert "failed" in outcomes and "completed" in outcomes


def test_config_errors_are_reported_before_ray_starts(tmp_path, no_ray):
    cfg = compose_study([f"storage.path={tmp_path}", f"data.roots.shenzhen={tmp_path / 'missing'}"])
    with pytest.raises(ConfigError, match="data.roots.shenzhen=.*does not exist"):
        run_study(cfg, log=lambda line: None)


def test_a_trial_under_tune_equals_the_same_trial_run_directly(tmp_path, shared_cache, local_ray):
    # One trial function, run directly or under Ray Tune: the same results for a seed (DESIGN.md).
    cfg = compose_study([
        "study=chestxray", "study.datasets=[montgomery]", "study.demo_num_samples=1",
        *[o for o in tiny_overrides(tmp_path, shared_cache) if not o.startswith("search.")],
        "~search.space", "+search.space={entropy_weight: {type: categorical, choices: [1.0]}}",
        "+study.demo_method.prompt_length=4",
    ])
    plan = run_study(cfg, log=lambda line: None)
    (trial,) = _trial_dirs(Path(plan.study_dir) / "montgomery")
    tuned = pl.read_ndjson(trial / "result.json").row(-1, named=True)

    from medguna.config import apply_method_params
    from medguna.trial.loop import run_trial
    from medguna.trial.reporting import PrintReporter

    direct_cfg = plan.datasets[0].trial
    direct_cfg.method = apply_method_params(direct_cfg.method, {"entropy_weight": 1.0})
    # Ray runs a 1-CPU trial with one torch thread; other thread counts change float summation order.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        direct = run_trial(direct_cfg, PrintReporter(verbose=False))
    finally:
        torch.set_num_threads(threads)

    assert tuned["student_sha256_by_rank"] == direct["student_sha256_by_rank"]  # the same weights
    for metric in ("loss", "val_balanced_accuracy", "test_balanced_accuracy", "test_auroc", "selected_epoch"):
        assert tuned[metric] == pytest.approx(direct[metric], abs=1e-9), metric


# ---- the report and TensorBoard in a real browser (tests/study/browser_tools.py) ----

def test_report_html_in_a_browser(small_study, study_report, tmp_path):
    import re

    from browser_tools import browser_page, screenshot_dir

    _, study_dir, _ = small_study
    page_path = study_report / "report.html"
    trials = [t.name for t in _trial_dirs(study_dir / "montgomery")]
    datasets = json.loads((study_dir / "study.json").read_text())["datasets"]
    requests: list[str] = []
    with browser_page(width=1400, height=1000) as page:
        page.on("request", lambda request: requests.append(request.url))
        page.goto(page_path.as_uri())
        assert "SYNTHETIC DATA" in page.locator("#synthetic-banner").inner_text()
        # The answer in the first screenful: every dataset, its score and 95% interval, visible
        # without scrolling in a 1400 x 1000 window.
        for dataset in datasets:
            answer = page.locator(f'.answer[data-dataset="{dataset}"]')
            assert dataset in answer.locator("h3").inner_text()
            score = answer.locator(".score")
            assert re.fullmatch(r"0\.\d{3} test balanced_accuracy 95% CI \[[01]\.\d{3}, [01]\.\d{3}\]",
                                score.inner_text().strip()), score.inner_text()
            box = score.bounding_box()
            assert box is not None and box["y"] + box["height"] <= 1000, box
            assert "vs zero-shot" in answer.inner_text() and "search trials ran" in answer.inner_text()
        space = page.locator("#table-search-space").inner_text()
        assert "adapter_width" in space and "a diversity term" in space
        # The leaderboard leads with the answer's columns and fits the window.
        board = page.locator("#leaderboard_montgomery table.lead")
        assert "SYNTHETIC DATA" in page.locator("#leaderboard_montgomery h4").first.inner_text()
        headers = board.locator("th").all_inner_texts()
        assert headers[:3] == ["rank", "trial", "★"] and "95% CI" in headers and "vs zero-shot" in headers
        assert board.evaluate("t => t.scrollWidth <= t.clientWidth + 1")  # no horizontal scrolling
        # No table shown anywhere on the page (across datasets, confirmed, seeds, studies) is wider
        # than the window: their answer columns lead and the rest fold into a details block.
        wide = page.evaluate("""() => [...document.querySelectorAll('table')]
            .filter(t => t.checkVisibility())
            .filter(t => t.scrollWidth > t.clientWidth + 1 || t.getBoundingClientRect().right > innerWidth + 1)
            .map(t => t.id || t.className)""")
        assert wide == [], wide
        column = {name: i for i, name in enumerate(headers)}
        rows = board.locator("tbody tr")
        assert rows.count() == 3
        # A click sorts by that column, a second click reverses it.
        board.locator("th", has_text="entropy_weight").click()
        ascending = [float(rows.nth(i).locator("td").nth(column["entropy_weight"]).inner_text())
                     for i in range(3)]
        board.locator("th", has_text="entropy_weight").click()
        descending = [float(rows.nth(i).locator("td").nth(column["entropy_weight"]).inner_text())
                      for i in range(3)]
        assert ascending == sorted(ascending) and descending == sorted(ascending, reverse=True)
        # Every column, the TensorBoard run among them, one click away.
        page.locator("#leaderboard_montgomery details summary").click()
        full = page.locator("#leaderboard_montgomery details table")
        full_headers = full.locator("th").all_inner_texts()
        full_rows = full.locator("tbody tr")
        runs = sorted(full_rows.nth(i).locator("td").nth(full_headers.index("tensorboard_run")).inner_text()
                      for i in range(3))
        assert runs == [f"montgomery/{name}" for name in trials]
        assert page.locator("svg.parallel polyline.pc-line").count() == 3
        figures = page.locator("figure img")
        assert figures.count() >= 3
        widths = figures.evaluate_all("imgs => imgs.map(i => i.complete ? i.naturalWidth : 0)")
        assert all(w > 100 for w in widths), widths
        page.screenshot(path=str(screenshot_dir(tmp_path) / "report.png"), full_page=True)
    assert requests and all(url.startswith(("file:", "data:")) for url in requests), requests


def test_tensorboard_hparams_in_a_browser(small_study, tmp_path):
    from browser_tools import browser_page, screenshot_dir, tensorboard_server

    _, study_dir, _ = small_study
    searched = {"adapter_width", "entropy_weight", "prompt_length", "description_source"}
    with tensorboard_server(study_dir) as url, browser_page() as page:
        page.goto(f"{url}/#hparams")
        cells = page.locator("tf-hparams-table-view vaadin-grid-cell-content")
        cells.filter(has_text="adapter_width").first.wait_for(timeout=30_000)
        texts = [t.strip() for t in cells.all_inner_texts()]
        header = texts[:texts.index("test_accuracy") + 1]
        # Searched dimensions first, then constants (one, since TensorBoard shows five), then the
        # objective as the first metric; no Ray entry.
        assert header[:2] == ["Trial ID", "Show Metrics"] and set(header[2:6]) == searched
        assert header[7].startswith("objective (val_balanced_accuracy")
        assert not any(t.startswith("ray/") for t in texts)
        trial_rows = [t for t in texts if t.startswith("montgomery/t0")]
        assert len(trial_rows) == 3
        boxes = page.locator("tf-hparams-query-pane paper-checkbox")
        ticked = {boxes.nth(i).inner_text().strip(): boxes.nth(i).get_attribute("aria-checked")
                  for i in range(boxes.count())}
        assert all(ticked[name] == "true" for name in searched)
        assert ticked["stage2_lr"] == "false"
        page.screenshot(path=str(screenshot_dir(tmp_path) / "tensorboard_hparams.png"))

        # IMAGES: each trial's confusion matrix, drawn (tag names live on the card headings).
        page.goto(f"{url}/#images")
        images = page.locator("tf-image-loader img")
        images.first.wait_for(timeout=30_000)
        cards = page.locator("tf-card-heading").evaluate_all("hs => hs.map(h => [h.tag, h.run])")
        assert sorted(cards) == [["test_confusion_matrix", f"montgomery/{t.name}"]
                                 for t in _trial_dirs(study_dir / "montgomery")]
        for _ in range(50):  # the images load after the cards: until every one has its pixels
            widths = images.evaluate_all("xs => xs.map(i => i.complete ? i.naturalWidth : 0)")
            if len(widths) == len(cards) and min(widths) > 100:
                break
            page.wait_for_timeout(200)
        assert len(widths) == len(cards) and min(widths) > 100, widths
        page.screenshot(path=str(screenshot_dir(tmp_path) / "tensorboard_images.png"))


def test_optuna_dashboard_serves_the_study(small_study, tmp_path):
    import urllib.request

    from browser_tools import browser_page, optuna_dashboard_server, screenshot_dir

    _, study_dir, _ = small_study
    with optuna_dashboard_server(study_dir / "montgomery" / "optuna.db") as url:
        with urllib.request.urlopen(f"{url}/api/studies") as response:
            (summary,) = json.loads(response.read())["study_summaries"]
        assert summary["study_name"] == "chestxray-montgomery"
        with urllib.request.urlopen(f"{url}/api/studies/{summary['study_id']}?after=0") as response:
            trials = json.loads(response.read())["trials"]
        assert len(trials) == 3 and {t["state"] for t in trials} == {"Complete"}
        assert all(len(t["intermediate_values"]) == 2 for t in trials)  # one value per epoch
        with browser_page() as page:
            page.goto(f"{url}/dashboard/studies/{summary['study_id']}")
            page.get_by_text("Intermediate values").first.wait_for(timeout=60_000)
            assert "chestxray-montgomery" in page.inner_text("body")
            page.screenshot(path=str(screenshot_dir(tmp_path) / "optuna_dashboard.png"), full_page=True)
