"""report.html of the hand-made study, read back: self-contained, labelled, sortable, complete."""

from __future__ import annotations

import base64
import contextlib
import importlib.util
import io
import re
import webbrowser
from html.parser import HTMLParser
from pathlib import Path

import pytest

from medguna.analysis.html_report import HIGH_COLOUR, LOW_COLOUR, PC_HEIGHT, PC_MARGIN

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


class Page(HTMLParser):
    """Tables by id (rows of cell texts), every src/href, and the parallel-coordinates lines."""

    def __init__(self, text: str) -> None:
        super().__init__()
        self.tables: dict[str, list[list[str]]] = {}
        self.links: list[str] = []
        self.lines: list[dict[str, str]] = []
        self._table: str | None = None
        self._cell: list[str] | None = None
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        self.links += [a[k] for k in ("src", "href") if k in a]
        if tag == "table":
            self._table = a.get("id", "")
            self.tables[self._table] = []
        elif tag == "tr" and self._table is not None:
            self.tables[self._table].append([])
        elif tag in ("td", "th"):
            self._cell = []
        elif tag == "polyline":
            self.lines.append(a)

    def handle_endtag(self, tag):
        if tag in ("td", "th") and self._cell is not None:
            self.tables[self._table][-1].append("".join(self._cell))
            self._cell = None
        elif tag == "table":
            self._table = None

    def handle_data(self, data):
        if self._cell is not None:
            self._cell.append(data)


def _cli():
    spec = importlib.util.spec_from_file_location(
        "leaderboard_cli", Path(__file__).parents[2] / "analysis" / "leaderboard.py")
    cli = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(cli)
    return cli


@pytest.fixture(scope="module")
def page(hand_study: Path, tmp_path_factory: pytest.TempPathFactory):
    """The report as `analysis/leaderboard.py --open` writes it (built once for the module)."""
    out = tmp_path_factory.mktemp("html")
    opened: list[str] = []
    printed = io.StringIO()
    with pytest.MonkeyPatch.context() as mp, contextlib.redirect_stdout(printed):
        mp.setattr(webbrowser, "open", lambda url: opened.append(url) or True)
        assert _cli().main([str(hand_study), "--out", str(out), "--open"]) == 0
    assert opened == [(out / "report.html").resolve().as_uri()]  # --open opened the page
    assert f"page:   {out / 'report.html'}" in printed.getvalue()
    text = (out / "report.html").read_text()
    return out, text, Page(text)


def test_self_contained_and_every_link_resolves(page):
    out, text, parsed = page
    assert not re.search(r"""(src|href)=["']?(https?:)?//""", text)  # nothing from the network
    assert "<link" not in text and "@import" not in text
    images = [link for link in parsed.links if link.startswith("data:image/png;base64,")]
    assert len(images) == len(list((out / "figures").glob("*.png"))) >= 3
    assert base64.b64decode(images[0].split(",", 1)[1]).startswith(PNG_MAGIC)
    local = [link for link in parsed.links if not link.startswith(("data:", "#"))]
    assert "leaderboard_shenzhen.csv" in local and "trials.parquet" in local
    assert all((out / link).is_file() for link in local), [x for x in local if not (out / x).is_file()]
    assert "[report.html](report.html)" in (out / "index.md").read_text()


def test_leaderboard_rows_ranks_and_tensorboard_runs(page):
    _, _, parsed = page
    head, *rows = parsed.tables["table-leaderboard_shenzhen-real"]
    col = {name: i for i, name in enumerate(head)}
    assert "cohort" not in col and col["tensorboard_run"] == col["trial"] + 1
    assert [r[col["trial"]] for r in rows][:3] == [
        "t0001_abcd0001_00001", "t0006_abcd0006_00006", "t0005_abcd0005_00005"]  # 0.80, 0.78, 0.76
    assert rows[0][col["tensorboard_run"]] == "shenzhen/t0001_abcd0001_00001"
    assert rows[0][col["objective_selected"]] == "0.800"
    assert {r[col["trial_status"]] for r in rows[-2:]} == {"stopped_early", "failed"}
    assert len(rows) == 7


