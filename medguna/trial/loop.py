"""One MedUnA trial, start to end: stage 1 on text, stage 2 on unlabelled images, selection, test.

The same function runs from `medguna trial`, from a test, and inside a Ray Tune worker; only the
reporter differs. Training goes through accelerate (device placement, bf16 autocast).
"""

from __future__ import annotations

import copy
import hashlib
import math
import resource
import sys
import time
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from medguna.config import STAGE1_BY_CONSTRUCTION, TrialConfig, to_dict
from medguna.errors import TrialError
from medguna.results import (
    FINAL_STATUS,
    OBJECTIVE,
    OBJECTIVE_BEST_SO_FAR,
    OBJECTIVE_SELECTED,
    STATUS,
    VARIANT,
)
from medguna.trial.compile import StudentForward, compile_backend, use_inductor_cache
from medguna.trial.memory import release_memory
from medguna.trial.prepare import SharedWork, feature_bank, image_cache_dir, prepare_shared_work
from medguna.trial.profiling import step_profiler
from medguna.trial.reporting import Reporter
from medguna.versions import code_version, library_versions

# The reference initialises its prompt tokens uniformly in [-0.0833, 0.0833] (docs/method.md §4).
PROMPT_INIT_BOUND = 0.0833


class Student(nn.Module):
    """Trainable part of stage 2: prompt tokens and the student adapter.

    The frozen encoder is held outside the module tree, so checkpoints and DDP see only what trains.
    In training mode the prompted forward goes through `image_forward`, compiled with
    `backend` once checked (None: eager); evaluation, at other batch sizes and without
    gradients, stays eager.
    """

    def __init__(self, encoder, adapter: nn.Module, prompt_length: int, insertion: str,
                 normalize_features: bool, generator: torch.Generator,
                 backend: str | None = None) -> None:
        super().__init__()
        self.__dict__["encoder"] = encoder
        self.__dict__["image_forward"] = StudentForward(encoder, insertion, backend)
        self.adapter = adapter
        self.normalize_features = normalize_features
        if prompt_length > 0:
            init = torch.empty(prompt_length, encoder.prompt_dim)
            init.uniform_(-PROMPT_INIT_BOUND, PROMPT_INIT_BOUND, generator=generator)
            self.prompts = nn.Parameter(init)
        else:
            self.prompts = None

    def forward(self, pixels: torch.Tensor | None = None, features: torch.Tensor | None = None):
        from medguna.method.teacher import student_logits

        if features is None:
            image_forward = self.image_forward if self.training else self.image_forward.eager
            features = image_forward(pixels, self.prompts)
        return student_logits(self.adapter, features.float(), normalize=self.normalize_features)


def mixed_precision(cfg: TrialConfig) -> str:
    choice = cfg.runtime.mixed_precision
    if choice != "auto":
        return choice
    if cfg.method.variant == "reference":  # the reference trains in fp32 (docs/method.md §4)
        return "no"
    if not cfg.runtime.cpu and torch.cuda.is_available() and torch.cuda.is_bf16_supported():
        return "bf16"
    return "no"


def device_name(device: torch.device) -> str:
    """What a result row records as the device: the GPU's model, not only its index."""
    if device.type == "cuda":
        return f"cuda ({torch.cuda.get_device_name(device)})"
    return device.type


def make_accelerator(cfg: TrialConfig):
    from accelerate import Accelerator
    from accelerate.state import AcceleratorState, PartialState

    # AcceleratorState is a per-process singleton: reset it so trials of different precision can
    # share a reused Ray actor. PartialState holds the device: a CPU trial before a GPU one in the
    # same process would otherwise leave the GPU trial on the CPU.
    want_cpu = cfg.runtime.cpu or not torch.cuda.is_available()
    stale_device = bool(PartialState._shared_state) and (PartialState().device.type == "cpu") != want_cpu
    AcceleratorState._reset_state(reset_partial_state=stale_device)
    return Accelerator(mixed_precision=mixed_precision(cfg), cpu=cfg.runtime.cpu)


