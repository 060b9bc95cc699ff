"""One MedUnA trial, start to end: stage 1 on text, stage 2 on unlabelled images, selection, test.

The same function runs from `medguna trial`, from a test, and inside a Ray Tune worker; only the
reporter differs. Training goes through accelerate (device placement, bf16 autocast).
"""

from __future__ import annotations

import copy
import math
import time
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from medguna.config import TrialConfig, to_dict
from medguna.errors import TrialError
from medguna.method.selection import best_so_far, stage1_candidate
from medguna.method.student import Student
from medguna.results import (
    FINAL_STATUS,
    OBJECTIVE,
    OBJECTIVE_BEST_SO_FAR,
    OBJECTIVE_SELECTED,
    STATUS,
)
from medguna.trial.accelerator import device_name, make_accelerator, mixed_precision
from medguna.trial.compile import StudentForward, compile_backend, use_inductor_cache
from medguna.trial.evaluation import evaluate, prefixed, split_metrics
from medguna.trial.memory import peak_memory_mb, release_memory, reset_peak_memory
from medguna.trial.prepare import SharedWork, feature_bank, image_cache_dir, prepare_shared_work
from medguna.trial.profiling import step_profiler
from medguna.trial.provenance import provenance, state_digest
from medguna.trial.reference_protocol import epoch_test_metrics, reference_selected
from medguna.trial.reporting import Reporter

__all__ = ["mixed_precision", "run_trial"]  # mixed_precision: what `medguna trial` prints

def run_trial(cfg: TrialConfig, reporter: Reporter, *, log_dir=None, params: dict | None = None) -> dict:
    """Run one trial; report every epoch; return the final row (with test metrics)."""
    try:
        with image_cache_dir(cfg) as image_dir:
            return _run(cfg, reporter, image_dir=image_dir, log_dir=log_dir, params=params or {})
    finally:
        release_memory()  # a reused worker's next trial starts without this one's GPU memory


@dataclass
class TrialContext:
    """What every phase of one trial reads: config, accelerator, shared work, provenance, logs."""

    cfg: TrialConfig
    accelerator: Any
    shared: SharedWork
    provenance: dict[str, Any]
    tb: Any  # TensorBoardLog on the main process, else None
    started: float
    zero_shot: dict[str, dict[str, Any]] = field(default_factory=dict)  # split -> zeroshot_<split>_ metrics
    zero_shot_probs: dict[str, torch.Tensor] = field(default_factory=dict)  # split -> (N, K)
    log_dir: Any = None  # the trial's folder: TensorBoard events and predictions.parquet

    @property
    def device(self) -> torch.device:
        return self.accelerator.device

    @property
    def autocast(self):
        return self.accelerator.autocast


@dataclass
class Stage1Result:
    """The stage-1 adapter, its frozen copy (the teacher) and the teacher's hard labels."""

    adapter: nn.Module
    teacher: nn.Module  # the adapter's frozen copy
    teacher_state: dict[str, torch.Tensor]
    losses: list[float]
    teacher_labels: dict[str, torch.Tensor]  # "train", "val"
    pseudo_label_accuracy: float
    # Stage 1 alone as a model ("epoch 0"): the teacher on normalised clean features.
    val_probs: torch.Tensor | None = None
    val_metrics: dict[str, Any] = field(default_factory=dict)

    def probs(self, features: torch.Tensor) -> torch.Tensor:
        """Softmax of stage 1 alone (the teacher) on clean-view features, as its labels are made."""
        from medguna.method.teacher import teacher_logits

        logits = teacher_logits(self.teacher, features.float(), normalize=True)
        return torch.softmax(logits.float(), dim=1).cpu()


