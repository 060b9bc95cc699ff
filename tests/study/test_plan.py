"""What a study checks and resolves before any Ray work: data roots, checkpoint, tokenizer."""

from __future__ import annotations

import pytest

from medguna.compose import compose_study
from medguna.errors import CheckpointError
from medguna.study.plan import plan_study
from medguna.study.runner import run_study


def test_a_missing_checkpoint_stops_the_study_before_ray(tmp_path, no_ray):
    cfg = compose_study([f"storage.path={tmp_path}", f"model.checkpoint={tmp_path / 'nowhere'}"])
    with pytest.raises(CheckpointError, match=r"checkpoint path .*nowhere does not exist"):
        run_study(cfg, log=lambda line: None)


def test_a_checkpoint_without_a_tokenizer_stops_the_study_before_ray(tmp_path, no_ray):
    (tmp_path / "ckpt").mkdir()
    (tmp_path / "ckpt" / "pytorch_model.bin").write_bytes(b"weights")
    cfg = compose_study([f"storage.path={tmp_path}", f"model.checkpoint={tmp_path / 'ckpt'}"])
    with pytest.raises(CheckpointError, match="no tokenizer given and no vocab.txt beside"):
        run_study(cfg, log=lambda line: None)
    cfg = compose_study([f"storage.path={tmp_path}", f"model.checkpoint={tmp_path / 'ckpt'}",
                         f"model.tokenizer={tmp_path}"])
    with pytest.raises(CheckpointError, match=r"tokenizer folder .* has no vocab.txt"):
        run_study(cfg, log=lambda line: None)


def test_relative_model_paths_reach_trials_as_absolute_paths(tmp_path, monkeypatch):
    # Tune runs each trial inside its own folder, where a relative path would point elsewhere.
    monkeypatch.chdir(tmp_path)
    (tmp_path / "ckpt").mkdir()
    (tmp_path / "ckpt" / "pytorch_model.bin").write_bytes(b"weights")
    (tmp_path / "bert").mkdir()
    (tmp_path / "bert" / "vocab.txt").write_text("[PAD]\n")
    plan = plan_study(compose_study(["model.checkpoint=ckpt", "model.tokenizer=bert"]))
    model = plan.datasets[0].trial.model
    assert (model.checkpoint, model.tokenizer) == (str(tmp_path / "ckpt"), str(tmp_path / "bert"))


def test_a_stand_in_passed_as_a_data_root_is_planned_as_synthetic(tmp_path):
    from medguna.data.synthetic import synthesize

    root = synthesize("montgomery", tmp_path / "MontgomerySet", seed=1, scale=0.2)
    plan = plan_study(compose_study(["study.datasets=[montgomery]", f"data.roots.montgomery={root}"]))
    assert plan.datasets[0].data_source == "synthetic"
    assert plan.datasets[0].trial.data.root == str(root.resolve())


def test_another_image_draw_reaches_the_trials_and_the_banner(tmp_path):
    from medguna.study.plan import banner

    plan = plan_study(compose_study([f"storage.path={tmp_path}", "study.datasets=[montgomery]",
                                     "data.synthetic_seed=4"]))
    assert plan.datasets[0].trial.data.synthetic_seed == 4
    assert "acquisition shift exposure=0.11, image draw 4" in banner(plan)
    default = plan_study(compose_study([f"storage.path={tmp_path}", "study.datasets=[montgomery]"]))
    assert "image draw" not in banner(default)  # draw 0, the one every study uses, goes unsaid


def test_the_banner_names_a_control_and_says_it_is_not_a_result(tmp_path):
    from medguna.study.plan import banner

    def text(control):
        return banner(plan_study(compose_study([f"storage.path={tmp_path}", "study.datasets=[montgomery]",
                                                f"runtime.control={control}"])))

    assert "  control    NEGATIVE CONTROL runtime.control=shuffled_pseudo_labels: not a result" in \
        text("shuffled_pseudo_labels")
    assert ("  control    ORACLE CONTROL (trains on image labels) runtime.control=oracle_pseudo_labels: "
            "not a result") in text("oracle_pseudo_labels")
    assert "  control " not in text("none")
