"""What an autoscaler config says the cluster may grow to (medguna.study.autoscaler)."""

from __future__ import annotations

from pathlib import Path

from medguna.study.autoscaler import autoscaler_max_nodes, read_autoscaler_config

TWO_TYPES = (
    "max_workers: 4\nhead_node_type: h\navailable_node_types:\n"
    "  h: {resources: {}, node_config: {}}\n  w: {resources: {}, node_config: {}}\n"
)


def test_autoscaler_limit_is_read_from_the_bootstrap_config(tmp_path: Path) -> None:
    bootstrap = tmp_path / "ray_bootstrap_config.yaml"
    bootstrap.write_text((Path(__file__).resolve().parents[2] / "cluster.yaml").read_text())
    # cluster.yaml: max_workers 10 = 8 single-GPU + 2 four-GPU workers, plus the head.
    assert autoscaler_max_nodes(read_autoscaler_config(bootstrap)) == 11
    bootstrap.write_text(TWO_TYPES.replace("w: {", "w: {max_workers: 3, "))
    assert autoscaler_max_nodes(read_autoscaler_config(bootstrap)) == 4  # 1 head + min(4, 0 + 3)
    bootstrap.write_text(TWO_TYPES)
    assert autoscaler_max_nodes(read_autoscaler_config(bootstrap)) == 5  # a type without a limit is capped globally
    bootstrap.write_text("max_workers: 0\navailable_node_types: {}\n")
    assert autoscaler_max_nodes(read_autoscaler_config(bootstrap)) == 1
    assert autoscaler_max_nodes(read_autoscaler_config(tmp_path / "absent.yaml")) is None
    bootstrap.write_text("[not a mapping")
    assert autoscaler_max_nodes(read_autoscaler_config(bootstrap)) is None
