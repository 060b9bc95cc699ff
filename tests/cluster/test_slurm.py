"""cluster/slurm.sbatch: the commands it runs for a one-node and a two-node job, as SLURM sets them up.

The script runs under bash with stand-ins for `scontrol`, `srun`, `ip`, `getent` and `hostname` on
PATH, in its dry-run mode (commands printed, not run), and the printed study command is composed as
the study would. A job on a real slurmctld/slurmd is tests/cluster/test_slurm_cluster.py; the
script run with `srun` as a stand-in that runs each step here is tests/study/test_slurm_job.py.
"""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from medguna.compose import compose_study

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "cluster" / "slurm.sbatch"

# This host's routes: the cluster network (10.1.2.0/24 on ib0) and a default route on eth0.
IP = """#!/bin/sh
case "$*" in
  *"route get 10.1.2."*) echo "$5 dev ib0 src 10.1.2.3 uid 0";;
  *"route get 1.1.1.1"*) [ -n "$NO_ROUTE" ] && exit 2; echo "1.1.1.1 via 192.168.0.1 dev eth0 src 192.168.0.5 uid 0";;
  *) exit 2;;
esac
"""
GETENT = """#!/bin/sh
case "$2" in gpu002) echo "10.1.2.4        STREAM gpu002";; *) exit 2;; esac
"""
# Debian's /etc/hosts maps the hostname to 127.0.1.1; -I lists IPv6 too.
HOSTNAME = """#!/bin/sh
case "$1" in -I) echo "127.0.1.1 fe80::1 ${HOST_IPS:-10.9.8.7}";; *) echo gpu001;; esac
"""


def _tools(tmp_path: Path, nodes: list[str]) -> Path:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    (bin_dir / "scontrol").write_text("#!/bin/sh\nprintf '%s\\n' " + " ".join(nodes) + "\n")
    (bin_dir / "srun").write_text('#!/bin/sh\necho "srun ran: $*" >> "$SRUN_LOG"\n')
    (bin_dir / "ip").write_text(IP)
    (bin_dir / "getent").write_text(GETENT)
    (bin_dir / "hostname").write_text(HOSTNAME)
    for tool in bin_dir.iterdir():
        tool.chmod(0o755)
    return bin_dir


def _run(tmp_path: Path, nodes: list[str], *args: str, dry: bool = True, **env_extra: str):
    env = {**os.environ, "PATH": f"{_tools(tmp_path, nodes)}:{os.environ['PATH']}",
           "SLURM_JOB_ID": "4242", "SLURM_JOB_NODELIST": "gpu[001-002]", "SLURM_CPUS_PER_TASK": "16",
           "SLURMD_NODENAME": "gpu001", "SLURM_GPUS_ON_NODE": "2", "MEDGUNA_SLURM_DRY_RUN": "1" if dry else "0",
           "SRUN_LOG": str(tmp_path / "srun.log"), **env_extra}
    env.pop("SRUN_CPUS_PER_TASK", None)
    return subprocess.run(["bash", str(SCRIPT), *args], cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=120, check=False)


def _lines(tmp_path: Path, nodes: list[str], *args: str, **env_extra: str) -> list[str]:
    done = _run(tmp_path, nodes, *args, **env_extra)
    assert done.returncode == 0, done.stderr
    return done.stdout.splitlines()


NODE_SAYS = ("bash -c echo \"medguna: node $(hostname -s): $(nproc) CPU(s) usable by its Ray step\"; "
             "exec \"$@\" ray")


@pytest.mark.parametrize("nodes", [["gpu001"], ["gpu001", "gpu002"]])
def test_every_ray_step_gets_the_jobs_cpus_and_gpus_and_the_study_joins_it(tmp_path, nodes):
    lines = _lines(tmp_path, nodes, "--study", "chestxray", "storage.path=/shared/runs")
    # Two nodes: the address on the network that reaches the worker; one node: the default route's.
    head_ip = "10.1.2.3" if len(nodes) == 2 else "192.168.0.5"
    step = "srun --nodes=1 --ntasks=1 --cpus-per-task=16 --gpus-per-task=2"
    head = [line for line in lines if "ray start --head" in line]
    assert head == [(f"{step} -w gpu001 {NODE_SAYS} ray start --head --node-ip-address={head_ip} --port=6379 "
                     "--num-cpus=16 --num-gpus=2 --temp-dir=/tmp/ray_medguna_4242 --include-dashboard=false "
                     "--disable-usage-stats --block")]
    workers = [line for line in lines if "ray start --address" in line]
    assert workers == [f"{step} -w {node} {NODE_SAYS} ray start --address={head_ip}:6379 --num-cpus=16 "
                       "--num-gpus=2 --temp-dir=/tmp/ray_medguna_4242 --disable-usage-stats --block"
                       for node in nodes[1:]]
    waits = [line for line in lines if "medguna.study.cluster_nodes" in line]
    assert waits == [f"python -m medguna.study.cluster_nodes --address {head_ip}:6379 --nodes {n} --timeout 120"
                     for n in (0, len(nodes))]
    # Order: head, wait for its port, workers, wait for all nodes, then the study.
    order = [lines.index(head[0]), lines.index(waits[0]), *(lines.index(w) for w in workers),
             lines.index(waits[1])]
    (study_line,) = [line for line in lines if "studies/run.py" in line]
    assert order == sorted(order) and lines.index(study_line) > order[-1]
    study = shlex.split(study_line)
    assert study[:5] == ["python", "studies/run.py", "--study", "chestxray", "storage.path=/shared/runs"]
    cfg = compose_study(["study=chestxray", *study[4:]])
    r = cfg.resources
    assert (r.address, r.autoscaling_config, r.gpus_per_trial, cfg.storage.path) == \
        (f"{head_ip}:6379", None, 1, "/shared/runs")
    assert f"head gpu001 ({head_ip}:6379), 2 GPU(s) and 16 CPU(s) per node" in lines[0]


