"""medguna.study.preflight: the checks a cluster job runs before Ray starts, and their outcome on a
real (synthetic, official-layout) dataset folder and on a wrong path."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from medguna.compose import compose_study
from medguna.study.preflight import check_commands, main, study_overrides

REPO = Path(__file__).resolve().parents[2]


def test_the_study_command_line_becomes_its_composition_overrides():
    args = ["--study", "fundus", "--fresh", "--restart", "idrid", "--confirm-top", "2", "storage.path=/s",
            "data.roots.idrid=/d/IDRiD"]
    assert study_overrides(args) == ["study=fundus", "storage.path=/s", "data.roots.idrid=/d/IDRiD"]
    assert study_overrides(["a=b"]) == ["study=chestxray", "a=b"]


def test_each_dataset_of_the_study_with_a_root_and_the_checkpoint_are_checked():
    cfg = compose_study(study_overrides([
        "--study", "chestxray", "storage.cache_dir=/shared/cache", "data.split_seed=3",
        "data.roots.shenzhen=/shared/data/ChinaSet_AllFiles", "data.roots.guangzhou=/shared/data/chest_xray",
        "model.checkpoint=/shared/models/medclip-vit", "model.tokenizer=/shared/models/bert"]))
    split = ["--split-dir", "/shared/cache/splits", "--split-seed", "3", "--val-fraction", "0.2",
             "--test-fraction", "0.2", "--verify"]
    assert check_commands(cfg) == [
        ["data", "shenzhen", "--root", "/shared/data/ChinaSet_AllFiles", *split],
        ["data", "guangzhou", "--root", "/shared/data/chest_xray", *split],
        ["check-model", "--checkpoint", "/shared/models/medclip-vit", "--encoder", "medclip-vit",
         "--tokenizer", "/shared/models/bert"],
    ]
    # The demonstration (no roots, the shipped encoder) has nothing to check.
    assert check_commands(compose_study(["study=chestxray"])) == []


def test_a_real_layout_passes_and_its_split_is_written_where_the_study_reads_it(tmp_path, capsys):
    root = tmp_path / "MontgomerySet"
    subprocess.run([sys.executable, "-m", "medguna", "synth", "montgomery", "--out", str(root), "--scale", "0.3"],
                   check=True, capture_output=True, cwd=REPO)
    cache = tmp_path / "cache"
    assert main(["--study", "chestxray", "study.datasets=[montgomery]", f"data.roots.montgomery={root}",
                 f"storage.cache_dir={cache}"]) == 0
    out = capsys.readouterr().out
    assert f"medguna pre-flight: medguna data montgomery --root {root}" in out
    assert list((cache / "splits").iterdir())  # the split the study will read


def test_a_wrong_path_fails_naming_it_and_the_study_is_not_run(tmp_path, capfd):
    missing = tmp_path / "nowhere"
    status = main(["--run", "--study", "chestxray", f"data.roots.montgomery={missing}",
                   f"storage.path={tmp_path / 'runs'}", f"storage.cache_dir={tmp_path / 'cache'}"])
    assert status != 0
    err = capfd.readouterr().err
    assert f"dataset root {missing} does not exist" in err and "Ray was not started" in err
    assert not (tmp_path / "runs").exists()  # --run did not go on to the study
    status = main(["--study", "chestxray", f"model.checkpoint={missing}", f"storage.cache_dir={tmp_path / 'c'}"])
    assert status != 0
