"""What a study refuses before Ray starts, reproduced as a user meets it: --fresh on a folder that
is not a study, a symlinked or file study name, changed input files on resume, unreadable study
files, a split without a class, GPUs the machine lacks, a searched hyperparameter also fixed, a
description source that does not resolve. Each keeps what is on disk and exits non-zero."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import pytest

from medguna.compose import compose_study
from medguna.data.synthetic import synthesize
from medguna.errors import ConfigError, DataError
from medguna.study import runner
from medguna.study.guards import check_before_ray, check_fixed_not_searched, check_local_gpus
from medguna.study.lock import LOCK_FILE
from medguna.study.readback import completed_samples, read_study_record
from medguna.study.resume import decide

REPO = Path(__file__).resolve().parents[2]
DEMO_WEIGHTS = REPO / "medguna" / "models" / "demo_encoder" / "weights"


def _main(argv):
    sys.path.insert(0, str(REPO / "studies"))
    try:
        from run import main
    finally:
        sys.path.pop(0)
    return main(argv)


def _cli(tmp_path, *extra):
    return ["--study", "chestxray", f"storage.path={tmp_path / 'runs'}", f"storage.cache_dir={tmp_path / 'cache'}",
            "study.datasets=[shenzhen]", "--no-report", *extra]


@pytest.fixture(scope="module")
def shenzhen_root(tmp_path_factory) -> Path:
    return synthesize("shenzhen", tmp_path_factory.mktemp("data") / "shenzhen", scale=0.3, image_size=32)


def _copy_root(shenzhen_root, tmp_path) -> Path:
    root = tmp_path / "shenzhen"
    shutil.copytree(shenzhen_root, root)
    return root


def _planned(tmp_path, *overrides, restart=()):
    cfg = compose_study(["study=chestxray", "study.datasets=[shenzhen]", f"storage.path={tmp_path / 'runs'}",
                         f"storage.cache_dir={tmp_path / 'cache'}", *overrides])
    plan = runner.plan_study(cfg)
    check_before_ray(plan, fresh=False, restart=restart, log=print)
    return plan


# ---- 1. --fresh and --restart act only on a study ----

def test_fresh_refuses_a_folder_that_is_not_a_study_and_deletes_nothing(tmp_path, no_ray, capsys):
    victim = tmp_path / "runs" / "victimdir"
    victim.mkdir(parents=True)
    (victim / "a.txt").write_text("keep")
    rc = _main(_cli(tmp_path, "--fresh", "study.name=victimdir"))
    assert rc == 2
    assert (victim / "a.txt").read_text() == "keep"
    assert not (victim / LOCK_FILE).exists()
    err = capsys.readouterr().err
    assert f"{victim} is not a medguna study (it has no study.json) and holds 1 entry: a.txt" in err


def test_restart_refuses_a_folder_that_is_not_a_study(tmp_path, no_ray, capsys):
    victim = tmp_path / "runs" / "victimdir" / "shenzhen"
    victim.mkdir(parents=True)
    (victim / "b.txt").write_text("keep")
    assert _main(_cli(tmp_path, "--restart", "shenzhen", "study.name=victimdir")) == 2
    assert (victim / "b.txt").read_text() == "keep"
    assert "holds 1 entry: shenzhen/" in capsys.readouterr().err


def test_a_symlinked_study_folder_is_refused_before_any_lock_is_written(tmp_path, no_ray, capsys):
    target = tmp_path / "elsewhere"
    target.mkdir()
    (target / "notes.txt").write_text("keep")
    (tmp_path / "runs").mkdir()
    (tmp_path / "runs" / "linked").symlink_to(target)
    for extra in (["--fresh"], []):
        assert _main(_cli(tmp_path, *extra, "study.name=linked")) == 2
        assert sorted(p.name for p in target.iterdir()) == ["notes.txt"]  # no study.lock written there
    err = capsys.readouterr().err
    assert "is a symlink (to" in err and "is not a medguna study" in err


def test_a_study_name_naming_a_file_is_refused(tmp_path, no_ray, capsys):
    (tmp_path / "runs").mkdir()
    (tmp_path / "runs" / "afile").write_text("keep")
    assert _main(_cli(tmp_path, "study.name=afile")) == 2
    assert (tmp_path / "runs" / "afile").read_text() == "keep"
    assert "study.name='afile' names the file" in capsys.readouterr().err


# ---- 2. inputs behind unchanged values ----

def test_resume_refuses_changed_description_file_checkpoint_and_images(tmp_path, shenzhen_root):
    root = _copy_root(shenzhen_root, tmp_path)
    descriptions = tmp_path / "descriptions.json"
    descriptions.write_text(json.dumps({"NORMAL": ["clear lungs"], "TB": ["upper lobe cavities"]}))
    checkpoint = tmp_path / "checkpoint"
    shutil.copytree(DEMO_WEIGHTS, checkpoint)
    overrides = (f"data.roots.shenzhen={root}", f"method.description_source=file:{descriptions}",
                 "~search.space.description_source", f"model.checkpoint={checkpoint}")
    first = _planned(tmp_path, *overrides)
    recorded = first.inputs["shenzhen"]
    assert set(recorded) == {f"descriptions:file:{descriptions}", "checkpoint", "tokenizer", "images"}
    previous = {"dataset_records": {"shenzhen": runner_record(first)}}
    assert decide(_planned(tmp_path, *overrides), previous)[0].action == "resume"  # nothing changed

    descriptions.write_text(json.dumps({"NORMAL": ["clear lungs"], "TB": ["cavities"]}))
    with pytest.raises(ConfigError, match=r"(?s)sentences of description source 'file:.*' changed.*--restart shenzhen"):
        decide(_planned(tmp_path, *overrides), previous)
    descriptions.write_text(json.dumps({"NORMAL": ["clear lungs"], "TB": ["upper lobe cavities"]}))

    weights = checkpoint / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:-1] + b" ")
    with pytest.raises(ConfigError, match=r"the checkpoint's weights \(model.checkpoint\) changed"):
        decide(_planned(tmp_path, *overrides), previous)
    shutil.copy(DEMO_WEIGHTS / "model.safetensors", weights)

    normal, other = sorted((root / "CXR_png").glob("*_0.png"))[:2]
    normal.write_bytes(other.read_bytes())  # another image under the same name: same values, new content
    with pytest.raises(ConfigError, match=r"the images under data.roots.shenzhen .* changed"):
        decide(_planned(tmp_path, *overrides), previous)
    # Touching files without changing their bytes is not a change.
    shutil.copy2(shenzhen_root / "CXR_png" / normal.name, normal)
    normal.touch()
    assert decide(_planned(tmp_path, *overrides), previous)[0].action == "resume"


def runner_record(plan):
    from medguna.study.resume import dataset_record

    return dataset_record(plan, plan.datasets[0])


# ---- 3. unreadable study files ----

def test_a_truncated_study_json_names_the_file_and_the_restart_that_repairs_it(tmp_path, no_ray, capsys):
    study = tmp_path / "runs" / "s"
    study.mkdir(parents=True)
    (study / "study.json").write_text('{"study": "s", "dataset_rec')
    assert _main(_cli(tmp_path, "study.name=s")) == 2
    err = capsys.readouterr().err
    assert f"{study / 'study.json'} is not readable JSON" in err and "--restart shenzhen" in err
    assert "Traceback" not in err


def test_restarting_every_dataset_gets_past_an_unreadable_study_json_keeping_a_copy(tmp_path):
    cfg = compose_study(["study=chestxray", "study.datasets=[shenzhen]", f"storage.path={tmp_path / 'runs'}",
                         f"storage.cache_dir={tmp_path / 'cache'}", "study.name=s"])
    plan = runner.plan_study(cfg)
    path = Path(plan.study_dir) / "study.json"
    path.parent.mkdir(parents=True)
    path.write_bytes(b"\xff\xfe{")
    with pytest.raises(ConfigError, match="is not text"):
        read_study_record(plan, [], runner._read_text)
    assert read_study_record(plan, ["shenzhen"], runner._read_text) is None
    assert (path.parent / "study.json.unreadable").read_bytes() == b"\xff\xfe{"


def test_an_unreadable_completion_marker_is_rebuilt_by_resuming(tmp_path):
    marker = tmp_path / "medguna_complete.json"
    said = []
    marker.write_text('{"counts": {"full": 2}, "num_samples": 2}')
    assert completed_samples(runner._read_text, str(marker), said.append) == 2
    marker.write_text('{"counts": {"fu')
    assert completed_samples(runner._read_text, str(marker), said.append) == 0
    assert said == [(f"the completion marker {marker} is not readable JSON (JSONDecodeError: Unterminated string "
                     f"starting at: line 1 column 13 (char 12)): rebuilding it from the experiment's saved "
                     "state (finished trials are not rerun)")]


def test_study_files_are_written_through_the_atomic_helper(tmp_path, monkeypatch):
    written = []
    monkeypatch.setattr(runner, "write_bytes_atomic", lambda path, data: written.append((path, data)))
    runner._write_text(str(tmp_path / "study.json"), "{}")
    assert written == [(str(tmp_path / "study.json"), b"{}")]


# ---- 4. splits without a class ----

def test_a_one_class_root_is_refused_before_ray(tmp_path, shenzhen_root, no_ray, capsys):
    root = _copy_root(shenzhen_root, tmp_path)
    for image in (root / "CXR_png").glob("*_1.png"):
        image.unlink()
    assert _main(_cli(tmp_path, f"data.roots.shenzhen={root}")) == 2
    assert "class(es) ['TB'] have no images in the official train set" in capsys.readouterr().err


def test_a_split_without_a_class_is_refused_or_warned_when_allowed(tmp_path, shenzhen_root, capsys):
    root = _copy_root(shenzhen_root, tmp_path)
    for image in sorted((root / "CXR_png").glob("*_1.png"))[1:]:
        image.unlink()  # one TB image left: it lands in one split, the others have none
    with pytest.raises(DataError, match=r"val has no TB.*data.allow_missing_classes=true"):
        _planned(tmp_path, f"data.roots.shenzhen={root}")
    _planned(tmp_path, f"data.roots.shenzhen={root}", "data.allow_missing_classes=true")
    assert "WARNING: shenzhen at" in capsys.readouterr().out


def test_medguna_data_warns_about_a_split_without_a_class(tmp_path, shenzhen_root, capsys):
    from medguna.cli import main as medguna

    root = _copy_root(shenzhen_root, tmp_path)
    for image in sorted((root / "CXR_png").glob("*_1.png"))[1:]:
        image.unlink()
    assert medguna(["data", "shenzhen", "--root", str(root), "--split-dir", str(tmp_path / "splits")]) == 0
    err = capsys.readouterr().err
    assert "WARNING: the val split has no TB image" in err and "WARNING: the test split has no TB image" in err


# ---- 5. resources the machine lacks ----

def test_gpus_this_machine_lacks_are_refused_before_ray(tmp_path, no_ray, capsys, monkeypatch):
    import torch

    monkeypatch.setattr(torch.cuda, "device_count", lambda: 0)
    assert _main(_cli(tmp_path, "resources.gpus_per_trial=1")) == 2
    assert "resources.gpus_per_trial=1 but this machine has 0 GPU(s)" in capsys.readouterr().err
    cfg = compose_study(["resources.gpus_per_trial=0.5"])
    check_local_gpus(cfg.resources, device_count=lambda: 1)  # a fraction of the one GPU it has
    with pytest.raises(ConfigError):
        check_local_gpus(compose_study(["resources.gpus_per_trial=2"]).resources, device_count=lambda: 1)


# ---- 7. a searched hyperparameter set as a fixed value ----

def test_a_searched_hyperparameter_set_as_a_method_value_is_refused(tmp_path, no_ray, capsys):
    assert _main(_cli(tmp_path, "method.entropy_weight=-5")) == 2
    err = capsys.readouterr().err
    assert ("method.entropy_weight=-5 is set, but entropy_weight is searched (search.space.entropy_weight)"
            in err and "~search.space.entropy_weight" in err)
    check_fixed_not_searched(["method.ce_weight=0.5", "study.name=x"], {"entropy_weight": {}})  # not searched


# ---- 8. smaller ----

def test_a_description_source_that_cannot_be_read_is_refused_before_ray(tmp_path, no_ray, capsys):
    assert _main(_cli(tmp_path, "method.description_source=file:/nowhere/d.json",
                      "~search.space.description_source")) == 2
    assert "shenzhen: description file '/nowhere/d.json' does not exist" in capsys.readouterr().err


def test_the_tensorboard_command_quotes_a_path_with_spaces(tmp_path):
    cfg = compose_study(["study=chestxray", f"storage.path={tmp_path / 'my runs'}", "study.name=s"])
    banner = runner.banner(runner.plan_study(cfg))
    assert f"tensorboard --logdir '{tmp_path / 'my runs' / 's'}'" in banner


def test_gpus_a_fixed_cluster_lacks_are_refused_and_an_autoscaler_is_waited_for_with_a_limit():
    from types import SimpleNamespace

    from medguna.study.resource_wait import ResourcesNeverCame, WaitForResources, check_cluster_gpus

    resources = compose_study(["resources.gpus_per_trial=1", "resources.address=auto",
                               "resources.resource_wait_s=600"]).resources
    with pytest.raises(ConfigError, match=r"has 0 GPU\(s\) and no autoscaler that could add more"):
        check_cluster_gpus(resources, cluster_gpus=0, autoscaling=False)
    assert check_cluster_gpus(resources, cluster_gpus=2, autoscaling=False) is None
    said = []
    assert check_cluster_gpus(resources, cluster_gpus=0, autoscaling=True, log=said.append) == 600
    assert said == [("the cluster has 0 GPU(s) now and each trial needs 1: the study waits for the autoscaler "
                    "to add GPU nodes, at most 600 s (resources.resource_wait_s)")]

    now = [0.0]
    wait = WaitForResources(600, "1 GPU(s) for one trial", clock=lambda: now[0])
    wait.setup()
    pending = [SimpleNamespace(status="PENDING")] * 2
    now[0] = 600
    wait.on_step_begin(0, pending)  # not past the limit yet
    now[0] = 601
    with pytest.raises(ResourcesNeverCame, match="no trial could start in 600 s: the cluster never provided 1 GPU"):
        wait.on_step_begin(1, pending)
    started = WaitForResources(600, "1 GPU", clock=lambda: now[0])
    started.setup()
    started.on_step_begin(0, [SimpleNamespace(status="RUNNING"), *pending])
    now[0] = 10_000
    started.on_step_begin(1, pending)  # a trial ran once: the cluster can run the study
