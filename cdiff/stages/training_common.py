"""What the training stages share (not a stage of its own): their output folder, inputs and records.

A training stage opens a :class:`TrainingOutput` before any set-up, trains into its ``.partial``
folder with the shared loop, and finishes it: the loop's checkpoint is dropped (the exported
weights replace the training state) and the manifest names the inputs by path and hash. Its
output is locked from the first check to the end (one trainer per folder, see :mod:`cdiff.locks`);
``--force`` starts over from an empty ``.partial`` folder.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from cdiff import locks
from cdiff.data.prepared import PreparedDataset
from cdiff.errors import InputError
from cdiff.rundir import StageOutput, output_sha, partial_dir, require_stage, sha256_file
from cdiff.training.loop import CKPT, METRICS

WEIGHTS = "model.safetensors"
START_OVER_WAIT_S = 600.0  # how long the other processes of a job wait for rank 0 to clear the folder


class TrainingOutput(StageOutput):
    """A :class:`~cdiff.rundir.StageOutput` for a training stage: sample grids, no checkpoint left."""

    def __init__(self, out: Path, force: bool, resume: bool = False):
        super().__init__(out, force)
        partial = partial_dir(out)
        if not force and not resume and (partial / CKPT).is_file():  # before any set-up, like the lock
            raise InputError(
                f"{partial} holds an interrupted run; pass --resume to continue it or --force to start over"
            )

    def begin(self, cfg) -> Path:
        """The ``.partial`` folder; with ``--force``, once the main process has emptied it (see
        :func:`~cdiff.rundir.begin_stage`), so no process of a job resumes the old checkpoint."""
        partial = super().begin(cfg)
        if self.force and not locks.main_process():
            deadline = time.monotonic() + START_OVER_WAIT_S
            while (partial / CKPT).exists():
                if time.monotonic() > deadline:
                    raise InputError(
                        f"the main process did not start {partial} over; stop the job and rerun it"
                    )
                time.sleep(0.5)
        return partial

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
        out[name] = {"path": str(folder), "sha256": output_sha(folder, WEIGHTS)}
    return out


def hashed(folder: Path, *names: str) -> dict[str, Any]:
    """The manifest's record of the files ``names`` (default: the weights) written in ``folder``."""
    return {name: {"sha256": sha256_file(folder / name)} for name in names or (WEIGHTS,)}
