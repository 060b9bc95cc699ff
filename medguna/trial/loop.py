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
from typing import Any

import torch
from torch import nn

import medguna
from medguna.config import TrialConfig, to_dict
from medguna.errors import TrialError
from medguna.trial.prepare import SharedWork, feature_bank, image_cache_dir, prepare_shared_work
from medguna.trial.reporting import Reporter

# The reference initialises its prompt tokens uniformly in [-0.0833, 0.0833] (docs/method.md §4).
PROMPT_INIT_BOUND = 0.0833


class Student(nn.Module):
    """Trainable part of stage 2: prompt tokens and the student adapter.

    The frozen encoder is held outside the module tree, so checkpoints and DDP see only what trains.
    """

    def __init__(self, encoder, adapter: nn.Module, prompt_length: int, insertion: str,
                 normalize_features: bool, generator: torch.Generator) -> None:
        super().__init__()
        self.__dict__["encoder"] = encoder
        self.adapter = adapter
        self.insertion = insertion
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
            features = self.encoder.image_features(pixels, prompts=self.prompts, insertion=self.insertion)
        return student_logits(self.adapter, features.float(), normalize=self.normalize_features)


def mixed_precision(cfg: TrialConfig) -> str:
    choice = cfg.runtime.mixed_precision
    if choice != "auto":
        return choice
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
        "encoder": info.get("encoder", cfg.model.encoder),
        "checkpoint": "test-size" if info.get("is_test_size") else str(cfg.model.checkpoint),
        "checkpoint_sha256": str(info.get("checkpoint_sha256", ""))[:12],
        "method_variant": cfg.method.variant,
        "code_version": medguna.__version__,
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


def _best_so_far(history: list[dict[str, Any]], objective: str) -> float:
    values = [h.get(objective, math.nan) for h in history]
    finite = [v for v in values if isinstance(v, (int, float)) and math.isfinite(v)]
    return max(finite) if finite else math.nan


def run_trial(cfg: TrialConfig, reporter: Reporter, *, log_dir=None, params: dict | None = None) -> dict:
    """Run one trial; report every epoch; return the final row (with test metrics)."""
    with image_cache_dir(cfg) as image_dir:
        return _run(cfg, reporter, image_dir=image_dir, log_dir=log_dir, params=params or {})


