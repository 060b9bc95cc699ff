"""Where a trial's numbers go: TensorBoard events beside Tune's result rows, or JSON lines on stdout.

Tags are the result column names (`val_balanced_accuracy`, `loss_entropy`, ...), so what a user
sees in TensorBoard, in result.json and in the leaderboards is named the same.
"""

from __future__ import annotations

import io
import json
import math
import sys
from pathlib import Path
from typing import Any, Protocol


class Reporter(Protocol):
    def report(self, metrics: dict[str, Any], state: dict[str, Any] | None = None) -> None: ...

    def resume_state(self) -> dict[str, Any] | None: ...


class PrintReporter:
    """The reporter of `medguna trial`: one JSON line per epoch, keeps the last state in memory."""

    def __init__(self, stream=None, verbose: bool = True) -> None:
        self.stream = stream or sys.stdout
        self.verbose = verbose
        self.rows: list[dict[str, Any]] = []
        self.last_state: dict[str, Any] | None = None

    def report(self, metrics: dict[str, Any], state: dict[str, Any] | None = None) -> None:
        self.rows.append(dict(metrics))
        self.last_state = state
        if self.verbose:
            print(json.dumps(_jsonable(metrics)), file=self.stream, flush=True)

    def resume_state(self) -> dict[str, Any] | None:
        return None


def _jsonable(row: dict[str, Any]) -> dict[str, Any]:
    out = {}
    for k, v in row.items():
        if isinstance(v, float) and not math.isfinite(v):
            v = None
        out[k] = v
    return out


def is_scalar(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


class TensorBoardLog:
    """Scalars, HPARAMS and a confusion-matrix image for one trial."""

    def __init__(self, log_dir: str | Path) -> None:
        from torch.utils.tensorboard import SummaryWriter

        self.log_dir = Path(log_dir)
        self.writer = SummaryWriter(log_dir=str(self.log_dir))

    def scalars(self, values: dict[str, Any], step: int) -> None:
        for tag, value in values.items():
            if is_scalar(value) and math.isfinite(float(value)):
                self.writer.add_scalar(tag, float(value), step)

    def hparams(self, params: dict[str, Any], final_metrics: dict[str, Any]) -> None:
        hp = {k: v for k, v in params.items() if isinstance(v, (int, float, str, bool))}
        metrics = {f"hparam/{k}": float(v) for k, v in final_metrics.items()
                   if is_scalar(v) and math.isfinite(float(v))}
        # run_name="." keeps the HPARAMS entry in the trial's own folder, beside its scalars.
        self.writer.add_hparams(hp, metrics, run_name=".")

    def confusion_matrix(self, matrix: list[list[int]], class_names: list[str], title: str,
                         step: int) -> None:
        png = confusion_matrix_png(matrix, class_names, title)
        import numpy as np
        from PIL import Image

        image = np.asarray(Image.open(io.BytesIO(png)).convert("RGB"))
        self.writer.add_image("test_confusion_matrix", image, step, dataformats="HWC")

    def close(self) -> None:
        self.writer.flush()
        self.writer.close()


def confusion_matrix_png(matrix: list[list[int]], class_names: list[str], title: str) -> bytes:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    k = len(class_names)
    fig, ax = plt.subplots(figsize=(1.2 + 0.7 * k, 1.0 + 0.7 * k), dpi=100)
    ax.imshow(matrix, cmap="Blues")
    ax.set_xticks(range(k), class_names, rotation=45, ha="right", fontsize=8)
    ax.set_yticks(range(k), class_names, fontsize=8)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title, fontsize=9)
    top = max((max(row) for row in matrix), default=0)
    for i, row in enumerate(matrix):
        for j, n in enumerate(row):
            ax.text(j, i, str(n), ha="center", va="center", fontsize=8,
                    color="white" if n > top / 2 else "black")
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    return buf.getvalue()