@dataclass
class Stage2TrainingSet:
    """The unlabelled images stage 2 trains on: one or more splits, indexed as one sequence.

    The splits stay separate memory-mapped tensors (no copy of the image cache); an index i below
    the first split's size is that split's image i, the next ones the second split's, and so on.
    """

    splits: tuple[str, ...]
    images: list[torch.Tensor]  # per split, uint8 (N_s, C, S, S): what strong views are cropped from
    teacher_labels: torch.Tensor  # (N,), splits concatenated
    banks: list[torch.Tensor] | None  # prompt-free trials: per split (views, N_s, D) frozen features
    sizes: list[torch.Tensor] | None = None  # whole images: per split (N_s, 2) original (height, width)

    def __len__(self) -> int:
        return int(self.teacher_labels.shape[0])

    def _gather(self, parts: list[torch.Tensor], idx: torch.Tensor, dim: int, view_idx=None) -> torch.Tensor:
        if len(parts) == 1:  # the usual case: plain indexing, as before
            return parts[0][view_idx, idx] if view_idx is not None else parts[0][idx]
        out, start = None, 0
        for part in parts:
            size = part.shape[dim]
            inside = (idx >= start) & (idx < start + size)
            if inside.any():
                local = idx[inside] - start
                values = part[view_idx[inside], local] if view_idx is not None else part[local]
                if out is None:
                    out = values.new_empty((len(idx), *values.shape[1:]))
                out[inside] = values
            start += size
        return out

    def images_at(self, idx: torch.Tensor) -> torch.Tensor:
        return self._gather(self.images, idx, dim=0)

    def sizes_at(self, idx: torch.Tensor) -> torch.Tensor | None:
        return self._gather(self.sizes, idx, dim=0) if self.sizes is not None else None

    def bank_at(self, view_idx: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
        return self._gather(self.banks, idx, dim=1, view_idx=view_idx)


def _stage2_training_set(ctx: TrialContext, stage1: Stage1Result) -> Stage2TrainingSet:
    """Training images only (validation protocol), or every non-test image (reference protocol:
    the reference has no validation split and adapts on all of its training images)."""
    splits = ("train", "val") if ctx.cfg.runtime.protocol == "reference" else ("train",)
    banks = None
    if ctx.cfg.method.prompt_length == 0:
        banks = [feature_bank(ctx.cfg, ctx.shared, device=ctx.device, autocast=ctx.autocast, split=split)
                 for split in splits]
    whole = bool(ctx.shared.whole_images)  # crop from whole images (strong_view_source=whole)
    source = ctx.shared.whole_images if whole else ctx.shared.images
    return Stage2TrainingSet(
        splits=splits, images=[source[split] for split in splits],
        teacher_labels=torch.cat([stage1.teacher_labels[split] for split in splits]), banks=banks,
        sizes=[ctx.shared.whole_sizes[split] for split in splits] if whole else None,
    )


@dataclass
class Stage2State:
    """The student being trained and what has been recorded of it, epoch by epoch."""

    student: Any  # as prepared by accelerate (maybe DDP-wrapped)
    plain_student: Student
    optimizer: Any
    generator: torch.Generator
    train_set: Stage2TrainingSet
    history: list[dict[str, Any]] = field(default_factory=list)
    epoch_states: list[dict[str, torch.Tensor]] = field(default_factory=list)
    first_epoch: int = 1
    step: int = 0
    val_probs: dict[int, torch.Tensor] = field(default_factory=dict)  # epoch -> (N_val, K), this run
    test_probs: torch.Tensor | None = None  # at the selected epoch


def _run(cfg: TrialConfig, reporter: Reporter, *, image_dir, log_dir, params: dict) -> dict:
    cfg.validate()
    ctx = _prepare(cfg, image_dir=image_dir, log_dir=log_dir)
    resume = reporter.resume_state()
    generator = torch.Generator().manual_seed(cfg.method.seed)
    stage1 = _stage1(ctx, generator, resume)
    state = _start_stage2(ctx, stage1, generator, resume)
    setup_seconds = time.perf_counter() - ctx.started
    for epoch in range(state.first_epoch, cfg.method.stage2_epochs + 1):
        row = _stage2_epoch(ctx, stage1, state, epoch, setup_seconds)
        if epoch < cfg.method.stage2_epochs:
            reporter.report(row, _checkpoint(stage1, state, epoch))
    final, confusion, selected = _select_and_test(ctx, stage1, state, setup_seconds)
    final.update(reference_selected(ctx, state.history))
    _write_final_logs(ctx, final, confusion, selected, params)
    _write_predictions(ctx, stage1, state, selected)
    reporter.report(final, None)
    return final


def _prepare(cfg: TrialConfig, *, image_dir, log_dir) -> TrialContext:
    """Shared work (cached images, features, texts), provenance, TensorBoard and zero-shot."""
    from medguna.method.zeroshot import zero_shot_logits

    accelerator = make_accelerator(cfg)
    device = accelerator.device
    torch.manual_seed(cfg.method.seed)
    reset_peak_memory(device)
    started = time.perf_counter()
    shared = prepare_shared_work(cfg, device=device, autocast=accelerator.autocast, image_dir=image_dir)
    prov = {**provenance(cfg, shared), "device": device_name(device),
            "mixed_precision": accelerator.mixed_precision}
    tb = None
    if log_dir is not None and accelerator.is_main_process:
        from medguna.trial.reporting import TensorBoardLog
        tb = TensorBoardLog(log_dir)
    ctx = TrialContext(cfg=cfg, accelerator=accelerator, shared=shared, provenance=prov, tb=tb,
                       started=started, log_dir=log_dir)
    # Zero-shot baseline from the cached clean-view features.
    for split in ("val", "test"):
        logits = zero_shot_logits(shared.clean_features[split], shared.class_prototypes) * 100.0
        ctx.zero_shot_probs[split] = torch.softmax(logits, dim=1)
        ctx.zero_shot[split], _ = split_metrics(ctx.zero_shot_probs[split], shared.labels[split],
                                                 shared.spec, f"zeroshot_{split}_")
    return ctx


def _stage1(ctx: TrialContext, generator: torch.Generator, resume: dict | None) -> Stage1Result:
    """Train the adapter on text embeddings (or restore it), freeze a copy as the teacher."""
    from medguna.method.stage1 import make_teacher, train_text_adapter
    from medguna.method.teacher import teacher_labels
    from medguna.models.adapter import Adapter

    m, shared = ctx.cfg.method, ctx.shared
    adapter = Adapter(shared.encoder.embed_dim, shared.spec.num_classes, m.adapter_width)
    losses: list[float] = []
    if resume is not None:
        adapter.load_state_dict(resume["teacher"])
    else:
        text_labels = shared.text_labels
        if ctx.cfg.runtime.control == "shuffled_description_labels":
            text_labels = text_labels[torch.randperm(len(text_labels), generator=generator)]
        losses = train_text_adapter(
            adapter, shared.text_embeddings, text_labels, steps=m.stage1_steps,
            noise_std=m.stage1_noise_std, lr=m.stage1_lr, weight_decay=m.weight_decay,
            label_smoothing=m.label_smoothing, generator=generator,
        )
    teacher = make_teacher(adapter)
    labels = {split: teacher_labels(teacher, shared.clean_features[split], normalize=True)
              for split in ("train", "val")}
    if ctx.cfg.runtime.control == "shuffled_pseudo_labels":
        labels["train"] = labels["train"][torch.randperm(len(labels["train"]), generator=generator)]
    elif ctx.cfg.runtime.control == "oracle_pseudo_labels":
        labels["train"] = shared.labels["train"].clone()
    accuracy = float((labels["train"] == shared.labels["train"]).float().mean()) \
        if len(labels["train"]) else math.nan
    result = Stage1Result(
        adapter=adapter, teacher=teacher, teacher_state={k: v.detach().clone() for k, v in teacher.state_dict().items()},
        losses=losses, teacher_labels=labels, pseudo_label_accuracy=accuracy,
    )
    if ctx.cfg.runtime.selection_includes_stage1:
        result.val_probs = result.probs(shared.clean_features["val"])
        result.val_metrics, _ = split_metrics(result.val_probs, shared.labels["val"], shared.spec, "val_",
                                               teacher=labels["val"], threshold=ctx.cfg.runtime.collapse_threshold)
    return result


def _start_stage2(ctx: TrialContext, stage1: Stage1Result, generator: torch.Generator,
                  resume: dict | None) -> Stage2State:
    """The student (prompts + a copy of the stage-1 adapter) and its optimiser, fresh or resumed."""
    from medguna.method.stage2 import make_stage2_optimizer

    m, shared = ctx.cfg.method, ctx.shared
    backend = compile_backend(ctx.cfg.runtime.compile_student, ctx.device) if m.prompt_length else None
    if backend is not None:
        use_inductor_cache(ctx.cfg.data.cache_dir)
    student = Student(shared.encoder, copy.deepcopy(stage1.adapter).requires_grad_(True), m.prompt_length,
                      StudentForward(shared.encoder, m.prompt_insertion, backend), m.normalize_student, generator)
    optimizer = make_stage2_optimizer(list(student.parameters()), name=m.stage2_optimizer,
                                      lr=m.stage2_lr, weight_decay=m.weight_decay)
    history: list[dict[str, Any]] = []
    epoch_states: list[dict[str, torch.Tensor]] = []
    first_epoch = 1
    if resume is not None:
        student.load_state_dict(resume["student"])
        optimizer.load_state_dict(resume["optimizer"])
        history, epoch_states = resume["history"], resume["epoch_states"]
        first_epoch = int(resume["epoch"]) + 1
        generator.set_state(resume["generator"])
    prepared, optimizer = ctx.accelerator.prepare(student, optimizer)
    if shared.images["train"].shape[0] == 0:
        raise TrialError(f"dataset {shared.spec.name} has no training images: check data.root")
    train_set = _stage2_training_set(ctx, stage1)
    return Stage2State(
        student=prepared, plain_student=ctx.accelerator.unwrap_model(prepared), optimizer=optimizer,
        generator=generator, train_set=train_set, history=history, epoch_states=epoch_states,
        first_epoch=first_epoch, step=(first_epoch - 1) * (len(train_set) // _batch_size(ctx, len(train_set))),
    )


def _batch_size(ctx: TrialContext, n_train: int) -> int:
    return min(ctx.cfg.method.batch_size, n_train)


def _train_epoch(ctx: TrialContext, stage1: Stage1Result, state: Stage2State, epoch: int) -> dict[str, float]:
    """One pass over the unlabelled training images; mean losses and images/s."""
    from medguna.data.augment import strong_view
    from medguna.data.images import normalize
    from medguna.method.losses import stage2_loss
    from medguna.method.stage2 import check_finite

    m, shared, accelerator, device = ctx.cfg.method, ctx.shared, ctx.accelerator, ctx.device
    train_set = state.train_set
    n_train = len(train_set)
    batch = _batch_size(ctx, n_train)
    started = time.perf_counter()
    sums = {"loss": 0.0, "loss_ce": 0.0, "loss_entropy": 0.0}
    n_batches = 0
    order = torch.randperm(n_train, generator=state.generator)
    profiler = step_profiler(ctx.cfg.runtime.profile_steps, device, ctx.log_dir, epoch == state.first_epoch)
    profiler.start()
    for start in range(0, n_train - batch + 1, batch):  # drop_last, as the reference
        idx = order[start:start + batch]
        if accelerator.num_processes > 1:  # every process draws the same order, takes its shard
            idx = idx[accelerator.process_index::accelerator.num_processes]
        targets = train_set.teacher_labels[idx].to(device)
        if train_set.banks is not None:
            view_idx = torch.randint(0, train_set.banks[0].shape[0], (len(idx),), generator=state.generator)
            logits = state.student(features=train_set.bank_at(view_idx, idx).to(device))
        else:
            views = strong_view(train_set.images_at(idx).to(device), out_size=shared.encoder.image_size,
                                generator=state.generator, interpolation=m.crop_interpolation,
                                sizes=train_set.sizes_at(idx), augmentation=m.strong_view_augmentation)
            with ctx.autocast():
                logits = state.student(pixels=normalize(views, shared.preprocessing))
        loss, terms = stage2_loss(
            logits.float(), targets, ce_weight=m.ce_weight, entropy_weight=m.entropy_weight,
            confident_ratio=m.confident_ratio, label_smoothing=m.label_smoothing,
            safe_entropy=m.safe_entropy,
        )
        check_finite(loss, f"epoch {epoch}, step {state.step + 1} (loss_ce={float(terms['loss_ce']):.4g}, "
                           f"loss_entropy={float(terms['loss_entropy']):.4g})")
        state.optimizer.zero_grad(set_to_none=True)
        accelerator.backward(loss)
        state.optimizer.step()
        state.step += 1
        n_batches += 1
        sums["loss"] += float(loss.detach())
        sums["loss_ce"] += float(terms["loss_ce"])
        sums["loss_entropy"] += float(terms["loss_entropy"])
        if ctx.tb is not None and state.step % ctx.cfg.runtime.log_every_steps == 0:
            ctx.tb.scalars({"step_loss": float(loss.detach())}, state.step)
        profiler.step()
    profiler.stop()
    seconds = time.perf_counter() - started
    return {**{k: v / max(n_batches, 1) for k, v in sums.items()},
            "images_per_second": n_batches * batch / max(seconds, 1e-9)}


def _stage2_epoch(ctx: TrialContext, stage1: Stage1Result, state: Stage2State, epoch: int,
                  setup_seconds: float) -> dict[str, Any]:
    """Train one epoch, evaluate on validation, record the epoch's row and student weights."""
    r = ctx.cfg.runtime
    train = _train_epoch(ctx, stage1, state, epoch)
    val_probs = evaluate(state.plain_student, ctx.shared, "val", device=ctx.device,
                          autocast=ctx.autocast, batch_size=r.eval_batch_size)
    val_metrics, _ = split_metrics(val_probs, ctx.shared.labels["val"], ctx.shared.spec, "val_",
                                    teacher=stage1.teacher_labels["val"], threshold=r.collapse_threshold)
    state.val_probs[epoch] = val_probs
    row = {
        **ctx.provenance,
        "num_processes": ctx.accelerator.num_processes,
        "epoch": epoch,
        **{k: train[k] for k in ("loss", "loss_ce", "loss_entropy")},
        "lr": state.optimizer.param_groups[0]["lr"],
        "images_per_second": train["images_per_second"],
        "student_compile": state.plain_student.image_forward.status,
        "pseudo_label_accuracy": stage1.pseudo_label_accuracy,
        "stage2_images": len(state.train_set),
        **val_metrics,
        **ctx.zero_shot["val"],
        **epoch_test_metrics(ctx, state),
        "setup_seconds": setup_seconds,
        "peak_memory_mb": peak_memory_mb(ctx.device),
    }
    if epoch == 1 and stage1.losses:
        row["stage1_final_loss"] = stage1.losses[-1]
    state.history.append(row)
    # Tune's metric: the best objective so far, so ASHA and Optuna judge a trial by the epoch
    # that selection would keep, not by whichever epoch happened to come last.
    row[OBJECTIVE_BEST_SO_FAR] = best_so_far(state.history, r.objective,
                                             stage1_candidate(r.objective, stage1.val_metrics))
    state.epoch_states.append({k: v.detach().cpu().clone()
                               for k, v in state.plain_student.state_dict().items()})
    if ctx.tb is not None:
        ctx.tb.scalars(row, epoch)
    return row


def _checkpoint(stage1: Stage1Result, state: Stage2State, epoch: int) -> dict[str, Any]:
    """What a resumed trial needs to continue after `epoch` exactly as if never stopped."""
    return {
        "epoch": epoch, "teacher": stage1.teacher_state, "student": state.plain_student.state_dict(),
        "optimizer": state.optimizer.state_dict(), "history": state.history,
        "epoch_states": state.epoch_states, "generator": state.generator.get_state(),
    }


def _select_and_test(ctx: TrialContext, stage1: Stage1Result, state: Stage2State, setup_seconds: float):
    """Select an epoch on validation (or a label-free score), then touch the test split once.

    Epoch 0 is stage 1 alone (runtime.selection_includes_stage1): kept only when it is strictly
    better on the objective than every stage-2 epoch, so a stage 2 that hurts is not reported;
    never on an objective stage 1 meets by construction (stage1_candidate)."""
    from medguna.method.selection import select_epoch

    r = ctx.cfg.runtime
    # Every process's trained student, in rank order: with synchronised gradients they are equal,
    # so the row shows a multi-process trial trained one model, not one per data shard.
    trained_digests = [state_digest(state.epoch_states[-1])]
    if ctx.accelerator.num_processes > 1:
        from accelerate.utils import gather_object

        trained_digests = gather_object(trained_digests)
    selected = select_epoch(state.history, r.objective) + 1  # 1-based epoch number
    objective_value = state.history[selected - 1].get(r.objective, math.nan)
    stage1_value = stage1_candidate(r.objective, stage1.val_metrics)
    # select_epoch never picks a NaN epoch; a NaN stage 1 loses.
    if stage1_value is not None and stage1_value > objective_value:
        selected, objective_value = 0, stage1_value
        test_probs = stage1.probs(ctx.shared.clean_features["test"])
    else:
        state.plain_student.load_state_dict(state.epoch_states[selected - 1])
        test_probs = evaluate(state.plain_student, ctx.shared, "test", device=ctx.device,
                               autocast=ctx.autocast, batch_size=r.eval_batch_size)
    test_metrics, confusion = split_metrics(test_probs, ctx.shared.labels["test"], ctx.shared.spec,
                                             "test_", threshold=r.collapse_threshold)
    state.test_probs = test_probs
    final = {
        **state.history[-1],
        **test_metrics,
        **ctx.zero_shot["test"],
        # Stage 1 alone on validation, beside the epochs it competed with (absent when it did not).
        **prefixed("stage1_", stage1.val_metrics),
        "selected_epoch": selected,
        OBJECTIVE: r.objective,
        OBJECTIVE_SELECTED: objective_value,
        "trial_seconds": time.perf_counter() - ctx.started,
        STATUS: FINAL_STATUS,
        "student_sha256_by_rank": ",".join(d[:16] for d in trained_digests),
    }
    final["setup_share"] = setup_seconds / max(final["trial_seconds"], 1e-9)
    return final, confusion, selected


def _write_final_logs(ctx: TrialContext, final: dict[str, Any], confusion, selected: int,
                      params: dict) -> None:
    """Test scalars, HPARAMS and the confusion matrix image in the trial's TensorBoard run."""
    if ctx.tb is None:
        return
    m, spec = ctx.cfg.method, ctx.shared.spec
    # The selected epoch's objective too: the HParams tab reads it as the trial's objective.
    ctx.tb.scalars({k: v for k, v in final.items()
                    if k.startswith(("test_", "zeroshot_test_")) or k == OBJECTIVE_SELECTED}, m.stage2_epochs)
    hp = {**to_dict(m), **params, "dataset": ctx.cfg.data.dataset}
    ctx.tb.hparams(hp, {k: final[k] for k in (OBJECTIVE_SELECTED, "test_accuracy", "test_balanced_accuracy",
                                              "zeroshot_test_balanced_accuracy", "test_ece") if k in final})
    if confusion is not None:
        which = f"epoch {selected}" if selected else "stage 1 alone (epoch 0)"
        ctx.tb.confusion_matrix(confusion, list(spec.classes),
                                f"{spec.name} test, {which} ({ctx.provenance['data_source']})",
                                m.stage2_epochs)
    ctx.tb.close()


def _write_predictions(ctx: TrialContext, stage1: Stage1Result, state: Stage2State, selected: int) -> None:
    """Per-image predictions of the selected epoch (0: stage 1 alone) and of zero-shot, on
    validation and test."""
    from medguna.trial.predictions import image_ids, prediction_frame, write_predictions

    if ctx.log_dir is None or not ctx.accelerator.is_main_process or state.test_probs is None:
        return
    shared = ctx.shared
    val_probs = stage1.val_probs if selected == 0 else state.val_probs.get(selected)
    if val_probs is None:  # the selected epoch ran before a resume: score it again (same weights)
        val_probs = evaluate(state.plain_student, shared, "val", device=ctx.device,
                              autocast=ctx.autocast, batch_size=ctx.cfg.runtime.eval_batch_size)
    classes = list(shared.spec.classes)
    frames = []
    for model, epoch, probs in (("adapted", selected, {"val": val_probs, "test": state.test_probs}),
                                ("zeroshot", 0, ctx.zero_shot_probs)):
        for split in ("val", "test"):
            ids = image_ids(shared.manifest.paths(split), shared.manifest.root)
            frames.append(prediction_frame(model, split, epoch, ids, shared.labels[split],
                                           probs[split], classes))
    write_predictions(ctx.log_dir, frames)
