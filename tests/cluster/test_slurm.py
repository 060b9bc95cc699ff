"""cluster/slurm.sbatch: the commands it runs for a one-node and a two-node job, as SLURM sets them up.

The script runs under bash with stand-ins for `scontrol` and `srun` on PATH, in its dry-run mode
(commands printed, not run), and the printed study command is composed as the study would. A real
one-node run (Ray started under the script) is tests/study/test_slurm_job.py.
"""

from __future__ import annotations

import os
import shlex
import subprocess
from pathlib import Path

import pytest

from medguna.compose import compose_study

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "cluster" / "slurm.sbatch"


def _fake_slurm(tmp_path: Path, nodes: list[str]) -> Path:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "scontrol").write_text("#!/bin/sh\nprintf '%s\\n' " + " ".join(nodes) + "\n")
    # srun -w <node> hostname --ip-address: the head's address; anything else is not expected here.
    (bin_dir / "srun").write_text('#!/bin/sh\ncase "$*" in *hostname*) echo "10.1.2.3 fe80::1";; '
                                  '*) echo "unexpected srun $*" >&2; exit 1;; esac\n')
    for tool in bin_dir.iterdir():
        tool.chmod(0o755)
    return bin_dir


def _run(tmp_path: Path, nodes: list[str], *args: str) -> list[str]:
    env = {**os.environ, "PATH": f"{_fake_slurm(tmp_path, nodes)}:{os.environ['PATH']}",
           "SLURM_JOB_ID": "4242", "SLURM_JOB_NODELIST": "gpu[001-002]", "SLURM_CPUS_PER_TASK": "16",
           "SLURM_GPUS_ON_NODE": "2", "MEDGUNA_SLURM_DRY_RUN": "1"}
    done = subprocess.run(["bash", str(SCRIPT), *args], cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    return done.stdout.splitlines()


@pytest.mark.parametrize("nodes", [["gpu001"], ["gpu001", "gpu002"]])
def test_ray_starts_on_every_node_and_the_study_joins_it(tmp_path, nodes):
    lines = _run(tmp_path, nodes, "--study", "chestxray", "storage.path=/shared/runs")
    head = [line for line in lines if "ray start --head" in line]
    assert head == [("srun --nodes=1 --ntasks=1 -w gpu001 ray start --head --node-ip-address=10.1.2.3 "
                     "--port=6379 --num-cpus=16 --num-gpus=2 --temp-dir=/tmp/ray_medguna_4242 "
                     "--include-dashboard=false --disable-usage-stats --block")]
    workers = [line for line in lines if "ray start --address" in line]
    assert workers == [f"srun --nodes=1 --ntasks=1 -w {node} ray start --address=10.1.2.3:6379 --num-cpus=16 "
                       "--num-gpus=2 --temp-dir=/tmp/ray_medguna_4242 --disable-usage-stats --block"
                       for node in nodes[1:]]
    (study,) = [shlex.split(line) for line in lines if "studies/run.py" in line]
    assert study[:5] == ["python", "studies/run.py", "--study", "chestxray", "storage.path=/shared/runs"]
    cfg = compose_study(["study=chestxray", *study[4:]])
    r = cfg.resources
    assert (r.address, r.autoscaling_config, r.gpus_per_trial, cfg.storage.path) == \
        ("10.1.2.3:6379", None, 1, "/shared/runs")
