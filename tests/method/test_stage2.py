"""Stage 2: teacher labels, student logits, zero-shot, the step, its optimiser and gradient flow."""

import math

import pytest
import torch
from torch import nn

from medguna.errors import ConfigError, TrialError
from medguna.method.stage1 import make_teacher
from medguna.method.stage2 import (
    Stage2Hyperparameters,
    check_finite,
    make_stage2_optimizer,
    stage2_step,
)
from medguna.method.teacher import student_logits, teacher_labels
from medguna.method.zeroshot import zero_shot_logits
from medguna.models.adapter import Adapter


class PromptedToyEncoder(nn.Module):
    """A frozen token encoder that mean-pools [prompt tokens; image tokens] to (B, D) features."""

    def __init__(self, token_dim=6, embed_dim=8, prompt_length=3):
        super().__init__()
        self.mix = nn.Linear(token_dim, embed_dim)
        self.mix.requires_grad_(False)
        self.prompts = nn.Parameter(torch.empty(1, prompt_length, token_dim).uniform_(-0.1, 0.1))

    def forward(self, tokens, use_prompts=True):
        if use_prompts:
            tokens = torch.cat([self.prompts.expand(tokens.shape[0], -1, -1), tokens], dim=1)
        return self.mix(torch.tanh(tokens)).mean(dim=1)


def test_only_prompts_and_student_adapter_get_gradients_and_change():
    torch.manual_seed(0)
    encoder = PromptedToyEncoder()
    student = Adapter(8, 3)
    teacher = make_teacher(student)
    images = torch.randn(12, 5, 6)
    with torch.no_grad():
        labels = teacher_labels(teacher, encoder(images, use_prompts=False), normalize=True)
    frozen_before = encoder.mix.weight.clone()
    teacher_before = [p.clone() for p in teacher.parameters()]
    prompts_before = encoder.prompts.detach().clone()

    optimizer = make_stage2_optimizer([*encoder.parameters(), *student.parameters()])
    loss, terms = stage2_step(encoder(images), student, labels, Stage2Hyperparameters())
    loss.backward()
    assert encoder.prompts.grad is not None and encoder.prompts.grad.abs().sum() > 0
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in student.parameters())
    assert encoder.mix.weight.grad is None and encoder.mix.bias.grad is None
    assert all(p.grad is None for p in teacher.parameters())
    optimizer.step()

    assert torch.equal(encoder.mix.weight, frozen_before)
    assert all(torch.equal(a, b) for a, b in zip(teacher.parameters(), teacher_before))
    assert not torch.equal(encoder.prompts, prompts_before)
    assert set(terms) == {"loss_ce", "loss_entropy"}


def test_reference_variant_goes_nan_on_a_small_batch_and_check_finite_says_where():
    student = Adapter(4, 2)
    features = torch.randn(5, 4)
    labels = torch.tensor([0, 1, 0, 1, 0])
    loss, _ = stage2_step(features, student, labels, Stage2Hyperparameters.reference())
    assert math.isnan(loss.item())
    with pytest.raises(TrialError, match="loss became nan at epoch 3 step 17"):
        check_finite(loss, "epoch 3 step 17")
    safe_loss, _ = stage2_step(features, student, labels, Stage2Hyperparameters())
    check_finite(safe_loss, "epoch 3 step 17")


def test_teacher_normalises_features_when_asked():
    # Identity weights with a bias: raw [4, 2] -> [4, 2.5] (class 0); unit [.894, .447] ->
    # [.894, .947] (class 1). The flag changes the label, so it really is applied.
    teacher = nn.Linear(2, 2)
    with torch.no_grad():
        teacher.weight.copy_(torch.eye(2))
        teacher.bias.copy_(torch.tensor([0.0, 0.5]))
    features = torch.tensor([[4.0, 2.0]])
    assert teacher_labels(teacher, features, normalize=False).tolist() == [0]
    labels = teacher_labels(teacher, features, normalize=True)
    assert labels.tolist() == [1] and labels.dtype == torch.int64 and not labels.requires_grad


def test_student_logits_raw_for_reference_and_unit_for_medguna():
    adapter = nn.Linear(2, 2, bias=False)
    with torch.no_grad():
        adapter.weight.copy_(torch.eye(2))
    features = torch.tensor([[3.0, 4.0]], requires_grad=True)
    torch.testing.assert_close(
        student_logits(adapter, features, normalize=False), torch.tensor([[3.0, 4.0]])
    )
    unit = student_logits(adapter, features, normalize=True)
    torch.testing.assert_close(unit, torch.tensor([[0.6, 0.8]]))
    unit.sum().backward()
    assert features.grad is not None


def test_zero_shot_logits_are_cosine_similarities():
    features = torch.tensor([[3.0, 4.0], [0.0, 2.0]])
    prototypes = torch.tensor([[1.0, 0.0], [0.0, 5.0]])
    torch.testing.assert_close(
        zero_shot_logits(features, prototypes), torch.tensor([[0.6, 0.8], [0.0, 1.0]])
    )
    with pytest.raises(ConfigError, match="image features are 2-d but class prototypes are 3-d"):
        zero_shot_logits(features, torch.zeros(2, 3))


def test_stage2_optimizers():
    params = [nn.Parameter(torch.zeros(2))]
    sgd = make_stage2_optimizer(params)
    assert isinstance(sgd, torch.optim.SGD)
    assert sgd.param_groups[0]["momentum"] == 0.0
    assert sgd.param_groups[0]["lr"] == 5e-4 and sgd.param_groups[0]["weight_decay"] == 0.01
    assert isinstance(make_stage2_optimizer(params, "adamw", lr=1e-3), torch.optim.AdamW)
    with pytest.raises(ConfigError, match="optimizer must be 'sgd' or 'adamw', got 'adam'"):
        make_stage2_optimizer(params, "adam")
    with pytest.raises(ConfigError, match="lr must be > 0"):
        make_stage2_optimizer(params, lr=0.0)
    with pytest.raises(ConfigError, match="no trainable parameters"):
        make_stage2_optimizer([nn.Parameter(torch.zeros(2), requires_grad=False)])


def test_hyperparameters_defaults_reference_and_validation():
    default = Stage2Hyperparameters()
    assert (default.ce_weight, default.entropy_weight) == (0.7, 1.5)
    assert (default.confident_ratio, default.label_smoothing) == (0.1, 0.1)
    assert default.safe_entropy and default.normalize_student
    reference = Stage2Hyperparameters.reference()
    assert not reference.safe_entropy and not reference.normalize_student
    with pytest.raises(ConfigError, match="confident_ratio must be in"):
        Stage2Hyperparameters(confident_ratio=0.0)
    with pytest.raises(ConfigError, match="label_smoothing must be in"):
        Stage2Hyperparameters(label_smoothing=1.0)
    with pytest.raises(ConfigError, match="entropy_weight must be a finite number"):
        Stage2Hyperparameters(entropy_weight=math.inf)
