"""Stage 1 on toy text embeddings, and the frozen teacher copy."""

import pytest
import torch
import torch.nn.functional as F

from medguna.errors import ConfigError
from medguna.method.stage1 import make_teacher, train_text_adapter
from medguna.models.adapter import Adapter


def separable_embeddings(num_classes=3, per_class=20, dim=32, seed=0):
    """Unit vectors clustered around one random direction per class."""
    generator = torch.Generator().manual_seed(seed)
    centres = F.normalize(torch.randn(num_classes, dim, generator=generator), dim=1)
    labels = torch.arange(num_classes).repeat_interleave(per_class)
    points = centres[labels] + 0.05 * torch.randn(len(labels), dim, generator=generator)
    return F.normalize(points, dim=1), labels


@pytest.mark.parametrize("width", [0, 16])
def test_stage1_fits_separable_embeddings(width):
    torch.manual_seed(0)
    embeddings, labels = separable_embeddings()
    adapter = Adapter(32, 3, width=width)
    losses = train_text_adapter(
        adapter, embeddings, labels, steps=80, lr=1e-2,
        generator=torch.Generator().manual_seed(1),
    )
    assert len(losses) == 80 and all(isinstance(value, float) for value in losses)
    assert losses[-1] < losses[0]
    with torch.no_grad():
        accuracy = (adapter(embeddings).argmax(1) == labels).float().mean().item()
    assert accuracy > 0.95


def test_stage1_is_reproducible_with_a_generator_and_noise_is_fresh_each_step():
    embeddings, labels = separable_embeddings()
    runs = []
    for _ in range(2):
        torch.manual_seed(3)
        adapter = Adapter(32, 3)
        runs.append(
            train_text_adapter(
                adapter, embeddings, labels, steps=5, generator=torch.Generator().manual_seed(9)
            )
        )
    assert runs[0] == runs[1]
    # With lr tiny the weights barely move, so the step-to-step loss changes come from the noise.
    torch.manual_seed(3)
    still = train_text_adapter(Adapter(32, 3), embeddings, labels, steps=3, lr=1e-12,
                               noise_std=0.0)
    torch.manual_seed(3)
    noisy = train_text_adapter(Adapter(32, 3), embeddings, labels, steps=3, lr=1e-12,
                               noise_std=0.5, generator=torch.Generator().manual_seed(2))
    assert still[0] == pytest.approx(still[2], abs=1e-6)
    assert abs(noisy[0] - noisy[2]) > 1e-4


def test_stage1_rejects_bad_inputs():
    embeddings, labels = separable_embeddings()
    adapter = Adapter(32, 3)
    with pytest.raises(ConfigError, match="expects 32-d features but text_embeddings are 16-d"):
        train_text_adapter(adapter, embeddings[:, :16], labels, steps=1)
    with pytest.raises(ConfigError, match=r"labels must have shape \(60,\)"):
        train_text_adapter(adapter, embeddings, labels[:10], steps=1)
    with pytest.raises(ConfigError, match=r"labels must lie in \[0, 3\)"):
        train_text_adapter(adapter, embeddings, labels + 1, steps=1)
    with pytest.raises(ConfigError, match="steps must be a positive integer"):
        train_text_adapter(adapter, embeddings, labels, steps=0)
    with pytest.raises(ConfigError, match="noise_std must be >= 0"):
        train_text_adapter(adapter, embeddings, labels, steps=1, noise_std=-0.1)
    with pytest.raises(ConfigError, match="integer class indices"):
        train_text_adapter(adapter, embeddings, labels.float(), steps=1)


def test_teacher_is_a_frozen_independent_copy():
    student = Adapter(8, 2, width=4)
    teacher = make_teacher(student)
    assert not teacher.training
    assert all(not p.requires_grad for p in teacher.parameters())
    assert all(p.requires_grad for p in student.parameters())
    features = torch.randn(5, 8)
    torch.testing.assert_close(teacher(features), student(features))
    with torch.no_grad():
        for param in student.parameters():
            param.add_(1.0)
    assert not torch.allclose(teacher(features), student(features))
