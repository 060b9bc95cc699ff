"""The typed configuration shared by every layer.

Hydra composes YAML (studies/conf/) into plain dicts; `from_dict` turns them into these dataclasses,
rejecting unknown keys and wrong types with a message that names the key, so a typo fails before any
Ray work starts. Nothing here imports the rest of medguna.
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from dataclasses import dataclass, field
from typing import Any, TypeVar

from medguna.errors import ConfigError

VARIANTS = ("medguna", "reference")
PREPROCESSINGS = ("auto", "medclip", "clip")
TEXT_WRAPPERS = ("auto", "modality", "reference", "none")
OPTIMIZERS = ("sgd", "adamw")
OBJECTIVES = ("val_balanced_accuracy", "val_accuracy", "val_macro_f1", "val_auroc",
              "val_information_maximization", "val_teacher_agreement")
# Objectives stage 1 satisfies by construction (the teacher agrees with its own labels: 1.0), so
# stage 1 alone never competes in selection on them and they are measured over stage-2 epochs only.
STAGE1_BY_CONSTRUCTION = ("val_teacher_agreement",)
MIXED_PRECISIONS = ("auto", "no", "bf16", "fp16")
HIGH_BIT_DEPTHS = ("rescale", "clip")
STRONG_VIEW_SOURCES = ("auto", "square", "whole")
# The student's strong view (medguna.data.augment.strong_view): "reference" is the reference's
# natural-image recipe (crop 20-100% of the area, flip, colour jitter, random grayscale, blur);
# "crop_flip" keeps only the geometry (crop 60-100%, flip) and leaves intensity and colour as
# acquired, for findings that jitter and blur erase.
STRONG_VIEW_AUGMENTATIONS = ("reference", "crop_flip")
# Whole images for strong views are cached at this multiple of image_size (448 px at 224).
WHOLE_IMAGE_SCALE = 2  # as medguna.data.images (this module imports nothing of medguna)
# validation: stage 2 trains on the training split, the epoch is chosen on validation, test is read
# once. reference: the reference's protocol (docs/method.md §5.1), stage 2 trains on every non-test
# image and test is read every epoch; its best test epoch is reported apart, never as the objective.
PROTOCOLS = ("validation", "reference")

# The largest prompt length the reference's square-grid trick admits below 2000 tokens is far
# above anything useful; cap it so a typo (1130) fails fast instead of exhausting memory.
MAX_PROMPT_LENGTH = 1024
SWIN_PATCH_SIZE = 4  # MedCLIP-ViT's Swin-T: a 224 px image is a 56 x 56 patch grid
# A hidden layer wider than this is no longer a bottleneck of a 512-d embedding; such a value is
# almost certainly a typo (an extra zero), so it is rejected instead of allocating gigabytes.
MAX_ADAPTER_WIDTH = 8192
CONTROLS = ("none", "shuffled_pseudo_labels", "shuffled_description_labels", "oracle_pseudo_labels")
# Controls that give stage 2 what a label-free method never has: an upper bound, not a baseline.
POSITIVE_CONTROLS = ("oracle_pseudo_labels",)
# Controls that replace the teacher's labels of the training images stage 2 trains on.
PSEUDO_LABEL_CONTROLS = ("shuffled_pseudo_labels", "oracle_pseudo_labels")

# torch.compile of the prompted student's forward: auto = inductor on a GPU, off on CPU (compiling
# costs more than it saves in a short CPU trial); aot_eager captures the graph without code
# generation (a quick check that the capture is exact).
COMPILE_CHOICES = ("auto", "off", "inductor", "aot_eager")
MIN_IMAGE_SIZE, MAX_IMAGE_SIZE = 32, 4096  # below 32 px Swin's 4-px patches leave no grid to speak of
# model.checkpoint values that name a model medguna ships or builds, not a folder of the user's.
DEMO_CHECKPOINT = "demo"
TEST_SIZE_CHECKPOINT = "test-size"


def control_banner(control: str) -> str:
    """What a banner says of a control ("" for none): what it takes away, or what it adds that a
    user cannot have, and that its rows are not results."""
    if control == "none":
        return ""
    kind = "ORACLE CONTROL (trains on image labels)" if control in POSITIVE_CONTROLS else "NEGATIVE CONTROL"
    return f"{kind} runtime.control={control}: not a result"


@dataclass
class DataConfig:
    dataset: str = "shenzhen"
    root: str | None = None  # None: a synthetic stand-in is written under cache_dir and used
    cache_dir: str = "medguna_cache"
    val_fraction: float = 0.2
    test_fraction: float = 0.2  # only for datasets without an official test split
    split_seed: int = 0
    synthetic_scale: float = 1.0
    # Which draw of the stand-in's images (the generator's seed): another draw is new images of the
    # same classes and shift, for checking a finding on data it was not found on.
    synthetic_seed: int = 0
    # Acquisition shift of the stand-in (medguna.data.shifts): "demo" is the modality's preset target
    # domain, "none" the pretraining (source) domain, or "gamma=0.6,noise=0.4,...".
    synthetic_shift: str = "demo"
    image_size: int = 224


@dataclass
class ModelConfig:
    encoder: str = "medclip-vit"
    # None or "demo": the demonstration encoder shipped with medguna (pretrained on synthetic
    # drawings); "test-size": the same architecture with random weights; else a local folder.
    checkpoint: str | None = None
    tokenizer: str | None = None

    @property
    def builtin(self) -> str | None:
        """"demo" or "test-size" when no real checkpoint is configured, else None."""
        if self.checkpoint is None or self.checkpoint == DEMO_CHECKPOINT:
            return DEMO_CHECKPOINT
        return TEST_SIZE_CHECKPOINT if self.checkpoint == TEST_SIZE_CHECKPOINT else None


@dataclass
class MethodConfig:
    """MedUnA hyperparameters, named as in docs/method.md §7 everywhere they appear."""

    variant: str = "medguna"
    adapter_width: int = 0
    prompt_length: int = 16
    entropy_weight: float = 0.0  # no entropy term: the pre-registered comparison found no weight better (docs/method.md §4)
    ce_weight: float = 0.7
    confident_ratio: float = 0.1
    label_smoothing: float = 0.1
    stage1_steps: int = 4000
    stage1_noise_std: float = 0.1
    stage1_lr: float = 5e-4
    stage2_lr: float = 5e-4
    stage2_epochs: int = 5
    stage2_optimizer: str = "sgd"
    weight_decay: float = 0.01
    batch_size: int = 50
    description_source: str = "curated+templates"
    preprocessing: str = "auto"  # auto: medclip for the medguna variant, clip for reference
    # 12/16-bit images to 8 bits: rescale by bit depth, or clip above 255 as the reference's PIL
    # convert("RGB") does (whitening Montgomery). Off in both variants: only to explain a gap.
    high_bit_depth: str = "rescale"
    # What the strong view is cropped from: the clean view's cached square, or the whole image
    # (cached at WHOLE_IMAGE_SCALE x image_size) as the reference does. auto: whole for reference.
    strong_view_source: str = "auto"
    # What the strong view does to the image (STRONG_VIEW_AUGMENTATIONS): the reference's
    # jitter-and-blur recipe in both variants; crop_flip for a study to compare.
    strong_view_augmentation: str = "reference"
    text_wrapper: str = "auto"  # auto: modality for the medguna variant, reference for reference
    seed: int = 7777

    @property
    def resolved_preprocessing(self) -> str:
        if self.preprocessing != "auto":
            return self.preprocessing
        return "clip" if self.variant == "reference" else "medclip"

    @property
    def resolved_text_wrapper(self) -> str:
        if self.text_wrapper != "auto":
            return self.text_wrapper
        return "reference" if self.variant == "reference" else "modality"

    @property
    def class_templates(self) -> str:
        """Template set: the reference's exact strings in its variant, medguna's otherwise."""
        return "reference" if self.variant == "reference" else "medguna"

    @property
    def resolved_strong_view_source(self) -> str:
        if self.strong_view_source != "auto":
            return self.strong_view_source
        return "whole" if self.variant == "reference" else "square"

    @property
    def crop_interpolation(self) -> str:
        """The strong view's resize: the reference's torchvision RandomResizedCrop is bilinear."""
        return "bilinear" if self.variant == "reference" else "bicubic"

    @property
    def prompt_insertion(self) -> str:
        return "reference" if self.variant == "reference" else "grid"

    @property
    def safe_entropy(self) -> bool:
        return self.variant != "reference"

    @property
    def normalize_student(self) -> bool:
        return self.variant != "reference"


@dataclass
class RuntimeConfig:
    objective: str = "val_balanced_accuracy"
    protocol: str = "validation"  # or "reference": see PROTOCOLS
    # Stage 1 alone (the teacher on clean features, "epoch 0") competes with stage 2's epochs in
    # selection: a trial whose stage 2 does worse on the objective reports its stage-1 model.
    selection_includes_stage1: bool = True
    mixed_precision: str = "auto"  # auto: bf16 on GPUs that support it (fp32 under method=reference)
    cpu: bool = False  # force CPU even when a GPU is visible
    eval_batch_size: int = 64
    caches: bool = True  # off: decode images, encode texts and features anew each trial
    feature_bank_views: int = 8  # augmented views per image for prompt-free trials
    feature_bank_seed: int = 0
    collapse_threshold: float = 0.95
    log_every_steps: int = 10
    # A control, never a result. Negative: "shuffled_pseudo_labels" permutes the teacher's stage-2
    # labels across images, "shuffled_description_labels" the class labels of stage 1's sentences
    # (same counts per class, no link to the content), so the gain that stage must bring vanishes.
    # Positive: "oracle_pseudo_labels" trains stage 2 on the training images' true labels instead of
    # the teacher's, the most that better pseudo-labels could buy at this budget and student.
    control: str = "none"
    compile_student: str = "auto"  # see COMPILE_CHOICES
    # > 0: torch.profiler over this many stage-2 steps of the first epoch (after 2 unrecorded ones);
    # the trace goes to the trial's log folder, the top operators and kernels to profile.txt there.
    profile_steps: int = 0


@dataclass
class TrialConfig:
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    method: MethodConfig = field(default_factory=MethodConfig)
    runtime: RuntimeConfig = field(default_factory=RuntimeConfig)

    def validate(self) -> TrialConfig:
        validate_method(self.method, self.data.image_size)
        d, r = self.data, self.runtime
        check(0 < d.val_fraction < 1, "data.val_fraction", d.val_fraction, "a fraction in (0, 1)")
        check(0 < d.test_fraction < 1, "data.test_fraction", d.test_fraction, "a fraction in (0, 1)")
        check(d.synthetic_scale > 0, "data.synthetic_scale", d.synthetic_scale, "> 0")
        check(d.synthetic_seed >= 0, "data.synthetic_seed", d.synthetic_seed, "a seed >= 0")
        check(MIN_IMAGE_SIZE <= d.image_size <= MAX_IMAGE_SIZE, "data.image_size", d.image_size,
               f"pixels per side from {MIN_IMAGE_SIZE} to {MAX_IMAGE_SIZE} (MedCLIP-ViT: 224)")
        check(r.objective in OBJECTIVES, "runtime.objective", r.objective, f"one of {OBJECTIVES}")
        check(r.protocol in PROTOCOLS, "runtime.protocol", r.protocol, f"one of {PROTOCOLS}")
        check(r.mixed_precision in MIXED_PRECISIONS, "runtime.mixed_precision",
               r.mixed_precision, f"one of {MIXED_PRECISIONS}")
        check(r.feature_bank_views >= 1, "runtime.feature_bank_views", r.feature_bank_views, ">= 1")
        check(0.5 < r.collapse_threshold <= 1, "runtime.collapse_threshold",
               r.collapse_threshold, "in (0.5, 1]")
        check(r.control in CONTROLS, "runtime.control", r.control, f"one of {CONTROLS}")
        if r.control in PSEUDO_LABEL_CONTROLS and r.protocol == "reference":
            # Under the reference protocol stage 2 also trains on the validation images, whose
            # teacher labels such a control leaves in place: half a control is no control.
            raise ConfigError(
                f"runtime.control={r.control} with runtime.protocol=reference: the control replaces "
                "the training images' stage-2 labels only, while the reference protocol also trains "
                "stage 2 on the validation images with the teacher's labels, so the control would "
                "be partial; run the control under runtime.protocol=validation (the default) or "
                "drop runtime.control")
        check(r.compile_student in COMPILE_CHOICES, "runtime.compile_student", r.compile_student,
               f"one of {COMPILE_CHOICES}")
        check(r.profile_steps >= 0, "runtime.profile_steps", r.profile_steps, ">= 0 (0: no profiling)")
        return self


def reference_prompt_lengths(image_size: int, up_to: int = MAX_PROMPT_LENGTH) -> list[int]:
    """Prompt lengths the reference insertion accepts: patches + prompts must fill a square grid."""
    grid = image_size // SWIN_PATCH_SIZE
    return [0] + [(grid + k) ** 2 - grid**2 for k in range(1, up_to) if (grid + k) ** 2 - grid**2 <= up_to]


def _check_reference_prompt_length(m: MethodConfig, image_size: int) -> None:
    # Checked here, before any trial starts, rather than at the first forward pass.
    if m.prompt_insertion != "reference" or m.prompt_length == 0:
        return
    grid = image_size // SWIN_PATCH_SIZE
    allowed = reference_prompt_lengths(image_size)
    check(m.prompt_length in allowed, "method.prompt_length", m.prompt_length,
           f"one of {allowed} with method.variant=reference (its prompts and the {grid}x{grid} patches "
           "must form a square grid); method.variant=medguna takes any length")


def validate_method(m: MethodConfig, image_size: int = 224) -> None:
    for f in dataclasses.fields(m):  # inf passes every `>= 0` below and fails only mid-training
        value = getattr(m, f.name)
        if isinstance(value, float):
            check(math.isfinite(value), f"method.{f.name}", value, "a finite number")
    check(m.variant in VARIANTS, "method.variant", m.variant, f"one of {VARIANTS}")
    check(0 <= m.adapter_width <= MAX_ADAPTER_WIDTH, "method.adapter_width", m.adapter_width,
           f"0 (linear adapter) or a bottleneck width up to {MAX_ADAPTER_WIDTH}")
    check(0 <= m.prompt_length <= MAX_PROMPT_LENGTH, "method.prompt_length", m.prompt_length,
           f"0 (no prompts) to {MAX_PROMPT_LENGTH}")
    # Either sign: positive (the reference's) rewards the confident rows agreeing on one class,
    # negative is a diversity term as in SHOT (docs/method.md §4).
    check(math.isfinite(m.entropy_weight), "method.entropy_weight", m.entropy_weight,
           "a finite number (negative: a diversity term)")
    check(m.ce_weight >= 0, "method.ce_weight", m.ce_weight, ">= 0")
    check(0 < m.confident_ratio <= 1, "method.confident_ratio", m.confident_ratio, "in (0, 1]")
    check(0 <= m.label_smoothing < 1, "method.label_smoothing", m.label_smoothing, "in [0, 1)")
    check(m.stage1_steps >= 1, "method.stage1_steps", m.stage1_steps,
           ">= 1 (stage 1 trains the adapter that stage 2 starts from)")
    check(m.stage1_noise_std >= 0, "method.stage1_noise_std", m.stage1_noise_std, ">= 0")
    check(m.stage1_lr > 0, "method.stage1_lr", m.stage1_lr, "> 0")
    check(m.stage2_lr > 0, "method.stage2_lr", m.stage2_lr, "> 0")
    check(m.stage2_epochs >= 1, "method.stage2_epochs", m.stage2_epochs, ">= 1")
    check(m.stage2_optimizer in OPTIMIZERS, "method.stage2_optimizer", m.stage2_optimizer,
           f"one of {OPTIMIZERS}")
    check(m.batch_size >= 1, "method.batch_size", m.batch_size, ">= 1")
    check(m.weight_decay >= 0, "method.weight_decay", m.weight_decay, ">= 0")
    check(m.preprocessing in PREPROCESSINGS, "method.preprocessing", m.preprocessing,
           f"one of {PREPROCESSINGS}")
    check(m.text_wrapper in TEXT_WRAPPERS, "method.text_wrapper", m.text_wrapper,
           f"one of {TEXT_WRAPPERS}")
    check(m.high_bit_depth in HIGH_BIT_DEPTHS, "method.high_bit_depth", m.high_bit_depth,
           f"one of {HIGH_BIT_DEPTHS}")
    check(m.strong_view_augmentation in STRONG_VIEW_AUGMENTATIONS, "method.strong_view_augmentation",
           m.strong_view_augmentation, f"one of {STRONG_VIEW_AUGMENTATIONS}")
    check(m.strong_view_source in STRONG_VIEW_SOURCES, "method.strong_view_source", m.strong_view_source,
           f"one of {STRONG_VIEW_SOURCES}")
    check(bool(m.description_source), "method.description_source", m.description_source,
           "a source name (curated, templates, classname, curated+templates), file:PATH or reference:PATH")
    check(m.description_source != "reference", "method.description_source", m.description_source,
           "curated+templates (its new name: medguna's sentences composed as the reference composes "
           "its own), or reference:PATH with the reference's descriptions/generic/<dataset>.json")
    _check_reference_prompt_length(m, image_size)


def check(ok: bool, key: str, value: Any, expected: str) -> None:
    if not ok:
        raise ConfigError(f"{key}={value!r} is invalid: expected {expected}")


T = TypeVar("T")


def from_dict(cls: type[T], data: dict[str, Any] | None, prefix: str = "") -> T:
    """Build dataclass `cls` from a plain dict, naming any unknown key or wrongly typed value."""
    data = dict(data or {})
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    unknown = sorted(set(data) - set(fields))
    if unknown:
        where = prefix.rstrip(".") or cls.__name__
        raise ConfigError(
            f"unknown key(s) {', '.join(prefix + k for k in unknown)} in {where}; "
            f"known keys: {', '.join(sorted(fields))}"
        )
    kwargs = {}
    for name, value in data.items():
        kwargs[name] = _coerce(hints[name], value, prefix + name)
    return cls(**kwargs)


def _coerce(tp: Any, value: Any, key: str) -> Any:
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise ConfigError(f"{key} must be a mapping, got {value!r}")
        return from_dict(tp, value, prefix=key + ".")
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        return _coerce(inner[0], value, key)
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"{key} must be true or false, got {value!r}")
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            if isinstance(value, float) and value.is_integer():
                return int(value)
            raise ConfigError(f"{key} must be an integer, got {value!r}")
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{key} must be a number, got {value!r}")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"{key} must be a string, got {value!r}")
        return value
    return value


def to_dict(obj: Any) -> dict[str, Any]:
    return dataclasses.asdict(obj)


def method_field_names() -> list[str]:
    return [f.name for f in dataclasses.fields(MethodConfig)]


def apply_method_params(method: MethodConfig, params: dict[str, Any]) -> MethodConfig:
    """A copy of `method` with flat hyperparameters (as sampled by a study) applied and checked."""
    merged = {**to_dict(method), **params}
    updated = from_dict(MethodConfig, merged, prefix="method.")
    validate_method(updated)
    return updated
