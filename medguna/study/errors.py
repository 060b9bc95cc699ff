"""How a study run ends short of complete; studies/run.py turns each into its exit status."""

from __future__ import annotations


class StudyFailed(Exception):
    """Every trial of some dataset failed: the study is not complete (a broken setup, not a result)."""

    def __init__(self, datasets: list[str]) -> None:
        super().__init__(f"every trial failed on {', '.join(datasets)}")
        self.datasets = datasets


class StudyInterrupted(Exception):
    """The study stopped before every trial of a dataset finished (Ctrl-C, SIGTERM, lost driver)."""

    exit_code = 130  # 128 + the signal: run_study sets 143 after SIGTERM
