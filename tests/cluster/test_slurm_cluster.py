"""cluster/slurm.sbatch as a job on a real Slurm: a one-node slurmctld + slurmd started here.

The test writes its own slurm.conf (free ports, loopback, state in a temporary folder, no munge:
auth/none), starts both daemons as root, submits the script with `--cpus-per-task=2` to run a small
demonstration study, and reads the job's output: the Ray step's CPUs (its affinity, as Slurm bound
it), each Ray node's CPUs as Ray reports them, and the study's report. It ends the daemons it started
(by PID) and the job's processes (identified by a variable only this test's job carries).
Needs Debian's slurm-wlm (22.05): `apt-get install slurm-wlm`; `.ci/run` installs it.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
from process_tools import end_processes_with

from medguna.results import COMPLETED

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "cluster" / "slurm.sbatch"
DAEMONS = {name: shutil.which(name) or f"/usr/sbin/{name}" for name in ("slurmctld", "slurmd")}
CLIENTS = {name: shutil.which(name) for name in ("sbatch", "scontrol", "scancel", "sinfo")}
MISSING = [name for name, path in {**DAEMONS, **CLIENTS}.items() if not path or not os.access(path, os.X_OK)]

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(bool(MISSING), reason=f"Slurm is not installed ({', '.join(MISSING)} missing): "
                                              "apt-get install slurm-wlm"),
    pytest.mark.skipif(os.geteuid() != 0, reason="slurmd starts job steps as their user, so it must run as root"),
]

CPUS = min(2, os.cpu_count() or 1)  # what the job asks for, per task
TINY_STUDY = [
    "study.demo_method.stage1_steps=30", "study.demo_method.stage2_epochs=2", "study.demo_method.batch_size=8",
    "search.space.prompt_length.choices=[0,4]", "runtime.eval_batch_size=32", "study.demo_confirm_top=0",
    "study.datasets=[montgomery]", "study.demo_num_samples=1",
    "resources.gpus_per_trial=0", "resources.cpus_per_trial=1",  # no GPU on this machine
]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _node_line() -> str:
    # slurmd -C: this machine's sockets, cores, threads and memory, as slurmd will find them.
    line = subprocess.run([DAEMONS["slurmd"], "-C"], capture_output=True, text=True, check=True).stdout
    return line.splitlines()[0] + " NodeAddr=127.0.0.1 State=UNKNOWN"


def _slurm_conf(root: Path) -> str:
    node = re.search(r"NodeName=(\S+)", _node_line()).group(1)
    return "\n".join([
        "ClusterName=medgunatest",
        f"SlurmctldHost={node}(127.0.0.1)",
        f"SlurmctldPort={_free_port()}",
        f"SlurmdPort={_free_port()}",
        "AuthType=auth/none", "CredType=cred/none",  # no munge daemon needed for a one-machine cluster
        "SlurmUser=root", "SlurmdUser=root",
        f"StateSaveLocation={root / 'state'}", f"SlurmdSpoolDir={root / 'spool'}",
        f"SlurmctldPidFile={root / 'slurmctld.pid'}", f"SlurmdPidFile={root / 'slurmd.pid'}",
        f"SlurmctldLogFile={root / 'slurmctld.log'}", f"SlurmdLogFile={root / 'slurmd.log'}",
        "ProctrackType=proctrack/linuxproc",
        "TaskPlugin=task/affinity",  # binds each step to its CPUs, as sites that bind cores do
        "SelectType=select/cons_tres", "SelectTypeParameters=CR_Core",
        "MpiDefault=none", "SwitchType=switch/none", "JobCompType=jobcomp/none",
        "AccountingStorageType=accounting_storage/none", "JobAcctGatherType=jobacct_gather/none",
        "ReturnToService=2", "MinJobAge=600",
        _node_line(),
        f"PartitionName=test Nodes={node} Default=YES MaxTime=INFINITE State=UP",
        "",
    ])


def _job_field(env: dict, job: str, field: str) -> str:
    shown = subprocess.run([CLIENTS["scontrol"], "show", "job", job], check=False, env=env, capture_output=True, text=True)
    found = re.search(rf"\b{field}=(\S+)", shown.stdout)
    return found.group(1) if found else ""


@pytest.fixture
def slurm(tmp_path):
    """A running one-node Slurm; yields the environment its clients need (SLURM_CONF)."""
    root = tmp_path / "slurm"
    for folder in ("state", "spool"):
        (root / folder).mkdir(parents=True)
    conf = root / "slurm.conf"
    conf.write_text(_slurm_conf(root))
    env = {**os.environ, "SLURM_CONF": str(conf)}
    daemons = [subprocess.Popen([DAEMONS[name], "-D", "-f", str(conf)], env=env, stdout=subprocess.DEVNULL,
                                stderr=(root / f"{name}.stderr").open("w")) for name in ("slurmctld", "slurmd")]
    try:
        deadline = time.monotonic() + 60
        state = ""
        while time.monotonic() < deadline and state != "idle":
            time.sleep(0.5)
            state = subprocess.run([CLIENTS["sinfo"], "-h", "-o", "%T"], check=False, env=env, capture_output=True,
                                   text=True).stdout.strip()
        logs = "".join(p.read_text()[-2000:] for p in root.glob("*.log"))
        assert state == "idle", f"the test's Slurm did not come up (node state {state!r}):\n{logs}"
        yield env, root
    finally:
        subprocess.run([CLIENTS["scancel"], "--full", "--user", "root"], check=False, env=env, capture_output=True)
        for daemon in reversed(daemons):
            daemon.terminate()
            try:
                daemon.wait(timeout=20)
            except subprocess.TimeoutExpired:
                daemon.kill()
                daemon.wait()


def test_a_slurm_job_gives_each_ray_node_the_cpus_it_asked_for_and_runs_the_study_to_its_report(slurm, tmp_path):
    env, slurm_root = slurm
    ray_tmp = Path(tempfile.mkdtemp(prefix="mgsc", dir="/tmp"))  # short: Ray's socket paths live under it
    out = tmp_path / "job.out"
    job_env = {**env, "MEDGUNA_SLURM_TEST": str(tmp_path), "PYTHONPATH": str(REPO),
               "PATH": f"{Path(sys.executable).parent}:{env['PATH']}", "MEDGUNA_PYTHON": sys.executable,
               "MEDGUNA_RAY_PORT": str(_free_port()), "MEDGUNA_RAY_TMP": str(ray_tmp / "r"),
               "RAY_TMPDIR": str(ray_tmp), "SBATCH_GPUS_PER_NODE": "0",  # this machine has no GPU
               # Steps get exactly the CPUs they ask for, as at sites that bind cores per step: an
               # srun without --cpus-per-task would hold its Ray node to one core here.
               "SLURM_EXACT": "1"}
    for name in ("SLURM_CPUS_PER_TASK", "SRUN_CPUS_PER_TASK", "SLURM_JOB_ID"):
        job_env.pop(name, None)
    storage = tmp_path / "runs"
    submit = [CLIENTS["sbatch"], "--parsable", "--nodes=1", f"--cpus-per-task={CPUS}", "--time=10",
              f"--output={out}", f"--chdir={REPO}", str(SCRIPT),
              "--study", "chestxray", f"storage.path={storage}", f"storage.cache_dir={tmp_path / 'cache'}",
              *TINY_STUDY]
    try:
        job = subprocess.run(submit, env=job_env, capture_output=True, text=True, check=True).stdout.strip()
        state, deadline = "", time.monotonic() + 300
        while time.monotonic() < deadline:
            state = _job_field(env, job, "JobState")
            if state in ("COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "NODE_FAIL", "OUT_OF_MEMORY"):
                break
            time.sleep(2)
        exit_code = _job_field(env, job, "ExitCode")
    finally:
        subprocess.run([CLIENTS["scancel"], "--full", "--user", "root"], check=False, env=env, capture_output=True)
        end_processes_with("MEDGUNA_SLURM_TEST", tmp_path)
        shutil.rmtree(ray_tmp, ignore_errors=True)
    output = out.read_text() if out.exists() else ""
    logs = "".join(p.read_text()[-1500:] for p in slurm_root.glob("*.log"))
    assert (state, exit_code) == ("COMPLETED", "0:0"), f"job {job}: {state} {exit_code}\n{output[-4000:]}\n{logs}"
    assert f"0 GPU(s) and {CPUS} CPU(s) per node" in output
    # The Ray step's affinity, as Slurm's task/affinity bound it: the CPUs the job asked for.
    steps = re.findall(r"medguna: node \S+: (\d+) CPU\(s\) usable by its Ray step", output)
    assert steps == [str(CPUS)], output[-4000:]
    # Each Ray node (one here) offers the CPUs Slurm gave, not a constant.
    nodes = re.findall(r"medguna: Ray node (\S+) \(\S+\): (\S+) CPU\(s\), (\S+) GPU\(s\)", output)
    assert len(nodes) == 1 and nodes[0][1:] == (str(CPUS), "0"), output[-4000:]
    head_ip = nodes[0][0]
    assert not head_ip.startswith("127.") and ":" not in head_ip
    assert f"Ray at {head_ip}:{job_env['MEDGUNA_RAY_PORT']}" in output
    assert "[montgomery] done:" in output
    (result,) = (storage / "chestxray" / "montgomery").glob("t0*/result.json")
    assert json.loads(result.read_text().splitlines()[-1])["status"] == COMPLETED
    report = storage / "chestxray" / "analysis" / "report.html"
    assert report.is_file() and "montgomery" in report.read_text()
    assert f"Report: {report}" in output
