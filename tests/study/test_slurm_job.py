"""cluster/slurm.sbatch run for real as a one-node SLURM job would run it: the SLURM variables set,
`srun`/`scontrol` replaced by stand-ins that run the step here. Ray starts under the script, the
study joins it and finishes, and the script stops the Ray it started (checked: nothing it started is
left; the test ends only those processes, identified by their own Ray temporary folder)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from conftest import tiny_overrides
from fake_autoscaler import end_processes, free_port, processes_started_with

pytestmark = pytest.mark.slow

SCRIPT = Path(__file__).resolve().parents[2] / "cluster" / "slurm.sbatch"
FAKE_SRUN = """#!/bin/bash
# srun stand-in: drop srun's options and run the step on this machine.
while [ $# -gt 0 ]; do case "$1" in -w) shift 2;; -*) shift;; *) break;; esac; done
exec "$@"
"""


def test_a_one_node_job_starts_ray_runs_the_study_and_stops_ray(tmp_path, shared_cache):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "srun").write_text(FAKE_SRUN)
    (bin_dir / "scontrol").write_text("#!/bin/sh\necho localhost\n")
    for tool in bin_dir.iterdir():
        tool.chmod(0o755)
    ray_tmp = Path(tempfile.mkdtemp(prefix="mgsl", dir="/tmp"))  # short: Ray's socket paths live under it
    env = {**os.environ, "PATH": f"{bin_dir}:{Path(sys.executable).parent}:{os.environ['PATH']}",
           "SLURM_JOB_ID": "7", "SLURM_JOB_NODELIST": "localhost", "SLURM_CPUS_PER_TASK": "2",
           "SLURM_GPUS_ON_NODE": "0", "RAY_TMPDIR": str(ray_tmp), "MEDGUNA_RAY_TMP": str(ray_tmp / "r"),
           "MEDGUNA_RAY_PORT": str(free_port()), "MEDGUNA_RAY_HEAD_WAIT": "120", "MEDGUNA_PYTHON": sys.executable}
    args = ["--study", "chestxray", "--no-report", *tiny_overrides(tmp_path, shared_cache),
            "study.datasets=[montgomery]", "study.demo_num_samples=1",
            "resources.gpus_per_trial=0", "resources.cpus_per_trial=1"]  # this machine has no GPU
    try:
        done = subprocess.run(["bash", str(SCRIPT), *args], cwd=SCRIPT.parents[1], env=env, capture_output=True,
                              text=True, timeout=300, check=False)
        left = processes_started_with(ray_tmp)
    finally:
        end_processes(ray_tmp)
        shutil.rmtree(ray_tmp, ignore_errors=True)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "medguna: job 7 on 1 node(s)" in done.stdout and "[montgomery] done:" in done.stdout
    (result,) = (tmp_path / "runs" / "chestxray" / "montgomery").glob("t0*/result.json")
    assert json.loads(result.read_text().splitlines()[-1])["status"] == "completed"
    assert not left, "the script left its Ray running"