def _run(cfg: TrialConfig, reporter: Reporter, *, image_dir, log_dir, params: dict) -> dict:
    from medguna.data.augment import strong_view
    from medguna.data.images import normalize
    from medguna.method.losses import stage2_loss
    from medguna.method.selection import select_epoch
    from medguna.method.stage1 import make_teacher, train_text_adapter
    from medguna.method.stage2 import check_finite, make_stage2_optimizer
    from medguna.method.teacher import teacher_labels
    from medguna.method.zeroshot import zero_shot_logits
    from medguna.models.adapter import Adapter

    cfg.validate()
    m, r = cfg.method, cfg.runtime
    accelerator = make_accelerator(cfg)
    device = accelerator.device
    autocast = accelerator.autocast
    torch.manual_seed(m.seed)
    _reset_peak_memory(device)
    started = time.perf_counter()

    shared = prepare_shared_work(cfg, device=device, autocast=autocast, image_dir=image_dir)
    spec, encoder = shared.spec, shared.encoder
    prov = {**provenance(cfg, shared), "device": device_name(device),
            "mixed_precision": accelerator.mixed_precision}
    tb = None
    if log_dir is not None and accelerator.is_main_process:
        from medguna.trial.reporting import TensorBoardLog
        tb = TensorBoardLog(log_dir)

    # Zero-shot baseline and teacher labels come from the cached clean-view features.
    zero_shot = {}
    for split in ("val", "test"):
        probs = torch.softmax(zero_shot_logits(shared.clean_features[split], shared.class_prototypes) * 100.0,
                              dim=1)
        zero_shot[split], _ = _split_metrics(probs, shared.labels[split], spec, f"zeroshot_{split}_")

    generator = torch.Generator().manual_seed(m.seed)
    resume = reporter.resume_state()
    adapter = Adapter(encoder.embed_dim, spec.num_classes, m.adapter_width)
    stage1_losses: list[float] = []
    if resume is not None:
        adapter.load_state_dict(resume["teacher"])
    else:
        stage1_losses = train_text_adapter(
            adapter, shared.text_embeddings, shared.text_labels, steps=m.stage1_steps,
            noise_std=m.stage1_noise_std, lr=m.stage1_lr, weight_decay=m.weight_decay,
            label_smoothing=m.label_smoothing, generator=generator,
        )
    teacher = make_teacher(adapter)
    teacher_state = {k: v.detach().clone() for k, v in teacher.state_dict().items()}
    train_teacher = teacher_labels(teacher, shared.clean_features["train"], normalize=True)
    val_teacher = teacher_labels(teacher, shared.clean_features["val"], normalize=True)
    pseudo_label_accuracy = float((train_teacher == shared.labels["train"]).float().mean()) \
        if len(train_teacher) else math.nan

    student = Student(encoder, copy.deepcopy(adapter).requires_grad_(True), m.prompt_length,
                      m.prompt_insertion, m.normalize_student, generator)
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
    student, optimizer = accelerator.prepare(student, optimizer)
    plain_student: Student = accelerator.unwrap_model(student)

    bank = None
    if m.prompt_length == 0:
        bank = feature_bank(cfg, shared, device=device, autocast=autocast)
    train_images = shared.images["train"]
    n_train = train_images.shape[0]
    batch = min(m.batch_size, n_train)
    if n_train == 0:
        raise TrialError(f"dataset {spec.name} has no training images: check data.root")
    setup_seconds = time.perf_counter() - started
    step = (first_epoch - 1) * (n_train // batch)

    for epoch in range(first_epoch, m.stage2_epochs + 1):
        epoch_start = time.perf_counter()
        sums = {"loss": 0.0, "loss_ce": 0.0, "loss_entropy": 0.0}
        n_batches = 0
        order = torch.randperm(n_train, generator=generator)
        for start in range(0, n_train - batch + 1, batch):  # drop_last, as the reference
            idx = order[start:start + batch]
            if accelerator.num_processes > 1:  # every process draws the same order, takes its shard
                idx = idx[accelerator.process_index::accelerator.num_processes]
            targets = train_teacher[idx].to(device)
            if bank is not None:
                view_idx = torch.randint(0, bank.shape[0], (len(idx),), generator=generator)
                logits = student(features=bank[view_idx, idx].to(device))
            else:
                views = strong_view(train_images[idx].to(device), out_size=encoder.image_size,
                                    generator=generator)
                with autocast():
                    logits = student(pixels=normalize(views, shared.preprocessing))
            loss, terms = stage2_loss(
                logits.float(), targets, ce_weight=m.ce_weight, entropy_weight=m.entropy_weight,
                confident_ratio=m.confident_ratio, label_smoothing=m.label_smoothing,
                safe_entropy=m.safe_entropy,
            )
            check_finite(loss, f"epoch {epoch}, step {step + 1} (loss_ce={float(terms['loss_ce']):.4g}, "
                               f"loss_entropy={float(terms['loss_entropy']):.4g})")
            optimizer.zero_grad(set_to_none=True)
            accelerator.backward(loss)
            optimizer.step()
            step += 1
            n_batches += 1
            sums["loss"] += float(loss.detach())
            sums["loss_ce"] += float(terms["loss_ce"])
            sums["loss_entropy"] += float(terms["loss_entropy"])
            if tb is not None and step % r.log_every_steps == 0:
                tb.scalars({"step_loss": float(loss.detach())}, step)
        train_seconds = time.perf_counter() - epoch_start

        val_probs = _evaluate(plain_student, shared, "val", device=device, autocast=autocast,
                              batch_size=r.eval_batch_size)
        val_metrics, _ = _split_metrics(val_probs, shared.labels["val"], spec, "val_",
                                        teacher=val_teacher, threshold=r.collapse_threshold)
        row = {
            **prov,
            "num_processes": accelerator.num_processes,
            "epoch": epoch,
            **{k: v / max(n_batches, 1) for k, v in sums.items()},
            "lr": optimizer.param_groups[0]["lr"],
            "images_per_second": n_batches * batch / max(train_seconds, 1e-9),
            "pseudo_label_accuracy": pseudo_label_accuracy,
            **val_metrics,
            **zero_shot["val"],
            "setup_seconds": setup_seconds,
            "peak_memory_mb": _peak_memory_mb(device),
        }
        if epoch == 1 and stage1_losses:
            row["stage1_final_loss"] = stage1_losses[-1]
        history.append(row)
        # Tune's metric: the best objective so far, so ASHA and Optuna judge a trial by the epoch
        # that selection would keep, not by whichever epoch happened to come last.
        row["objective_value"] = _best_so_far(history, r.objective)
        epoch_states.append({k: v.detach().cpu().clone() for k, v in plain_student.state_dict().items()})
        if tb is not None:
            tb.scalars(row, epoch)
        state = None
        if epoch < m.stage2_epochs:
            state = {
                "epoch": epoch, "teacher": teacher_state, "student": plain_student.state_dict(),
                "optimizer": optimizer.state_dict(), "history": history, "epoch_states": epoch_states,
                "generator": generator.get_state(),
            }
            reporter.report(row, state)

    # Every process's trained student, in rank order: with synchronised gradients they are equal,
    # so the row shows a multi-process trial trained one model, not one per data shard.
    trained_digests = [state_digest(epoch_states[-1])]
    if accelerator.num_processes > 1:
        from accelerate.utils import gather_object

        trained_digests = gather_object(trained_digests)
    # Select on validation (or the label-free score), then touch the test split exactly once.
    selected = select_epoch(history, r.objective) + 1  # 1-based epoch number
    plain_student.load_state_dict(epoch_states[selected - 1])
    test_probs = _evaluate(plain_student, shared, "test", device=device, autocast=autocast,
                           batch_size=r.eval_batch_size)
    test_metrics, confusion = _split_metrics(test_probs, shared.labels["test"], spec, "test_",
                                             threshold=r.collapse_threshold)
    final = {
        **history[-1],
        **test_metrics,
        **zero_shot["test"],
        "selected_epoch": selected,
        "objective": r.objective,
        "objective_value": history[selected - 1].get(r.objective, math.nan),
        "trial_seconds": time.perf_counter() - started,
        "status": "completed",
        "student_sha256_by_rank": ",".join(d[:16] for d in trained_digests),
    }
    final["setup_share"] = setup_seconds / max(final["trial_seconds"], 1e-9)
    if tb is not None:
        tb.scalars({k: v for k, v in final.items() if k.startswith(("test_", "zeroshot_test_"))},
                   m.stage2_epochs)
        hp = {**to_dict(cfg.method), **params, "dataset": cfg.data.dataset}
        tb.hparams(hp, {k: final[k] for k in ("objective_value", "test_accuracy", "test_balanced_accuracy",
                                              "zeroshot_test_balanced_accuracy") if k in final})
        if confusion is not None:
            tb.confusion_matrix(confusion, list(spec.classes),
                                f"{spec.name} test, epoch {selected} ({prov['data_source']})",
                                m.stage2_epochs)
        tb.close()
    reporter.report(final, None)
    return final
