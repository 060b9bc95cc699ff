"""The report at the end of `studies/run.py`: for a study at a local path or at a URI alike."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from medguna.study.files import is_uri, join
from medguna.study.plan import StudyPlan


@dataclass
class EndReport:
    leaderboard: str  # the top rows per dataset, for the console
    index: Path  # the report's index.md on this machine
    copied_to: str | None  # where it was copied in the store, for a study at a URI


def report_study(plan: StudyPlan, progress: bool = True) -> EndReport:
    """Leaderboards and figures of the study. A study at a URI is read from a local mirror of the
    files the analysis needs (under storage.cache_dir), and the report is copied back into the
    study's folder in the store, where a local study keeps it too (<study>/analysis)."""
    from medguna.analysis.console_text import short_leaderboard
    from medguna.analysis.report import write_report

    if not is_uri(plan.study_dir):
        return EndReport(short_leaderboard(plan.study_dir), write_report([plan.study_dir], None, progress=progress),
                         None)
    from medguna.study.files import mirror_for_report, upload_tree

    local = Path(plan.config.storage.cache_dir).expanduser().resolve() / "study_mirrors" / plan.config.study.name
    mirror_for_report(plan.study_dir, local)
    index = write_report([local], None, progress=progress)
    target = join(plan.study_dir, "analysis")
    upload_tree(index.parent, target)
    return EndReport(short_leaderboard(local), index, target)
