"""A reused worker gives a finished trial's memory back before the next trial (checked on CPU with
torch.cuda's allocator calls observed)."""

from __future__ import annotations

import gc
import weakref

import pytest
import torch
from torch import nn

from medguna.config import TrialConfig
from medguna.trial import loop, prepare


@pytest.fixture
def cuda_calls(monkeypatch) -> list[str]:
    calls: list[str] = []
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "empty_cache", lambda: calls.append("empty_cache"))
    return calls


def test_a_trial_returns_its_memory_when_it_ends_or_fails(monkeypatch, cuda_calls, tmp_path):
    held: list[weakref.ref] = []

    def trial_holding_a_cycle(cfg, reporter, **kwargs):
        student = nn.Linear(64, 64)
        student.self_reference = [student]  # a cycle: only the garbage collector frees it
        held.append(weakref.ref(student))
        if kwargs["params"].get("fail"):
            raise RuntimeError("loss became nan")
        return {"status": "completed"}

    monkeypatch.setattr(loop, "_run", trial_holding_a_cycle)
    gc.disable()  # the collection must come from the trial's end, not from chance
    try:
        cfg = TrialConfig()
        cfg.data.cache_dir = str(tmp_path)
        assert loop.run_trial(cfg, reporter=None)["status"] == "completed"
        assert held[0]() is None and cuda_calls == ["empty_cache"]
        with pytest.raises(RuntimeError, match="nan"):
            loop.run_trial(cfg, reporter=None, params={"fail": True})
        assert cuda_calls == ["empty_cache", "empty_cache"]
    finally:
        gc.enable()


def test_a_reused_worker_keeps_one_encoder(monkeypatch, cuda_calls):
    from medguna.models import registry

    monkeypatch.setattr(registry, "build_encoder", lambda *args, **kwargs: nn.Linear(8, 8))
    monkeypatch.setattr(prepare, "_ENCODERS", {})
    first, second = TrialConfig(), TrialConfig()
    first.model.checkpoint, second.model.checkpoint = "/models/a", "/models/b"
    encoder = prepare.get_encoder(first)
    assert prepare.get_encoder(first) is encoder  # the next trial of the same encoder reuses it
    old = weakref.ref(encoder)
    del encoder
    prepare.get_encoder(second)
    assert old() is None and len(prepare._ENCODERS) == 1  # the first one's memory is given back
    assert cuda_calls == ["empty_cache", "empty_cache"]  # before each load
