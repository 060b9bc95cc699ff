"""A study searching over a description set and a built-in source, across three chest datasets."""

from __future__ import annotations

import json
import shlex
import sys
from pathlib import Path

import polars as pl
import pytest
from conftest import tiny_overrides

from medguna.compose import compose_study
from medguna.errors import ConfigError, DescriptionError
from medguna.study.description_sets import install_sets, sets_for_trials
from medguna.study.plan import plan_study
from medguna.study.runner import run_study

# The fake OpenAI-compatible server of the describe tests, not a copy of it.
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "text"))
from test_describe_http import FakeOpenAIServer, run_cli

CHEST = ["shenzhen", "montgomery", "guangzhou"]


def set_study(tmp: Path, cache: Path, set_name: str, *extra: str):
    searched = [o for o in tiny_overrides(tmp, cache) if not o.startswith("search.space")]
    return compose_study([
        "study=chestxray", "study.demo_num_samples=2", *searched, "~search.space",
        ("+search.space={description_source: {type: categorical, "
         f"choices: [templates, 'set:{set_name}']}}}}"),
        # Small: prompt-free trials on half-size stand-ins, one epoch, a 2-view feature bank.
        "+study.demo_method.prompt_length=0", "study.demo_method.stage2_epochs=1",
        # One trial at a time: each dataset's two trials share one Ray worker (started once).
        "data.synthetic_scale=0.5", "runtime.feature_bank_views=2", "search.scheduler=none",
        "resources.max_concurrent_trials=1",
        "search.sampler_seed=0", *extra,
    ])


def test_a_set_missing_a_dataset_file_is_refused_before_ray(tmp_path, no_ray) -> None:
    sets = tmp_path / "cache" / "descriptions" / "half"
    sets.mkdir(parents=True)
    for dataset, classes in (("shenzhen", ["NORMAL", "TB"]), ("guangzhou", ["NORMAL", "PNEUMONIA"])):
        (sets / f"{dataset}.json").write_text(json.dumps({c: [f"{c} text"] for c in classes}))
    (sets / "provenance.json").write_text(json.dumps({
        "backend": "hf", "model": "/models/local-7b", "samples_per_prompt": 5, "datasets": {}}))
    cfg = set_study(tmp_path, tmp_path / "cache", "half")
    with pytest.raises(ConfigError) as error:
        run_study(cfg, log=lambda line: None)
    message = str(error.value)
    assert f"set 'half' lacks {sets / 'montgomery.json'};" in message
    assert (f"medguna describe --datasets montgomery --set half --sets-dir {sets.parent} "
            "--backend hf --model /models/local-7b --samples 5") in message
    assert "shenzhen.json" not in message and "guangzhou.json" not in message
    # A fixed source is checked the same way as a searched one.
    fixed = compose_study([f"storage.cache_dir={tmp_path / 'cache'}", "study.datasets=[montgomery]",
                           "~search.space.description_source", "method.description_source=set:half"])
    with pytest.raises(ConfigError, match=r"--datasets montgomery --set half .*--backend hf"):
        plan_study(fixed)


def test_trials_bring_the_checked_sentences_to_a_node_without_the_set(tmp_path) -> None:
    # On a cluster storage.cache_dir is node-local: only the driver's node has the set's files.
    driver, node = tmp_path / "driver", tmp_path / "node"
    write = {"NORMAL": ["clear lungs"], "TB": ["upper lobe cavities"]}
    (driver / "descriptions" / "s").mkdir(parents=True)
    (driver / "descriptions" / "s" / "shenzhen.json").write_text(json.dumps(write))
    shipped = sets_for_trials({"s": {}}, driver, "shenzhen")
    assert shipped == {"s": write}
    install_sets(shipped, node, "shenzhen")
    target = node / "descriptions" / "s" / "shenzhen.json"
    assert json.loads(target.read_text()) == write
    before = target.stat().st_mtime_ns
    install_sets(shipped, node, "shenzhen")  # the same sentences: left alone
    assert target.stat().st_mtime_ns == before
    target.write_text(json.dumps({"NORMAL": ["edited"], "TB": ["upper lobe cavities"]}))
    with pytest.raises(DescriptionError, match="holds other sentences .* than the study checked"):
        install_sets(shipped, node, "shenzhen")
    install_sets(None, node, "montgomery")  # a study without sets installs nothing


@pytest.mark.slow
def test_a_study_searches_a_generated_set_on_all_three_chest_datasets(
    tmp_path, shared_cache, local_ray, monkeypatch
) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)  # a local server needs no key
    server = FakeOpenAIServer()
    try:
        assert run_cli(["describe", "--study", "chestxray", "--set", "fake-llm",
                        "--sets-dir", str(shared_cache / "descriptions"), "--model", "fake-llm",
                        "--base-url", server.base_url, "--cache-dir", str(tmp_path / "llm-cache"),
                        "--samples", "2", "--families", "appearance", "--no-progress"]) == 0
        folder = shared_cache / "descriptions" / "fake-llm"
        assert all((folder / f"{name}.json").is_file() for name in [*CHEST, "provenance"])

        # A lost file is refused before Ray; the command the refusal names writes it again.
        (folder / "montgomery.json").unlink()
        with pytest.raises(ConfigError) as error:
            plan_study(set_study(tmp_path, shared_cache, "fake-llm"))
        command = str(error.value).split("make them with: ", 1)[1]
        argv = shlex.split(command)
        assert argv[:5] == ["medguna", "describe", "--datasets", "montgomery", "--set"]
        requests = len(server.requests)
        assert run_cli([*argv[1:], "--cache-dir", str(tmp_path / "llm-cache"), "--no-progress"]) == 0
        assert len(server.requests) == requests  # the same settings: every answer was cached
    finally:
        server.close()

    lines: list[str] = []
    plan = run_study(set_study(tmp_path, shared_cache, "fake-llm"), log=lines.append)
    study_dir = Path(plan.study_dir)
    info = json.loads((study_dir / "study.json").read_text())
    record = info["description_sets"]["fake-llm"]
    assert record["model"] == "fake-llm" and record["backend"] == "openai-chat"
    assert record["prompt_families"] == ["appearance"] and record["created_utc"]
    assert all(record["datasets"][d]["matches_provenance"] for d in CHEST)
    assert any("set:fake-llm" in line and "fake-llm (openai-chat)" in line for line in lines)

    used: dict[str, dict[str, set[str]]] = {}
    for trial in sorted(study_dir.glob("*/t0*")):
        final = pl.read_ndjson(trial / "result.json").row(-1, named=True)
        assert final["status"] == "completed", trial
        source = json.loads((trial / "params.json").read_text())["description_source"]
        used.setdefault(final["dataset"], {}).setdefault(source, set()).add(
            final["descriptions_sha256"])
    assert sorted(used) == sorted(CHEST)
    for dataset in CHEST:
        # Every dataset ran both sources; its set trials read exactly the set's file of that dataset.
        assert set(used[dataset]) == {"templates", "set:fake-llm"}
        assert used[dataset]["set:fake-llm"] == {
            record["datasets"][dataset]["descriptions_sha256"][:16]}
        assert used[dataset]["templates"] != used[dataset]["set:fake-llm"]

    from medguna.analysis.report import write_report

    index = write_report([study_dir], tmp_path / "report", progress=False).read_text()
    assert "## Description sets" in index
    assert "| chestxray | set:fake-llm | openai-chat | fake-llm | appearance |" in index
    for dataset in CHEST:  # leaderboards name the set by its name
        assert "set:fake-llm" in (tmp_path / "report" / f"leaderboard_{dataset}.csv").read_text()
