"""Description sets (`set:NAME`): resolving per dataset, and `medguna describe --set` against a real
local OpenAI-compatible server (the fake of test_describe_http)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from test_describe_http import (  # the same fake server as the describe tests
    SECRET,
    FakeOpenAIServer,
    answer_text,
    normal_answer,
    run_cli,
    status_answer,
)

from medguna.data.datasets import get_dataset
from medguna.errors import DescriptionError
from medguna.text.sets import describe_command, descriptions_sha256
from medguna.text.sources import load_descriptions


def write_set_file(sets_dir: Path, name: str, dataset: str, payload: dict) -> Path:
    path = sets_dir / name / f"{dataset}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(payload))
    return path


def test_set_source_reads_the_file_of_each_dataset(tmp_path) -> None:
    write_set_file(tmp_path, "mine", "shenzhen", {"NORMAL": ["clear lungs", " clear lungs "],
                                                  "TB": ["upper lobe cavities"]})
    write_set_file(tmp_path, "mine", "guangzhou", {"PNEUMONIA": ["consolidation"],
                                                   "NORMAL": ["clear lungs"]})
    shenzhen = load_descriptions("set:mine", get_dataset("shenzhen"), sets_dir=tmp_path)
    assert shenzhen == {"NORMAL": ["clear lungs"], "TB": ["upper lobe cavities"]}
    guangzhou = load_descriptions("set:mine", get_dataset("guangzhou"), sets_dir=tmp_path)
    assert list(guangzhou) == ["NORMAL", "PNEUMONIA"]  # the dataset's label order
    # The hash is of the sentences, not of the file's bytes or name.
    assert descriptions_sha256(shenzhen) == descriptions_sha256(
        {"NORMAL": ["clear lungs"], "TB": ["upper lobe cavities"]})
    assert descriptions_sha256(shenzhen) != descriptions_sha256(guangzhou)


def test_a_missing_dataset_file_names_the_file_and_the_command(tmp_path) -> None:
    write_set_file(tmp_path, "mine", "shenzhen", {"NORMAL": ["a"], "TB": ["b"]})
    with pytest.raises(DescriptionError) as error:
        load_descriptions("set:mine", get_dataset("montgomery"), sets_dir=tmp_path)
    message = str(error.value)
    assert str(tmp_path / "mine" / "montgomery.json") in message
    assert (f"medguna describe --datasets montgomery --set mine --sets-dir {tmp_path} "
            "--model <MODEL>") in message
    with pytest.raises(DescriptionError, match="not usable as a folder name"):
        load_descriptions("set:../etc", get_dataset("shenzhen"), sets_dir=tmp_path)
    with pytest.raises(DescriptionError, match="needs the folder of description sets"):
        load_descriptions("set:mine", get_dataset("shenzhen"))


@pytest.mark.parametrize("content", ["{cut short", '["a list"]', '{"datasets": ["shenzhen"]}'])
def test_an_unreadable_provenance_names_the_file_and_how_to_make_it_again(tmp_path, content) -> None:
    from medguna.text.sets import read_set_provenance

    folder = tmp_path / "gpt"
    folder.mkdir()
    (folder / "provenance.json").write_text(content)
    with pytest.raises(DescriptionError, match=r"provenance\.json .*rerun `medguna describe --set"):
        read_set_provenance(folder)


def test_describe_command_repeats_the_generator_settings(tmp_path) -> None:
    provenance = {"backend": "openai-completions", "model": "llm 7b", "base_url": "http://h:8000/v1",
                  "sampling": {"temperature": 0.99, "top_p": 1.0, "max_tokens": 256, "seed": None},
                  "samples_per_prompt": 4, "prompt_families": ["appearance", "expert"],
                  "cleaning": {"min_words": 3}}
    assert describe_command("a", ["idrid", "isic2018"], tmp_path, provenance) == (
        f"medguna describe --datasets idrid,isic2018 --set a --sets-dir {tmp_path} --backend openai "
        "--api completions --base-url http://h:8000/v1 --model 'llm 7b' --temperature 0.99 "
        "--top-p 1.0 --max-tokens 256 --samples 4 --families appearance,expert --min-words 3")
    assert describe_command("a", ["idrid"], tmp_path, {**provenance, "backend": "hf"}).startswith(
        f"medguna describe --datasets idrid --set a --sets-dir {tmp_path} --backend hf --model")

@pytest.fixture
def llm_server() -> Iterator[FakeOpenAIServer]:
    fake = FakeOpenAIServer()
    yield fake
    fake.close()


def set_argv(server, tmp_path: Path, *extra: str) -> list[str]:
    return ["describe", "--set", "llm-a", "--datasets", "shenzhen,guangzhou",
            "--sets-dir", str(tmp_path / "sets"), "--model", "test-llm",
            "--base-url", server.base_url, "--cache-dir", str(tmp_path / "cache"),
            "--samples", "2", "--families", "appearance,expert", "--no-progress", *extra]


def test_describe_set_writes_every_dataset_then_resumes_and_keeps_its_settings(
    llm_server, tmp_path, monkeypatch, capsys
) -> None:
    server = llm_server
    monkeypatch.setenv("OPENAI_API_KEY", SECRET)
    # Shenzhen's 4 prompts and guangzhou's first are answered, then the quota runs out: shenzhen's
    # file is written and recorded before guangzhou fails.
    server.script.extend([normal_answer] * 5 + [status_answer(400, body="quota exhausted")])
    assert run_cli(set_argv(server, tmp_path)) == 1
    assert "quota exhausted" in capsys.readouterr().err
    folder = tmp_path / "sets" / "llm-a"
    provenance = json.loads((folder / "provenance.json").read_text())
    assert list(provenance["datasets"]) == ["shenzhen"]
    assert not (folder / "guangzhou.json").exists()
    assert len(server.requests) == 6

    # Resume: shenzhen is kept; of guangzhou's 4 prompts, the 2 NORMAL ones are shenzhen's very
    # prompts (cached) and PNEUMONIA's first was answered: only PNEUMONIA's second is sent.
    assert run_cli(set_argv(server, tmp_path)) == 0
    out = capsys.readouterr().out
    assert "shenzhen: kept" in out and "guangzhou: generated" in out
    assert len(server.requests) == 6 + 1
    provenance = json.loads((folder / "provenance.json").read_text())
    assert provenance["set"] == "llm-a" and provenance["model"] == "test-llm"
    assert provenance["backend"] == "openai-chat" and provenance["base_url"] == server.base_url
    assert provenance["prompt_families"] == ["appearance", "expert"]
    assert provenance["samples_per_prompt"] == 2 and "created_utc" in provenance
    for dataset, classes in (("shenzhen", ["NORMAL", "TB"]), ("guangzhou", ["NORMAL", "PNEUMONIA"])):
        loaded = load_descriptions("set:llm-a", get_dataset(dataset), sets_dir=tmp_path / "sets")
        assert list(loaded) == classes
        # 2 prompts x 2 samples per class, 2 distinct sentences per answer.
        assert all(len(sentences) == 8 for sentences in loaded.values())
        assert provenance["datasets"][dataset]["descriptions_sha256"] == descriptions_sha256(loaded)
    assert load_descriptions("set:llm-a", get_dataset("shenzhen"), sets_dir=tmp_path / "sets")[
        "NORMAL"][0] == answer_text(1).splitlines()[1].removeprefix("1. ")

    # Another model may not be mixed into the set; a hand-edited file is never overwritten.
    argv = set_argv(server, tmp_path)
    argv[argv.index("--model") + 1] = "other-llm"
    assert run_cli(argv) == 1
    assert "model: set has 'test-llm', asked 'other-llm'" in capsys.readouterr().err
    (folder / "shenzhen.json").write_text(json.dumps({"NORMAL": ["x y z"], "TB": ["u v w"]}))
    assert run_cli(set_argv(server, tmp_path)) == 1
    assert "edited or added by hand" in capsys.readouterr().err
    assert len(server.requests) == 7
    for path in tmp_path.rglob("*"):
        assert not path.is_file() or SECRET.encode() not in path.read_bytes(), path



def test_describe_set_targets_come_from_the_study_or_the_dataset_list(tmp_path, capsys) -> None:
    import argparse

    from medguna.text.describe.commands import set_targets

    def args(**given) -> argparse.Namespace:
        return argparse.Namespace(**{"out": None, "study": None, "datasets": None, "dataset": None,
                                     "sets_dir": None, **given})

    specs, sets_dir = set_targets(args(study="chestxray"))
    assert [s.name for s in specs] == ["shenzhen", "montgomery", "guangzhou"]
    assert sets_dir == Path("medguna_cache") / "descriptions"  # where the study looks by default
    specs, sets_dir = set_targets(args(datasets="idrid, isic2018", sets_dir=str(tmp_path)))
    assert [s.name for s in specs] == ["idrid", "isic2018"] and sets_dir == tmp_path
    assert run_cli(["describe", "--set", "a", "--model", "m", "--no-progress"]) == 1
    assert "--set needs the datasets to describe" in capsys.readouterr().err
    assert run_cli(["describe", "--set", "a", "--datasets", "idrid", "--out", "x.json",
                    "--model", "m"]) == 1
    assert "drop --out" in capsys.readouterr().err
    assert run_cli(["describe", "--model", "m", "--out", "x.json"]) == 1
    assert "name one DATASET and --out FILE, or a description set" in capsys.readouterr().err
    assert run_cli(["describe", "--set", "../up", "--datasets", "idrid", "--model", "m"]) == 1
    assert "not usable as a folder name" in capsys.readouterr().err
    assert not list(tmp_path.iterdir())
