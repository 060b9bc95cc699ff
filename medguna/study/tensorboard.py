"""TensorBoard's HParams tab as a study's user should see it.

TensorBoard takes the hyperparameter list from one `Experiment` summary and lists (and ticks) the
entries marked `differs` first, five at most; without such a summary it takes every logged value
alphabetically, so constants (batch_size, ce_weight, ...) fill the table and the searched dimensions
start unticked. The study therefore declares, once per dataset experiment, the searched dimensions
with their domains (marked `differs`), then the constants, and the objective as the first metric.
Trials write only their own session (values and metrics), never an Experiment summary of their own.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from medguna.results import OBJECTIVE_SELECTED
from medguna.trial.reporting import tensorboard_tag

# The result columns the HParams tab shows as metrics (the last value of each one's scalar tag in
# the trial's run); the objective comes first.
HPARAM_METRICS = (OBJECTIVE_SELECTED, "test_balanced_accuracy", "zeroshot_test_balanced_accuracy",
                  "test_accuracy")
# A fixed name, so a resumed experiment overwrites its declaration instead of adding a second one.
CONFIG_EVENTS_FILE = "events.out.tfevents.0.medguna-hparams"


def hparam_infos(space: dict[str, dict[str, Any]], constants: dict[str, Any]) -> list:
    """Searched dimensions first (domain from the search space, `differs`), constants after."""
    from google.protobuf import struct_pb2
    from tensorboard.plugins.hparams import api_pb2

    infos = []
    for name, spec in space.items():
        info = api_pb2.HParamInfo(name=name, differs=True,
                                  description=f"searched: {_describe(spec)}")
        if spec["type"] == "categorical":
            choices = list(spec["choices"])
            info.type = _data_type(choices[0])
            info.domain_discrete.CopyFrom(struct_pb2.ListValue(values=[_value(c) for c in choices]))
        else:
            info.type = api_pb2.DATA_TYPE_FLOAT64
            info.domain_interval.min_value = float(spec["low"])
            info.domain_interval.max_value = float(spec["high"])
        infos.append(info)
    for name, value in sorted(constants.items()):
        if name in space or not isinstance(value, (bool, int, float, str)):
            continue
        infos.append(api_pb2.HParamInfo(name=name, type=_data_type(value), differs=False,
                                        description="constant in this study"))
    return infos


def metric_infos(objective: str) -> list:
    from tensorboard.plugins.hparams import api_pb2

    names = {OBJECTIVE_SELECTED: f"objective ({objective}, selected epoch)"}
    return [api_pb2.MetricInfo(name=api_pb2.MetricName(tag=tensorboard_tag(m)),
                               display_name=names.get(m, m)) for m in HPARAM_METRICS]


def hparams_config_event(space: dict[str, dict[str, Any]], constants: dict[str, Any],
                         objective: str) -> bytes:
    """The experiment's HParams declaration as the content of one TensorBoard event file."""
    from tensorboard.compat.proto.summary_pb2 import Summary, SummaryMetadata
    from tensorboard.plugins.hparams import api_pb2, metadata, plugin_data_pb2
    from torch.utils.tensorboard.writer import FileWriter

    # What the plugin's summary.experiment_pb builds; that module imports TensorFlow, this does not.
    experiment = api_pb2.Experiment(hparam_infos=hparam_infos(space, constants),
                                    metric_infos=metric_infos(objective),
                                    description="medguna study: searched dimensions first")
    content = plugin_data_pb2.HParamsPluginData(experiment=experiment,
                                                version=metadata.PLUGIN_DATA_VERSION)
    summary = Summary(value=[Summary.Value(tag=metadata.EXPERIMENT_TAG, metadata=SummaryMetadata(
        plugin_data=SummaryMetadata.PluginData(plugin_name=metadata.PLUGIN_NAME,
                                               content=content.SerializeToString())))])
    with tempfile.TemporaryDirectory() as tmp:
        writer = FileWriter(tmp)
        writer.add_summary(summary)
        writer.close()
        (written,) = Path(tmp).glob("events.out.tfevents.*")
        return written.read_bytes()


def _describe(spec: dict[str, Any]) -> str:
    if spec["type"] == "categorical":
        return "one of " + ", ".join(str(c) for c in spec["choices"])
    return f"{spec['type']} in [{spec['low']}, {spec['high']}]"


def _data_type(value: Any):
    from tensorboard.plugins.hparams import api_pb2

    if isinstance(value, bool):
        return api_pb2.DATA_TYPE_BOOL
    if isinstance(value, (int, float)):
        return api_pb2.DATA_TYPE_FLOAT64
    return api_pb2.DATA_TYPE_STRING


def _value(value: Any):
    from google.protobuf import struct_pb2

    if isinstance(value, bool):
        return struct_pb2.Value(bool_value=value)
    if isinstance(value, (int, float)):
        return struct_pb2.Value(number_value=float(value))
    return struct_pb2.Value(string_value=str(value))
