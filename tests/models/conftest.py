"""Shared test-size MedCLIP: built once per session, in a pytest temp folder."""

from __future__ import annotations

from pathlib import Path

import pytest

from medguna.models import build_encoder, ensure_test_size_checkpoint
from medguna.models.encoder import Encoder

VOCAB_TEXTS = [
    "a photo of a normal chest x_ray",
    "a photo of a pneumonia chest x_ray",
    "Tuberculosis shows cavitary lesions in the upper lobes with fibrosis",
    "clear lung fields, no effusion, sharp costophrenic angles",
    "diabetic retinopathy with microaneurysms and hard exudates",
]


@pytest.fixture(scope="session")
def vocab_texts() -> list[str]:
    return list(VOCAB_TEXTS)


@pytest.fixture(scope="session")
def test_size_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return ensure_test_size_checkpoint(tmp_path_factory.mktemp("medclip-cache"), VOCAB_TEXTS)


@pytest.fixture(scope="session")
def encoder(test_size_dir: Path) -> Encoder:
    model = build_encoder("medclip-vit", str(test_size_dir))
    return model.eval()