def test_a_job_without_gpus_asks_its_steps_for_none(tmp_path):
    lines = _lines(tmp_path, ["gpu001"], "--study", "chestxray", SLURM_GPUS_ON_NODE="0", SLURM_CPUS_PER_TASK="6")
    (head,) = [line for line in lines if "ray start --head" in line]
    assert head.startswith("srun --nodes=1 --ntasks=1 --cpus-per-task=6 -w gpu001 ")
    assert "--num-cpus=6 --num-gpus=0" in head and "gpus-per-task" not in head


def test_the_head_address_is_never_loopback_nor_ipv6(tmp_path):
    # No route answers: the first IPv4 of `hostname -I` that is not 127.x.
    lines = _lines(tmp_path, ["gpu001"], "--study", "chestxray", NO_ROUTE="1")
    assert "--node-ip-address=10.9.8.7 " in next(line for line in lines if "ray start --head" in line)
    # MEDGUNA_HEAD_IP wins over what the script would choose.
    lines = _lines(tmp_path, ["gpu001", "gpu002"], "--study", "chestxray", MEDGUNA_HEAD_IP="172.16.0.9")
    assert "--node-ip-address=172.16.0.9 " in next(line for line in lines if "ray start --head" in line)
    # Only loopback and IPv6: the job stops and says what to set.
    done = _run(tmp_path, ["gpu001"], "--study", "chestxray", NO_ROUTE="1", HOST_IPS="::1")
    assert done.returncode == 2 and "ray start" not in done.stdout
    assert "export MEDGUNA_HEAD_IP=<address the other nodes reach gpu001 at>" in done.stderr


def test_data_and_checkpoint_are_checked_before_ray_starts(tmp_path):
    args = ["--study", "chestxray", "storage.cache_dir=/shared/cache", "data.roots.montgomery=/shared/data/MC",
            "model.checkpoint=/shared/models/medclip-vit"]
    lines = _lines(tmp_path, ["gpu001"], *args)
    # medguna.study.preflight runs `medguna data ... --verify` and `medguna check-model` for them
    # (tests/cluster/test_preflight.py).
    check = f"python -m medguna.study.preflight {' '.join(args)}"
    first_ray = next(i for i, line in enumerate(lines) if "ray start" in line)
    assert check in lines and lines.index(check) < first_ray
    assert check not in _lines(tmp_path, ["gpu001"], *args, MEDGUNA_SKIP_PREFLIGHT="1")


def test_a_wrong_data_path_ends_the_job_in_seconds_before_any_step(tmp_path):
    missing = tmp_path / "no_such_folder"
    done = _run(tmp_path, ["gpu001"], "--study", "chestxray", f"data.roots.montgomery={missing}",
                f"storage.cache_dir={tmp_path / 'cache'}", dry=False, MEDGUNA_PYTHON=sys.executable,
                PYTHONPATH=str(REPO))
    assert done.returncode != 0
    assert f"error: dataset root {missing} does not exist" in done.stderr and "Ray was not started" in done.stderr
    assert not (tmp_path / "srun.log").exists()  # no Ray step was started


def test_the_job_stops_with_a_message_when_the_head_never_answers(capsys):
    import socket

    from medguna.study.cluster_nodes import main, node_line

    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    assert main(["--address", f"127.0.0.1:{port}", "--nodes", "0", "--timeout", "1"]) == 2
    assert f"Ray's head at 127.0.0.1:{port} did not answer within 1 s" in capsys.readouterr().err
    node = {"NodeManagerAddress": "10.1.2.4", "NodeManagerHostname": "gpu002", "Alive": True,
            "Resources": {"CPU": 32.0, "GPU": 4.0, "memory": 1e11}}
    assert node_line(node) == "medguna: Ray node 10.1.2.4 (gpu002): 32 CPU(s), 4 GPU(s)"
