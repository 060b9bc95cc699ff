"""What every result row says about what produced it (docs/DESIGN.md: dataset, data source,
encoder and its checkpoint hash, description source, variant, code version), and a digest that
tells equal trained states apart from unequal ones."""

from __future__ import annotations

import hashlib
import sys
from typing import Any

import torch

from medguna.config import TrialConfig
from medguna.results import VARIANT
from medguna.trial.prepare import SharedWork
from medguna.versions import code_version, library_versions


def provenance(cfg: TrialConfig, shared: SharedWork) -> dict[str, Any]:
    info = shared.encoder.info
    return {
        "dataset": cfg.data.dataset,
        "data_source": "synthetic" if shared.manifest.is_synthetic else "real",
        # Which acquisition shift the stand-in was drawn under ("none" = the pretraining domain).
        "synthetic_shift": (shared.manifest.synthetic_info or {}).get("shift", "none")
        if shared.manifest.is_synthetic else "",
        # Which draw of the stand-in's images (data.synthetic_seed); "" for real data.
        "synthetic_seed": str((shared.manifest.synthetic_info or {}).get("seed", ""))
        if shared.manifest.is_synthetic else "",
        "encoder": info.get("encoder", cfg.model.encoder),
        "checkpoint": str(info.get("checkpoint", cfg.model.checkpoint)),
        "checkpoint_sha256": str(info.get("checkpoint_sha256", ""))[:12],
        VARIANT: cfg.method.variant,
        "control": cfg.runtime.control,  # "none", or a control (negative or oracle) that is not a result
        # Traces a row to its sentences: a description set's provenance records the same hash.
        "descriptions_sha256": shared.descriptions_sha256[:16],
        "protocol": cfg.runtime.protocol,
        "code_version": code_version(),
        **library_versions(),
        "node_id": ray_node_id(),
    }


def ray_node_id() -> str:
    """The Ray node running this trial, "" outside Ray: says which machine of a cluster ran it.

    Read from Ray only when the process already runs inside Ray, so a plain `medguna trial`
    neither imports nor starts it.
    """
    ray = sys.modules.get("ray")
    if ray is None or not ray.is_initialized():
        return ""
    return ray.get_runtime_context().get_node_id()


def state_digest(state: dict[str, torch.Tensor]) -> str:
    """SHA-256 of a state dict's names, dtypes, shapes and bytes: equal only for equal states."""
    digest = hashlib.sha256()
    for name in sorted(state):
        tensor = state[name].detach().cpu().contiguous()
        digest.update(f"{name}|{tensor.dtype}|{tuple(tensor.shape)}|".encode())
        digest.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()
