"""Wait for a Ray cluster started by a batch job and print what each node offers.

`python -m medguna.study.cluster_nodes --address HOST:PORT --nodes N` returns once N nodes are in
the cluster, after printing one line per node (its address, CPUs, GPUs), so a job's output shows
what Ray was given; it fails with a message naming what is missing when they do not join in time.
`--nodes 0` waits only until the head answers on its port, before the workers are started.
"""

from __future__ import annotations

import argparse
import socket
import sys
import time


def _port_answers(address: str) -> bool:
    host, port = address.rsplit(":", 1)
    try:
        with socket.create_connection((host, int(port)), timeout=2):
            return True
    except OSError:
        return False


def _alive_nodes() -> list[dict]:
    import ray

    return [node for node in ray.nodes() if node.get("Alive")]


def node_line(node: dict) -> str:
    res = node.get("Resources", {})
    return (f"medguna: Ray node {node.get('NodeManagerAddress', '?')} ({node.get('NodeManagerHostname', '?')}): "
            f"{res.get('CPU', 0):g} CPU(s), {res.get('GPU', 0):g} GPU(s)")


def wait_for_cluster(address: str, nodes: int, timeout: float) -> list[dict]:
    """Block until the head at `address` answers and `nodes` nodes are alive; return those nodes."""
    deadline = time.monotonic() + timeout
    while not _port_answers(address):
        if time.monotonic() > deadline:
            raise TimeoutError(f"Ray's head at {address} did not answer within {timeout:g} s: see the "
                               "head step's lines above (`ray start --head`)")
        time.sleep(1)
    if nodes == 0:
        return []
    import ray

    ray.init(address=address, log_to_driver=False, configure_logging=False)
    try:
        while len(alive := _alive_nodes()) < nodes:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{len(alive)} of {nodes} Ray node(s) joined {address} within "
                                   f"{timeout:g} s: see the worker steps' lines above (`ray start --address`)")
            time.sleep(1)
        return alive
    finally:
        ray.shutdown()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m medguna.study.cluster_nodes", description=__doc__)
    parser.add_argument("--address", required=True, help="the head's HOST:PORT")
    parser.add_argument("--nodes", type=int, required=True, help="nodes to wait for (0: only the head's port)")
    parser.add_argument("--timeout", type=float, default=120, help="seconds before giving up")
    args = parser.parse_args(argv)
    try:
        alive = wait_for_cluster(args.address, args.nodes, args.timeout)
    except TimeoutError as err:
        print(f"medguna: {err}", file=sys.stderr)
        return 2
    for node in sorted(alive, key=lambda n: n.get("NodeManagerAddress", "")):
        print(node_line(node), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
