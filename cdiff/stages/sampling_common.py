"""Sampling helpers shared by the stages that draw pictures (training grids, ``generate``)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from cdiff.config import Config
from cdiff.data.datasets import to_uint8
from cdiff.data.masks import colorize, resize_label
from cdiff.data.prepared import PreparedDataset
from cdiff.diffusion.sampling import sample
from cdiff.diffusion.schedule import ddim_scheduler, dpm_solver
from cdiff.imageio import grid, save_png
from cdiff.models.unimodal import UnimodalModel

SOLVERS = {"ddim": ddim_scheduler, "dpm": dpm_solver}


@torch.no_grad()
def generate_images(
    model: UnimodalModel,
    vae,
    vae_meta: dict,
    cfg: Config,
    raw_cond: torch.Tensor,
    seeds: list[int],
    steps: int | None = None,
    eta: float | None = None,
    guidance: float = 1.0,
    null_cond: torch.Tensor | None = None,
    solver: str = "ddim",
    batch_size: int | None = None,
    callback=None,
) -> list[np.ndarray]:
    """One image per (condition, seed) pair; image k depends only on its condition and seed."""
    device = next(model.parameters()).device
    shape = (vae_meta["latent_channels"], vae_meta["latent_size"], vae_meta["latent_size"])
    batch_size = batch_size or cfg.sample.batch_size
    out: list[np.ndarray] = []
    for i in range(0, len(seeds), batch_size):
        rc = raw_cond[i : i + batch_size].to(device)
        cond = model.encode(rc)
        uncond = model.encode(null_cond.expand_as(rc).to(device)) if guidance != 1.0 else None

        def eps_fn(x, t, cond=cond, uncond=uncond):
            e = model(x, t, cond)
            if uncond is None:
                return e
            u = model(x, t, uncond)
            return u + guidance * (e - u)  # classifier-free guidance

        z = sample(
            eps_fn,
            SOLVERS[solver](cfg.diffusion),
            shape,
            seeds[i : i + batch_size],
            steps or cfg.sample.steps,
            cfg.sample.eta if eta is None else eta,
            device,
            callback,
        )
        x = vae.decode(z / vae_meta["scale_factor"]).sample
        out += [to_uint8(im) for im in x.cpu()]
    return out


def condition_tile(label: np.ndarray, size: int) -> np.ndarray:
    """A picture of a mask condition (palette colours), resized to ``size``."""
    return colorize(resize_label(label, size))


def save_condition_grid(
    path: Path, data: PreparedDataset, ids: list[str], modality: str, images: list[np.ndarray]
) -> None:
    """Rows of (condition, sample) pairs; text conditions go to the PNG metadata by position."""
    size = images[0].shape[0]
    tiles: list[np.ndarray] = []
    records = data.records()
    for sample_id, im in zip(ids, images, strict=True):
        tiles += [
            condition_tile(data.label(sample_id), size) if modality == "mask" else data.image(sample_id),
            im,
        ]
    meta = {
        "layout": "pairs: condition (mask) or the caption's source image (text), sample",
        "captions": [records[i]["caption"] for i in ids],
    }
    save_png(path, grid(tiles, ncol=4), meta)


def last_metric(folder: Path, key: str) -> float:
    """The last logged value of ``key`` in ``metrics.jsonl`` (nan when never logged)."""
    path = folder / "metrics.jsonl"
    value = float("nan")
    if path.is_file():
        for line in path.read_text().splitlines():
            rec = json.loads(line)
            if key in rec:
                value = float(rec[key])
    return value