def test_synthetic_results_are_labelled_apart(page):
    _, text, parsed = page
    assert 'id="synthetic-banner"' in text and "SYNTHETIC DATA" in text
    assert "table-leaderboard_montgomery-synthetic" in parsed.tables
    assert '<h4 class="cohort synthetic">SYNTHETIC DATA (not a real result)</h4>' in text
    assert "table-leaderboard_montgomery-real" not in parsed.tables


def test_parallel_coordinates_draw_each_completed_trial(page):
    _, _, parsed = page
    shenzhen = [line for line in parsed.lines if line["data-trial"].startswith("t000")
                and line["data-trial"] in {"t0000_abcd0000_00000", "t0001_abcd0001_00001",
                                           "t0002_abcd0002_00002", "t0005_abcd0005_00005",
                                           "t0006_abcd0006_00006"}]
    by_trial = {line["data-trial"]: line for line in shenzhen}
    # shenzhen's 5 completed trials (guangzhou's 3 and montgomery's 1 share names t0000-t0002).
    assert len(parsed.lines) == 5 + 3 + 1
    best, worst = by_trial["t0001_abcd0001_00001"], by_trial["t0002_abcd0002_00002"]
    assert best["stroke"] == "rgb({},{},{})".format(*HIGH_COLOUR)  # objective 0.80, the highest
    # The last axis is the objective: the best trial at its top, the worst (0.60) at its bottom.
    assert best["points"].split()[-1].endswith(f",{PC_MARGIN:.1f}")
    assert by_trial["t0000_abcd0000_00000"]["points"].split()[-1].endswith(f",{PC_HEIGHT - PC_MARGIN:.1f}") \
        or worst["points"].split()[-1].endswith(f",{PC_HEIGHT - PC_MARGIN:.1f}")
    assert "rgb({},{},{})".format(*LOW_COLOUR) in {line["stroke"] for line in shenzhen}


def _text(fragment: str) -> str:
    return " ".join(re.sub(r"<[^>]+>", " ", fragment).split())


def test_the_page_opens_with_the_answer_per_dataset(page):
    _, text, parsed = page
    # The summary comes first, right under the banner, before any table.
    assert text.index('id="synthetic-banner"') < text.index('id="summary"') < text.index('<table')
    answers = dict(re.findall(r'<article class="answer" data-dataset="(\w+)">(.*?)</article>', text, re.DOTALL))
    assert list(answers) == ["shenzhen", "guangzhou", "montgomery"]  # the study's own order
    shenzhen = _text(answers["shenzhen"])
    # The leaderboard's rank 1 (validation 0.80), its test score and both gains, and the counts.
    assert shenzhen.startswith("shenzhen 0.740 test balanced_accuracy")
    assert "t0001_abcd0001_00001 , stage-2 epoch 2, validation 0.800" in shenzhen
    assert "vs zero-shot (0.550): +0.190" in shenzhen
    assert "vs the paper's hyperparameters (0.680): +0.060" in shenzhen
    assert "7 search trials ran: 5 completed, 1 stopped early, 1 failed; 0 kept stage 1 alone" in shenzhen
    assert "SYNTHETIC DATA" in _text(answers["montgomery"])  # labelled in its block too
    # The leaderboard's leading columns: rank, trial, ★, the configuration, the test score...
    head = parsed.tables["table-leaderboard_shenzhen-lead-real"][0]
    assert head[:3] == ["rank", "trial", "★"] and head[3:7] == [
        "adapter_width", "prompt_length", "entropy_weight", "description_source"]
    assert head[7:9] == ["test balanced accuracy", "gain vs zero-shot"]  # no interval without predictions
    states = parsed.tables["table-states"]
    assert states[0][:4] == ["cohort", "study", "dataset", "stage"] and {r[3] for r in states[1:]} == {"search"}
