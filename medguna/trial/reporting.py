"""Where a trial's numbers go: TensorBoard events beside Tune's result rows, or JSON lines on stdout.

TensorBoard tags are the result column names grouped by what they measure, so TensorBoard shows one
section per group: the column's prefix becomes a folder (`val_balanced_accuracy` -> `val/balanced_accuracy`,
`zeroshot_val_ece` -> `zeroshot/val_ece`, `stage1_val_auroc` -> `stage1/val_auroc`,
`test_accuracy` -> `test/accuracy`) and training columns go under `train/` (`loss` -> `train/loss`).
`tensorboard_tag` is that rule, the one place it is written.
"""

from __future__ import annotations

import io
import math
import sys
import textwrap
from pathlib import Path
from typing import Any, Protocol

from medguna.results import EPOCH, OBJECTIVE_BEST_SO_FAR, OBJECTIVE_SELECTED


class Reporter(Protocol):
    def report(self, metrics: dict[str, Any], state: dict[str, Any] | None = None) -> None: ...

    def resume_state(self) -> dict[str, Any] | None: ...


class PrintReporter:
    """The reporter of `medguna trial`: keeps every row, prints one readable line per epoch."""

    def __init__(self, stream=None, verbose: bool = True) -> None:
        self.stream = stream or sys.stderr  # stdout is left for the final JSON line
        self.verbose = verbose
        self.rows: list[dict[str, Any]] = []
        self.last_state: dict[str, Any] | None = None

    def report(self, metrics: dict[str, Any], state: dict[str, Any] | None = None) -> None:
        self.rows.append(dict(metrics))
        self.last_state = state
        if self.verbose:
            print(epoch_line(metrics), file=self.stream, flush=True)

    def resume_state(self) -> dict[str, Any] | None:
        return None  # a trial from the command line always starts fresh


def epoch_line(row: dict[str, Any]) -> str:
    """`epoch 2: loss 1.512 (ce 0.676, entropy 0.693) | val balanced_accuracy 0.500 ...`."""
    def num(key: str) -> str:
        value = row.get(key)
        return f"{value:.3f}" if isinstance(value, (int, float)) else "-"

    line = (f"epoch {row.get('epoch', '?')}: loss {num('loss')} (ce {num('loss_ce')}, entropy "
            f"{num('loss_entropy')}) | val balanced_accuracy {num('val_balanced_accuracy')}, "
            f"information_maximization {num('val_information_maximization')}, zero-shot "
            f"{num('zeroshot_val_balanced_accuracy')} | {row.get('images_per_second', 0):.0f} img/s")
    if row.get("val_collapsed"):
        line += " | COLLAPSED onto one class"
    if "test_balanced_accuracy" in row:
        selected = row.get("selected_epoch")
        which = "0 (stage 1 alone: no stage-2 epoch beat it)" if selected == 0 else selected
        line += (f"\nselected epoch {which} by {row.get('objective')}: test "
                 f"balanced_accuracy {num('test_balanced_accuracy')} vs zero-shot "
                 f"{num('zeroshot_test_balanced_accuracy')}")
    if "test_selected_accuracy" in row:
        line += (f"\ntest_selected (optimistic: chosen on test, as the reference reports): epoch "
                 f"{row.get('test_selected_epoch')}, test accuracy {num('test_selected_accuracy')}")
    return line


def jsonable_row(row: dict[str, Any]) -> dict[str, Any]:
    out = {}
    for k, v in row.items():
        if isinstance(v, float) and not math.isfinite(v):
            v = None
        out[k] = v
    return out


def is_scalar(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


# Column prefix -> TensorBoard folder; the longest prefix wins (zeroshot_val_ before val_).
TAG_GROUPS = (("zeroshot_", "zeroshot/"), ("stage1_", "stage1/"), ("val_", "val/"), ("test_", "test/"))
TRAIN_GROUP = "train/"
# Columns with no prefix that are validation figures, not training ones.
VALIDATION_COLUMNS = {OBJECTIVE_BEST_SO_FAR: f"val/{OBJECTIVE_BEST_SO_FAR}",
                      OBJECTIVE_SELECTED: f"val/{OBJECTIVE_SELECTED}"}
NOT_LOGGED = (EPOCH,)  # the step itself


def tensorboard_tag(column: str) -> str:
    """The TensorBoard tag of a result column: its group folder, then the rest of its name."""
    if column in VALIDATION_COLUMNS:
        return VALIDATION_COLUMNS[column]
    for prefix, folder in TAG_GROUPS:
        if column.startswith(prefix):
            return folder + column[len(prefix):]
    return TRAIN_GROUP + column


class TensorBoardLog:
    """Scalars, HPARAMS and a confusion-matrix image for one trial."""

    def __init__(self, log_dir: str | Path) -> None:
        from torch.utils.tensorboard import SummaryWriter

        self.log_dir = Path(log_dir)
        self.writer = SummaryWriter(log_dir=str(self.log_dir))

    def scalars(self, values: dict[str, Any], step: int) -> None:
        for column, value in values.items():
            if column not in NOT_LOGGED and is_scalar(value) and math.isfinite(float(value)):
                self.writer.add_scalar(tensorboard_tag(column), float(value), step)

    def hparams(self, params: dict[str, Any], final_metrics: dict[str, Any]) -> None:
        """This trial's HParams session. Its metrics are the run's own scalar tags (the HParams tab
        reads their last value), so no extra `hparam/...` scalar is written beside them."""
        hp = {k: v for k, v in params.items() if isinstance(v, (int, float, str, bool))}
        metrics = {tensorboard_tag(k): float(v) for k, v in final_metrics.items()
                   if is_scalar(v) and math.isfinite(float(v))}
        from torch.utils.tensorboard.summary import hparams

        # Only this trial's session: the study declares the experiment once (searched dimensions
        # first, medguna.study.tensorboard); a per-trial declaration would list every hyperparameter
        # alphabetically. Alone (`medguna trial`), TensorBoard builds the list from the sessions.
        _, session_start, session_end = hparams(hp, metrics)
        self.writer.file_writer.add_summary(session_start)
        self.writer.file_writer.add_summary(session_end)

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
    # Wrapped to the figure's width: TensorBoard shows the image as is, a long title cut off.
    ax.set_title("\n".join(textwrap.wrap(title, width=8 + 8 * k)), fontsize=9)
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
