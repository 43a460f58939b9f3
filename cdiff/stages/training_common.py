"""What the training stages share (not a stage of its own): their output folder, inputs and records.

A training stage opens a :class:`TrainingOutput` before any set-up, trains into its ``.partial``
folder with the shared loop, and finishes it: the loop's checkpoint is dropped (the exported
weights replace the training state) and the manifest names the inputs by path and hash.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from cdiff.data.prepared import PreparedDataset
from cdiff.rundir import StageOutput, read_manifest, require_stage, sha256_file
from cdiff.training.loop import CKPT, METRICS

WEIGHTS = "model.safetensors"


class TrainingOutput(StageOutput):
    """A :class:`~cdiff.rundir.StageOutput` for a training stage: sample grids, no checkpoint left."""

    def sample_path(self, step: int) -> Path:
        """Where the sample grid of ``step`` goes."""
        return self.partial / "samples" / f"step_{step:06d}.png"

    def log_metrics(self, record: dict[str, Any]) -> None:
        """Add one line (validation numbers at a step) to the loop's ``metrics.jsonl``."""
        with open(self.partial / METRICS, "a") as f:
            f.write(json.dumps(record) + "\n")

    def finish(self, stage: str, cfg, inputs: dict[str, Any], outputs: dict[str, Any], **extra: Any) -> None:
        """Drop the loop's checkpoint (the exported weights replace it), then finish the stage."""
        (self.partial / CKPT).unlink(missing_ok=True)
        super().finish(stage, cfg, inputs, outputs, **extra)


def require_vae(run_dir: Path) -> Path:
    """The run's finished VAE folder, or fail naming the command that trains it."""
    vae_dir = run_dir / "vae"
    require_stage(vae_dir, "train-vae", f"cdiff train-vae --run {run_dir}")
    return vae_dir


def preview_ids(data: PreparedDataset, n: int) -> list[str]:
    """The first ``n`` validation ids (training ids when there is no validation split)."""
    return (data.split("val") or data.split("train"))[:n]


def inputs(data_dir: Path, data: PreparedDataset, stages: dict[str, Path] | None = None) -> dict[str, Any]:
    """The manifest's inputs: the prepared dataset, and each finished model stage read (name → its
    folder and the hash of its weights)."""
    out: dict[str, Any] = {"data": {"path": str(data_dir), "outputs": data.manifest["outputs"]}}
    for name, folder in (stages or {}).items():
        out[name] = {"path": str(folder), "sha256": read_manifest(folder)["outputs"][WEIGHTS]["sha256"]}
    return out


def hashed(folder: Path, *names: str) -> dict[str, Any]:
    """The manifest's record of the files ``names`` (default: the weights) written in ``folder``."""
    return {name: {"sha256": sha256_file(folder / name)} for name in names or (WEIGHTS,)}
