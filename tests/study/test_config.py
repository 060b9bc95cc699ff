"""The composed configuration: defaults, overrides, and errors named before any Ray work."""

import dataclasses

import pytest

from medguna.compose import compose_study
from medguna.config import (
    MethodConfig,
    TrialConfig,
    apply_method_params,
    from_dict,
    validate_method,
)
from medguna.errors import ConfigError
from medguna.study_config import validate_space

# The reference variant's prompt insertion only takes lengths that square its patch grid.
REFERENCE_PROMPTS = "search.space.prompt_length.choices=[0,113]"


def test_default_study_composes_to_the_chestxray_datasets():
    cfg = compose_study()
    assert cfg.study.name == "chestxray"
    assert cfg.study.datasets == ["shenzhen", "montgomery", "guangzhou"]
    assert set(cfg.search.space) >= {"adapter_width", "entropy_weight", "prompt_length", "description_source"}
    assert cfg.method.variant == "medguna"


@pytest.mark.parametrize("study,datasets", [("fundus", ["idrid"]), ("skin", ["isic2018"]),
                                            ("all", ["shenzhen", "montgomery", "guangzhou", "idrid", "isic2018"])])
def test_every_study_names_its_datasets(study, datasets):
    assert compose_study([f"study={study}"]).study.datasets == datasets


def test_reference_method_group_sets_the_papers_values():
    m = compose_study(["method=reference", REFERENCE_PROMPTS]).method
    assert (m.variant, m.prompt_length, m.entropy_weight, m.ce_weight, m.batch_size) == (
        "reference", 113, 1.5, 0.7, 50)
    assert m.resolved_preprocessing == "clip" and m.resolved_text_wrapper == "reference"
    assert m.prompt_insertion == "reference" and not m.safe_entropy and not m.normalize_student


def test_trial_config_carries_the_dataset_root_and_cache():
    cfg = compose_study(["data.roots.montgomery=/data/mc", "storage.cache_dir=/tmp/c"])
    t = cfg.trial_config("montgomery")
    assert (t.data.dataset, t.data.root, t.data.cache_dir) == ("montgomery", "/data/mc", "/tmp/c")


@pytest.mark.parametrize("overrides,message", [
    (["+method.promt_length=3"], "unknown key(s) method.promt_length"),
    (["method.adapter_width=-4"], "method.adapter_width=-4"),
    (["method.prompt_length=5000"], "method.prompt_length=5000"),
    (["method.variant=mine"], "method.variant='mine'"),
    (["search.space.entropy_weight.low=4"], "needs numeric low < high"),
    (["+search.space.not_a_param={type: float, low: 0, high: 1}"], "not a method hyperparameter"),
    (["search.space.adapter_width.choices=[0,-1]"], "value -1 is out of range"),
    (["search.space.entropy_weight.type=gaussian"], "type one of"),
    (["study=nope"], "Could not find 'study/nope'"),
    (["+data.roots.chexpert=/x"], "unknown dataset(s) ['chexpert']"),
    (["resources.gpus_per_trial=1.5"], "whole number of GPUs"),
    (["runtime.objective=test_accuracy"], "runtime.objective"),
    (["method.batch_size=abc"], "must be an integer"),
    (["method.entropy_weight=inf"], "method.entropy_weight=inf is invalid: expected a finite number"),
    (["method.stage2_lr=nan"], "method.stage2_lr=nan is invalid"),
    (["method.stage1_steps=0"], "method.stage1_steps=0 is invalid: expected >= 1"),
    (["data.image_size=0"], "data.image_size=0 is invalid: expected pixels per side from 32"),
    (["method.weight_decay=-0.1"], "method.weight_decay=-0.1"),
])
def test_config_errors_name_the_key(overrides, message):
    with pytest.raises(ConfigError) as err:
        compose_study(overrides)
    assert message in str(err.value)


def test_from_dict_rejects_unknown_nested_keys():
    with pytest.raises(ConfigError, match="unknown key.*data.rooot"):
        from_dict(TrialConfig, {"data": {"rooot": "/x"}})


def test_apply_method_params_checks_ranges_and_keeps_the_rest():
    m = apply_method_params(MethodConfig(), {"adapter_width": 64, "entropy_weight": 0.5})
    assert (m.adapter_width, m.entropy_weight, m.ce_weight) == (64, 0.5, 0.7)
    with pytest.raises(ConfigError, match="confident_ratio"):
        apply_method_params(MethodConfig(), {"confident_ratio": 0.0})


def test_reference_variant_accepts_only_prompt_lengths_that_square_its_grid():
    reference = compose_study(["method=reference", REFERENCE_PROMPTS]).method
    for ok in (0, 113, 228):  # (56 + k)^2 - 56^2 at 224 px
        validate_method(dataclasses.replace(reference, prompt_length=ok))
    with pytest.raises(ConfigError, match=r"method.prompt_length=8 is invalid: expected one of \[0, 113, 228"):
        validate_method(dataclasses.replace(reference, prompt_length=8))
    # The corrected insertion takes any length.
    validate_method(dataclasses.replace(compose_study([]).method, prompt_length=8))


def test_reference_study_with_the_default_space_is_refused_with_the_bad_choice_named():
    with pytest.raises(ConfigError, match=r"search.space.prompt_length: value 8 is out of range.*"
                       r"e\.g\. search\.space\.prompt_length\.choices=\[0,113\]"):
        compose_study(["method=reference"])
    study = compose_study(["method=reference", REFERENCE_PROMPTS])
    validate_space(study.search.space, study.method)


def test_entropy_weight_takes_either_sign_and_the_default_search_spans_both():
    space = compose_study().search.space["entropy_weight"]
    assert space["low"] < 0 and space["high"] >= 1.5  # diversity, off, and the reference's 1.5
    # The corrected variant's default is no entropy term (docs/demonstration.md §4); the reference
    # variant keeps its +1.5.
    assert compose_study().method.entropy_weight == 0.0 == MethodConfig().entropy_weight
    assert compose_study(["method=reference", REFERENCE_PROMPTS]).method.entropy_weight == 1.5
    assert apply_method_params(MethodConfig(), {"entropy_weight": -1.0}).entropy_weight == -1.0
    with pytest.raises(ConfigError, match="method.entropy_weight=nan is invalid: expected a finite number"):
        apply_method_params(MethodConfig(), {"entropy_weight": float("nan")})


def test_high_bit_depth_is_rescale_in_both_variants_and_checked():
    # Off even for method=reference: clipping is the reference's flaw, reproduced only on request.
    for variant in ("medguna", "reference"):
        assert compose_study([f"method={variant}", REFERENCE_PROMPTS]).method.high_bit_depth == "rescale"
    assert compose_study(["method=reference", REFERENCE_PROMPTS, "method.high_bit_depth=clip"]).method.high_bit_depth == "clip"
    with pytest.raises(ConfigError, match=r"method.high_bit_depth='wrap' is invalid: expected one of \('rescale', 'clip'\)"):
        apply_method_params(MethodConfig(), {"high_bit_depth": "wrap"})
