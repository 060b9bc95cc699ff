"""runtime.compile_student and runtime.profile_steps (issue 18's parts that need no GPU).

The compiled student must give the eager student's features and prompt gradients; a compile that
fails or differs must leave the trial training in eager mode, saying why; a profiled trial writes
its trace and a table of where the steps went.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from medguna.config import DataConfig, MethodConfig, RuntimeConfig, TrialConfig
from medguna.data.synthetic import synthesize
from medguna.errors import ConfigError
from medguna.models import build_encoder
from medguna.trial.compile import StudentForward, compile_backend
from medguna.trial.loop import run_trial
from medguna.trial.reporting import PrintReporter

PROMPTS = 5


@pytest.fixture(scope="module")
def encoder():
    return build_encoder("medclip-vit", None).eval()  # the shipped demonstration encoder


def _batch(encoder, size: int = 2):
    generator = torch.Generator().manual_seed(0)
    pixels = torch.randn(size, 3, 224, 224, generator=generator)
    prompts = (torch.rand(PROMPTS, encoder.prompt_dim, generator=generator) - 0.5) / 6
    return pixels, prompts.requires_grad_(True)


def _features_and_grad(forward, pixels, prompts):
    features = forward(pixels, prompts)
    (grad,) = torch.autograd.grad(features.square().mean(), prompts)
    return features.detach(), grad


def test_compile_choice_means_inductor_on_a_gpu_and_eager_on_cpu_unless_asked():
    assert compile_backend("auto", torch.device("cuda")) == "inductor"
    assert compile_backend("auto", torch.device("cpu")) is None
    assert compile_backend("off", torch.device("cuda")) is None
    assert compile_backend("aot_eager", torch.device("cpu")) == "aot_eager"
    with pytest.raises(ConfigError, match="runtime.compile_student"):
        TrialConfig(runtime=RuntimeConfig(compile_student="yes")).validate()
    with pytest.raises(ConfigError, match="runtime.profile_steps"):
        TrialConfig(runtime=RuntimeConfig(profile_steps=-1)).validate()


@pytest.mark.parametrize("backend", ["aot_eager", pytest.param("inductor", marks=pytest.mark.slow)])
def test_compiled_student_matches_eager_features_and_prompt_gradients(encoder, backend):
    pixels, prompts = _batch(encoder)
    compiled = StudentForward(encoder, "grid", backend)
    got, got_grad = _features_and_grad(compiled, pixels, prompts)
    assert compiled.status == f"compiled:{backend}"
    want, want_grad = _features_and_grad(StudentForward(encoder, "grid", None), pixels, prompts)
    assert got.shape == (2, 512) and got_grad.shape == (PROMPTS, encoder.prompt_dim)
    torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(got_grad, want_grad, rtol=1e-3, atol=1e-6)


def test_a_compile_that_fails_or_differs_falls_back_to_eager_and_says_why(encoder, monkeypatch):
    pixels, prompts = _batch(encoder)
    want, _ = _features_and_grad(StudentForward(encoder, "grid", None), pixels, prompts)

    def broken_compile(fn, **kwargs):
        raise RuntimeError("no C++ compiler found\nlong details")

    monkeypatch.setattr(torch, "compile", broken_compile)
    forward = StudentForward(encoder, "grid", "inductor")
    with pytest.warns(RuntimeWarning, match="eager"):
        got, _ = _features_and_grad(forward, pixels, prompts)
    assert forward.status == "fallback: RuntimeError: no C++ compiler found"
    torch.testing.assert_close(got, want)

    def wrong_compile(fn, **kwargs):
        return lambda pixels, prompts: fn(pixels, prompts) + 1.0

    monkeypatch.setattr(torch, "compile", wrong_compile)
    forward = StudentForward(encoder, "grid", "inductor")
    with pytest.warns(RuntimeWarning):
        got, _ = _features_and_grad(forward, pixels, prompts)
    assert forward.status.startswith("fallback: compiled output differs from eager")
    torch.testing.assert_close(got, want)


@pytest.fixture(scope="module")
def shenzhen_root(tmp_path_factory) -> Path:
    return synthesize("shenzhen", tmp_path_factory.mktemp("data") / "shenzhen", seed=1, scale=0.3)


def _trial(root: Path, cache: Path, **runtime) -> TrialConfig:
    return TrialConfig(
        data=DataConfig(dataset="shenzhen", root=str(root), cache_dir=str(cache)),
        method=MethodConfig(stage1_steps=5, stage2_epochs=2, batch_size=4, prompt_length=PROMPTS,
                            description_source="templates"),
        runtime=RuntimeConfig(cpu=True, eval_batch_size=32, **runtime),
    ).validate()


def test_a_trial_trains_through_the_compiled_student_and_records_it(shenzhen_root, tmp_path):
    reporter = PrintReporter(verbose=False)
    eager = run_trial(_trial(shenzhen_root, tmp_path / "cache"), PrintReporter(verbose=False))
    compiled = run_trial(_trial(shenzhen_root, tmp_path / "cache", compile_student="aot_eager"), reporter)
    assert [row["student_compile"] for row in reporter.rows] == ["compiled:aot_eager"] * 2
    assert eager["student_compile"] == "off"
    # Same seed, same batches, the same function captured: the trial ends where the eager one does.
    assert compiled["val_balanced_accuracy"] == pytest.approx(eager["val_balanced_accuracy"], abs=1e-9)
    assert compiled["loss"] == pytest.approx(eager["loss"], rel=1e-4)


def test_a_profiled_trial_writes_its_trace_and_top_operators(shenzhen_root, tmp_path):
    logs = tmp_path / "logs"
    final = run_trial(_trial(shenzhen_root, tmp_path / "cache", profile_steps=2), PrintReporter(verbose=False),
                      log_dir=logs)
    assert final["epoch"] == 2  # profiling does not stop the trial
    table = (logs / "profile.txt").read_text()
    assert table.startswith("# torch.profiler: 2 recorded stage-2 steps on cpu")
    assert "scaled_dot_product" in table.splitlines()[1]  # which attention ran is named
    assert "Self CPU" in table
    traces = list((logs / "profile").glob("*.pt.trace.json"))
    assert len(traces) == 1 and json.loads(traces[0].read_text())["traceEvents"]


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU")
def test_on_a_gpu_the_inductor_student_matches_eager_in_bf16():
    """What a GPU trial runs: inductor under bf16 autocast, against eager under the same autocast."""
    gpu_encoder = build_encoder("medclip-vit", None).eval().cuda()
    pixels, prompts = _batch(gpu_encoder, size=8)
    pixels, prompts = pixels.cuda(), prompts.detach().cuda().requires_grad_(True)
    with torch.autocast("cuda", dtype=torch.bfloat16):
        compiled = StudentForward(gpu_encoder, "grid", "inductor")
        got, got_grad = _features_and_grad(compiled, pixels, prompts)
        want, want_grad = _features_and_grad(StudentForward(gpu_encoder, "grid", None), pixels, prompts)
    assert compiled.status == "compiled:inductor"
    scale = want.float().abs().max()
    assert float((got.float() - want.float()).abs().max()) <= 3e-2 * scale
    assert float((got_grad - want_grad).abs().max()) <= 3e-2 * want_grad.abs().max()
