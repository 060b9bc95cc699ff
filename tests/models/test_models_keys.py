"""The released 434-entry key layout and its mapping onto today's transformers modules."""

from __future__ import annotations

import math

import torch

from medguna.models.checkpoint_keys import (
    TEXT_PREFIX,
    VISION_PREFIX,
    map_checkpoint_key,
    released_state_dict_keys,
)
from medguna.models.medclip import build_medclip, parameter_counts
from medguna.models.medclip_config import full_size_config, test_size_config


def _meta_model(config):
    with torch.device("meta"):  # shapes and names without allocating 136M parameters
        return build_medclip(config)


def test_full_size_release_has_434_entries_all_accounted_for():
    config = full_size_config()
    keys = released_state_dict_keys(config)
    assert len(keys) == 434 and len(set(keys)) == 434
    assert TEXT_PREFIX + "embeddings.position_ids" in keys
    assert sum(key.endswith("relative_position_index") for key in keys) == 12  # one per block
    model = _meta_model(config)
    current = model.state_dict()
    mappings = {key: map_checkpoint_key(key, set(current)) for key in keys}
    actions = [mapping.action for mapping in mappings.values()]
    assert actions.count("used") == 421 and actions.count("recomputed") == 13
    used_targets = [m.target for m in mappings.values() if m.action == "used"]
    # a bijection onto today's persistent state dict
    assert sorted(used_targets) == sorted(current)
    for mapping in mappings.values():
        if mapping.action == "recomputed":
            model.get_buffer(mapping.target)  # the buffer exists in today's model


def test_swin_renames_match_hand_written_expectation():
    current = set(_meta_model(full_size_config()).state_dict())
    block = VISION_PREFIX + "encoder.layers.2.blocks.5."
    expected = {
        "attention.self.query.weight": "attention.q_proj.weight",
        "attention.self.key.bias": "attention.k_proj.bias",
        "attention.self.value.weight": "attention.v_proj.weight",
        "attention.output.dense.weight": "attention.o_proj.weight",
        "intermediate.dense.bias": "mlp.fc1.bias",
        "output.dense.weight": "mlp.fc2.weight",
        "attention.self.relative_position_bias_table": (
            "attention.relative_position_bias.relative_position_bias_table"
        ),
        "layernorm_before.weight": "layernorm_before.weight",
    }
    for old, new in expected.items():
        assert map_checkpoint_key(block + old, current).target == block + new
    # the same substrings inside BERT must not be renamed
    bert_key = TEXT_PREFIX + "encoder.layer.3.attention.output.dense.weight"
    assert map_checkpoint_key(bert_key, current).target == bert_key
    assert map_checkpoint_key(
        TEXT_PREFIX + "encoder.layer.3.output.dense.bias", current
    ).action == ("used")


def test_full_size_parameter_counts():
    counts = parameter_counts(_meta_model(full_size_config()))
    projection = 768 * 512
    assert counts["vision"] == 27_519_354 + projection  # swin-tiny without classifier
    assert counts["text"] == 108_310_272 + projection  # BERT-base cased vocab, with pooler
    assert counts["logit_scale"] == 1


def test_test_size_keeps_grid_geometry_and_release_layout():
    full, tiny = full_size_config(), test_size_config()
    for name in ("image_size", "patch_size", "window_size"):
        assert tiny.vision[name] == full.vision[name]
    assert tiny.prompt_dim == 24 and full.prompt_dim == 96
    assert tiny.vision_width == 192 and full.vision_width == 768
    keys = released_state_dict_keys(tiny)
    # Swin 4 + 8 blocks * 18 + 3 merges * 3 + 2, projections 2, logit_scale 1, BERT 6 + 3 * 16 + 2
    assert len(keys) == 4 + 8 * 18 + 9 + 2 + 2 + 1 + 6 + 48 + 2


def test_logit_scale_initialised_to_log_inverse_temperature():
    model = build_medclip(test_size_config(), seed=0)
    assert math.isclose(model.logit_scale.item(), math.log(1 / 0.07), rel_tol=1e-6)
