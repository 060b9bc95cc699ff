"""A Ray cluster on this machine whose autoscaler adds fake GPU nodes on demand (Ray's
`fake_multinode` provider), started and stopped without touching any other Ray on the machine.

Ray's own AutoscalingCluster runs `ray stop --force`, which kills every Ray process of the user
(STACK_NOTES). Here the head gets its own port and temporary folder, and stopping ends exactly the
processes started with that folder in their environment: the head's, the autoscaler's, the fake
nodes' and their workers.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

from process_tools import end_processes_with, processes_with

FAKE_HEAD_NODE_ID = "f" * 51 + "00000"  # the id the fake provider gives its head


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class FakeAutoscalingCluster:
    def __init__(self, head: dict, worker_types: dict, max_workers: int) -> None:
        # A short folder: Ray's socket paths under it must stay below 108 characters.
        self.temp_dir = Path(tempfile.mkdtemp(prefix="mgfa", dir="/tmp"))
        self.port = free_port()
        from ray._private import services

        self.address = f"{services.get_node_ip_address()}:{self.port}"
        self.config_path = self.temp_dir / "autoscaler.yaml"
        self.config = {
            "cluster_name": "fake_multinode", "max_workers": max_workers,
            "provider": {"type": "fake_multinode", "use_node_id_as_ip": True, "disable_node_updaters": True,
                         "disable_launch_config_check": True, "gcs_address": self.address},
            "available_node_types": {"ray.head.default": {"resources": head, "node_config": {}, "max_workers": 0},
                                     **worker_types},
            "head_node_type": "ray.head.default", "auth": {}, "upscaling_speed": 1.0,
            "idle_timeout_minutes": 5, "docker": {}, "initialization_commands": [], "setup_commands": [],
            "head_setup_commands": [], "worker_setup_commands": [], "head_start_ray_commands": [],
            "worker_start_ray_commands": [], "file_mounts": {}, "cluster_synced_files": [],
            "file_mounts_sync_continuously": False, "rsync_exclude": [], "rsync_filter": [],
        }
        self.config_path.write_text(json.dumps(self.config))
        self.env = {**os.environ, "RAY_FAKE_CLUSTER": "1", "AUTOSCALER_UPDATE_INTERVAL_S": "1",
                    "RAY_AUTH_MODE": "disabled", "RAY_USAGE_STATS_ENABLED": "0",
                    "RAY_TMPDIR": str(self.temp_dir), "RAY_OVERRIDE_NODE_ID_FOR_TESTING": FAKE_HEAD_NODE_ID}

    def start(self) -> None:
        head = self.config["available_node_types"]["ray.head.default"]["resources"]
        ray_cli = str(Path(sys.executable).with_name("ray"))
        subprocess.run([ray_cli, "start", "--head", f"--port={self.port}", f"--temp-dir={self.temp_dir}",
                        f"--ray-client-server-port={free_port()}",
                        f"--autoscaling-config={self.config_path}", f"--num-cpus={head.get('CPU', 0)}",
                        f"--num-gpus={head.get('GPU', 0)}", "--include-dashboard=false",
                        "--disable-usage-stats"], env=self.env, check=True, capture_output=True, timeout=180)

    def own_processes(self) -> list[int]:
        return processes_started_with(self.temp_dir)

    def stop(self) -> None:
        end_processes(self.temp_dir)
        shutil.rmtree(self.temp_dir, ignore_errors=True)


def processes_started_with(temp_dir: Path) -> list[int]:
    """Processes started with RAY_TMPDIR=<temp_dir>: every process of a Ray started that way."""
    return processes_with("RAY_TMPDIR", temp_dir)


def end_processes(temp_dir: Path, grace_s: float = 3.0) -> None:
    """SIGTERM, then SIGKILL, exactly the processes started with RAY_TMPDIR=<temp_dir>."""
    end_processes_with("RAY_TMPDIR", temp_dir, grace_s)