def provenance(cfg: TrialConfig, shared: SharedWork) -> dict[str, Any]:
    info = shared.encoder.info
    return {
        "dataset": cfg.data.dataset,
        "data_source": "synthetic" if shared.manifest.is_synthetic else "real",
        # Which acquisition shift the stand-in was drawn under ("none" = the pretraining domain).
        "synthetic_shift": (shared.manifest.synthetic_info or {}).get("shift", "none")
        if shared.manifest.is_synthetic else "",
        # Which draw of the stand-in's images (data.synthetic_seed); "" for real data.
        "synthetic_seed": str((shared.manifest.synthetic_info or {}).get("seed", ""))
        if shared.manifest.is_synthetic else "",
        "encoder": info.get("encoder", cfg.model.encoder),
        "checkpoint": str(info.get("checkpoint", cfg.model.checkpoint)),
        "checkpoint_sha256": str(info.get("checkpoint_sha256", ""))[:12],
        VARIANT: cfg.method.variant,
        "control": cfg.runtime.control,  # "none", or a control (negative or oracle) that is not a result
        # Traces a row to its sentences: a description set's provenance records the same hash.
        "descriptions_sha256": shared.descriptions_sha256[:16],
        "protocol": cfg.runtime.protocol,
        "code_version": code_version(),
        **library_versions(),
        "node_id": _ray_node_id(),
    }


def _ray_node_id() -> str:
    """The Ray node running this trial, "" outside Ray: says which machine of a cluster ran it.

    Read from Ray only when the process already runs inside Ray, so a plain `medguna trial`
    neither imports nor starts it.
    """
    ray = sys.modules.get("ray")
    if ray is None or not ray.is_initialized():
        return ""
    return ray.get_runtime_context().get_node_id()


def state_digest(state: dict[str, torch.Tensor]) -> str:
    """SHA-256 of a state dict's names, dtypes, shapes and bytes: equal only for equal states."""
    digest = hashlib.sha256()
    for name in sorted(state):
        tensor = state[name].detach().cpu().contiguous()
        digest.update(f"{name}|{tensor.dtype}|{tuple(tensor.shape)}|".encode())
        digest.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def _reset_peak_memory(device: torch.device) -> None:
    """Start this trial's peak-memory count, so a reused worker does not report an earlier trial's peak."""
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
        return
    try:  # Linux: writing 5 to clear_refs resets the process's peak RSS (VmHWM)
        with open("/proc/self/clear_refs", "w") as handle:
            handle.write("5")
    except OSError:
        pass


def _peak_memory_mb(device: torch.device) -> float:
    """Peak memory since _reset_peak_memory: CUDA allocations, or the process's peak RSS on CPU.

    The RSS includes pages of the memory-mapped image cache this trial touched; those are shared
    page cache, not a private copy per trial.
    """
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    try:
        with open("/proc/self/status") as handle:
            for line in handle:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024  # kB
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


def _evaluate(student: Student, shared: SharedWork, split: str, *, device, autocast, batch_size: int):
    """Softmax outputs of the student on the clean view of `split`."""
    from medguna.data.augment import clean_view
    from medguna.data.images import normalize

    student.eval()
    probs = []
    with torch.no_grad():
        if student.prompts is None:  # the clean view's frozen features are cached
            feats = shared.clean_features[split].to(device)
            probs.append(torch.softmax(student(features=feats).float(), dim=1).cpu())
        else:
            images = shared.images[split]
            for start in range(0, images.shape[0], batch_size):
                batch = images[start:start + batch_size].to(device)
                pixels = normalize(clean_view(batch, out_size=student.encoder.image_size),
                                   shared.preprocessing)
                with autocast():
                    logits = student(pixels=pixels)
                probs.append(torch.softmax(logits.float(), dim=1).cpu())
    student.train()
    return torch.cat(probs) if probs else torch.empty(0, shared.spec.num_classes)


def _prefixed(prefix: str, values: dict[str, Any]) -> dict[str, Any]:
    out = {}
    for key, value in values.items():
        if key == "confusion_matrix":
            continue
        out[f"{prefix}{key}"] = value
    return out


def _split_metrics(probs, labels, spec, prefix: str, teacher=None, threshold: float = 0.95):
    from medguna.method.metrics import classification_metrics, label_free_metrics

    metrics = classification_metrics(probs, labels, list(spec.classes))
    free = label_free_metrics(probs, teacher_labels=teacher, collapse_threshold=threshold)
    merged = {**_prefixed(prefix, metrics), **_prefixed(prefix, free)}
    return merged, metrics.get("confusion_matrix")


def stage1_candidate(objective: str, stage1_metrics: dict[str, float]) -> float | None:
    """Stage 1 alone's objective when it competes in selection: None when it did not run on
    validation, or on an objective it meets by construction (it would always win)."""
    if objective in STAGE1_BY_CONSTRUCTION:
        return None
    return stage1_metrics.get(objective)


