"""The HParams declaration a study writes, read back the way TensorBoard's plugin reads it."""

from __future__ import annotations

from pathlib import Path

from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.plugins.hparams import api_pb2, metadata

from medguna.study.tensorboard import CONFIG_EVENTS_FILE, hparams_config_event
from medguna.trial.reporting import TensorBoardLog

SPACE = {
    "adapter_width": {"type": "categorical", "choices": [0, 64, 256]},
    "entropy_weight": {"type": "log", "low": 0.1, "high": 3.0},
    "description_source": {"type": "categorical", "choices": ["reference", "curated"]},
}
CONSTANTS = {"batch_size": 8, "ce_weight": 0.7, "dataset": "montgomery", "adapter_width": 64,
             "variant": "medguna", "schedule": [1, 2]}


def _plugin_contents(folder: Path) -> dict[str, bytes]:
    events = EventAccumulator(str(folder))
    events.Reload()
    return {tag: content for tag, content in events.PluginTagToContent(metadata.PLUGIN_NAME).items()}


def test_declaration_lists_searched_dimensions_first_with_their_domains(tmp_path):
    (tmp_path / CONFIG_EVENTS_FILE).write_bytes(
        hparams_config_event(SPACE, CONSTANTS, "val_balanced_accuracy"))
    experiment = metadata.parse_experiment_plugin_data(
        _plugin_contents(tmp_path)[metadata.EXPERIMENT_TAG])
    infos = list(experiment.hparam_infos)
    # Searched (differs: TensorBoard lists and ticks these first), then the scalar constants
    # alphabetically; a searched name given as a constant too is not repeated; lists are left out.
    assert [(h.name, h.differs) for h in infos] == [
        ("adapter_width", True), ("entropy_weight", True), ("description_source", True),
        ("batch_size", False), ("ce_weight", False), ("dataset", False), ("variant", False)]
    assert [v.number_value for v in infos[0].domain_discrete.values] == [0.0, 64.0, 256.0]
    assert infos[0].type == api_pb2.DATA_TYPE_FLOAT64
    assert (infos[1].domain_interval.min_value, infos[1].domain_interval.max_value) == (0.1, 3.0)
    assert [v.string_value for v in infos[2].domain_discrete.values] == ["reference", "curated"]
    assert infos[2].type == api_pb2.DATA_TYPE_STRING and infos[5].type == api_pb2.DATA_TYPE_STRING
    metrics = [(m.name.tag, m.display_name) for m in experiment.metric_infos]
    # The metrics are the trial's own scalar tags, grouped as TensorBoard shows them.
    assert metrics[0] == ("val/objective_selected", "objective (val_balanced_accuracy, selected epoch)")
    assert [tag for tag, _ in metrics[1:]] == ["test/balanced_accuracy",
                                               "zeroshot/test_balanced_accuracy",
                                               "test/accuracy"]


def test_a_trial_writes_its_session_but_no_declaration(tmp_path):
    log = TensorBoardLog(tmp_path)
    log.hparams({"adapter_width": 64, "description_source": "curated", "schedule": [1]},
                {"objective_selected": 0.625, "test_accuracy": float("nan")})
    log.close()
    contents = _plugin_contents(tmp_path)
    assert metadata.EXPERIMENT_TAG not in contents
    start = metadata.parse_session_start_info_plugin_data(contents[metadata.SESSION_START_INFO_TAG])
    assert start.hparams["adapter_width"].number_value == 64.0
    assert start.hparams["description_source"].string_value == "curated"
    events = EventAccumulator(str(tmp_path))
    events.Reload()
    # The session names the metrics; their values are the run's scalars, so no lone hparam/ points.
    end = metadata.parse_session_end_info_plugin_data(contents[metadata.SESSION_END_INFO_TAG])
    assert end is not None and events.Tags()["scalars"] == []


def test_tags_are_grouped_by_what_they_measure(tmp_path):
    from medguna.trial.reporting import tensorboard_tag

    assert [tensorboard_tag(c) for c in ("loss", "lr", "val_balanced_accuracy", "zeroshot_val_ece",
                                         "zeroshot_test_auroc", "stage1_val_auroc", "test_accuracy",
                                         "objective_best_so_far", "objective_selected")] == [
        "train/loss", "train/lr", "val/balanced_accuracy", "zeroshot/val_ece", "zeroshot/test_auroc",
        "stage1/val_auroc", "test/accuracy", "val/objective_best_so_far", "val/objective_selected"]
    log = TensorBoardLog(tmp_path)
    log.scalars({"epoch": 1, "loss": 0.5, "val_balanced_accuracy": 0.7, "dataset": "x",
                 "val_collapsed": False, "val_ece": float("nan")}, 1)
    log.close()
    events = EventAccumulator(str(tmp_path))
    events.Reload()
    # The step is not a tag; text, booleans and NaN are not scalars.
    assert sorted(events.Tags()["scalars"]) == ["train/loss", "val/balanced_accuracy"]
    assert [(e.step, e.value) for e in events.Scalars("train/loss")] == [(1, 0.5)]