def _best_so_far(history: list[dict[str, Any]], objective: str, stage1: float | None = None) -> float:
    """The objective of what selection would keep so far (stage 1 alone counts when it competes)."""
    values = [h.get(objective, math.nan) for h in history] + ([stage1] if stage1 is not None else [])
    finite = [v for v in values if isinstance(v, (int, float)) and math.isfinite(v)]
    return max(finite) if finite else math.nan


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
    final.update(_test_selected(ctx, state.history))
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
    _reset_peak_memory(device)
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
        ctx.zero_shot[split], _ = _split_metrics(ctx.zero_shot_probs[split], shared.labels[split],
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
        result.val_metrics, _ = _split_metrics(result.val_probs, shared.labels["val"], shared.spec, "val_",
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
    student = Student(shared.encoder, copy.deepcopy(stage1.adapter).requires_grad_(True),
                      m.prompt_length, m.prompt_insertion, m.normalize_student, generator, backend)
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
    val_probs = _evaluate(state.plain_student, ctx.shared, "val", device=ctx.device,
                          autocast=ctx.autocast, batch_size=r.eval_batch_size)
    val_metrics, _ = _split_metrics(val_probs, ctx.shared.labels["val"], ctx.shared.spec, "val_",
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
        **_test_every_epoch(ctx, state),
        "setup_seconds": setup_seconds,
        "peak_memory_mb": _peak_memory_mb(ctx.device),
    }
    if epoch == 1 and stage1.losses:
        row["stage1_final_loss"] = stage1.losses[-1]
    state.history.append(row)
    # Tune's metric: the best objective so far, so ASHA and Optuna judge a trial by the epoch
    # that selection would keep, not by whichever epoch happened to come last.
    row[OBJECTIVE_BEST_SO_FAR] = _best_so_far(state.history, r.objective,
                                              stage1_candidate(r.objective, stage1.val_metrics))
    state.epoch_states.append({k: v.detach().cpu().clone()
                               for k, v in state.plain_student.state_dict().items()})
    if ctx.tb is not None:
        ctx.tb.scalars(row, epoch)
    return row


# Under runtime.protocol=reference: the test split read every epoch, as the reference does, and the
# best of those epochs reported apart. Optimistic (chosen on test): never the objective, never ranked.
TEST_EPOCH_PREFIX = "test_epoch_"
TEST_SELECTED_PREFIX = "test_selected_"
TEST_SELECTED_METRICS = ("accuracy", "balanced_accuracy", "macro_f1", "auroc")


def _test_every_epoch(ctx: TrialContext, state: Stage2State) -> dict[str, Any]:
    """This epoch's test metrics as test_epoch_* (reference protocol only; else nothing)."""
    if ctx.cfg.runtime.protocol != "reference":
        return {}
    r = ctx.cfg.runtime
    probs = _evaluate(state.plain_student, ctx.shared, "test", device=ctx.device,
                      autocast=ctx.autocast, batch_size=r.eval_batch_size)
    metrics, _ = _split_metrics(probs, ctx.shared.labels["test"], ctx.shared.spec, TEST_EPOCH_PREFIX,
                                threshold=r.collapse_threshold)
    return metrics


def _test_selected(ctx: TrialContext, history: list[dict[str, Any]]) -> dict[str, Any]:
    """The reference's reported figure: the epoch of best test accuracy and its test metrics.

    Named test_selected_* so that it is never mistaken for the validation-selected test_* columns.
    """
    if ctx.cfg.runtime.protocol != "reference":
        return {}
    accuracies = [h.get(f"{TEST_EPOCH_PREFIX}accuracy", math.nan) for h in history]
    best = max(range(len(history)), key=lambda i: (accuracies[i] if math.isfinite(accuracies[i]) else -1.0, -i))
    chosen = history[best]
    return {
        f"{TEST_SELECTED_PREFIX}epoch": best + 1,
        **{f"{TEST_SELECTED_PREFIX}{m}": chosen.get(f"{TEST_EPOCH_PREFIX}{m}", math.nan)
           for m in TEST_SELECTED_METRICS},
        f"{TEST_SELECTED_PREFIX}note": "optimistic: chosen on test, as the reference reports",
    }


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
        test_probs = _evaluate(state.plain_student, ctx.shared, "test", device=ctx.device,
                               autocast=ctx.autocast, batch_size=r.eval_batch_size)
    test_metrics, confusion = _split_metrics(test_probs, ctx.shared.labels["test"], ctx.shared.spec,
                                             "test_", threshold=r.collapse_threshold)
    state.test_probs = test_probs
    final = {
        **state.history[-1],
        **test_metrics,
        **ctx.zero_shot["test"],
        # Stage 1 alone on validation, beside the epochs it competed with (absent when it did not).
        **_prefixed("stage1_", stage1.val_metrics),
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
        val_probs = _evaluate(state.plain_student, shared, "val", device=ctx.device,
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
