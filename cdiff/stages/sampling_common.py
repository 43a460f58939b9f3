"""Sampling helpers shared by the stages that draw pictures (training grids, ``generate``)."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from cdiff.config import Config
from cdiff.data.datasets import to_uint8
from cdiff.data.masks import colorize, resize_label
from cdiff.data.prepared import PreparedDataset
from cdiff.diffusion.sampling import StepInfo, sample
from cdiff.diffusion.schedule import ddim_scheduler, dpm_solver
from cdiff.errors import InputError
from cdiff.imageio import grid, save_png
from cdiff.models.collab import Collaboration, combine, influence_weights, released_reweight
from cdiff.models.unimodal import UnimodalModel

SOLVERS = {"ddim": ddim_scheduler, "dpm": dpm_solver}


def _rows(raw: torch.Tensor | dict[str, torch.Tensor], i: int, j: int, device) -> Any:
    if isinstance(raw, dict):
        return {k: v[i:j].to(device) for k, v in raw.items()}
    return raw[i:j].to(device)


class UnimodalPredictor:
    """eps from one uni-modal model, with classifier-free guidance when ``guidance != 1``."""

    def __init__(self, model: UnimodalModel, guidance: float = 1.0, null: torch.Tensor | None = None):
        self.model, self.guidance, self.null = model, guidance, null
        self.device = next(model.parameters()).device

    def encode(self, raw: torch.Tensor) -> tuple[dict, dict | None]:
        cond = self.model.encode(raw)
        if self.guidance == 1.0:
            return cond, None
        return cond, self.model.encode(self.null.expand_as(raw).to(raw.device))

    def __call__(self, x: torch.Tensor, t: torch.Tensor, enc) -> torch.Tensor:
        cond, uncond = enc
        e = self.model(x, t, cond)
        if uncond is None:
            return e
        u = self.model(x, t, uncond)
        return u + self.guidance * (e - u)  # classifier-free guidance


class CollabPredictor:
    """eps from several experts combined by dynamic diffusers (``collaborative``) or fixed weights.

    Returns ``(eps, {"weights": (M, B, 1, h, w)})``: the weights actually applied, for the
    sampler's callback. ``influence_every = k`` runs the diffusers on every k-th step only and
    reuses their maps in between; ``reweight="released"`` applies the release's schedule.
    """

    def __init__(
        self,
        collab: Collaboration,
        method: str = "collaborative",
        weights: list[float] | None = None,
        reweight: str = "none",
        influence_every: int = 1,
        guidance: float = 1.0,
        nulls: dict[str, torch.Tensor] | None = None,
    ):
        if method not in ("collaborative", "composable"):
            raise InputError(f"unknown method '{method}'")
        if influence_every < 1:
            raise InputError("--influence-every must be at least 1")
        self.collab, self.method, self.reweight = collab, method, reweight
        self.every, self.guidance, self.nulls = influence_every, guidance, nulls or {}
        self.modalities = collab.modalities
        M = len(self.modalities)
        w = torch.tensor(weights if weights is not None else [1.0 / M] * M, dtype=torch.float32)
        if len(w) != M:
            raise InputError(f"--weights needs {M} numbers (one per modality: {', '.join(self.modalities)})")
        self.fixed = w.view(M, 1, 1, 1, 1)
        self.device = next(collab.parameters()).device
        self._calls, self._last = 0, None

    def encode(self, raw: dict[str, torch.Tensor]) -> tuple[dict, dict | None]:
        self._calls, self._last = 0, None  # a new batch: influence maps start afresh
        conds = self.collab.encode(raw)
        if self.guidance == 1.0:
            return conds, None
        nulls = {m: self.nulls[m].expand_as(raw[m]).to(raw[m].device) for m in self.modalities}
        return conds, self.collab.encode(nulls)

    def __call__(self, x: torch.Tensor, t: torch.Tensor, enc) -> tuple[torch.Tensor, dict]:
        conds, unconds = enc
        eps = self.collab.expert_eps(x, t, conds)
        if unconds is not None:
            u = self.collab.expert_eps(x, t, unconds)
            eps = [ui + self.guidance * (ei - ui) for ei, ui in zip(eps, u, strict=True)]
        if self.method == "composable":
            weights = self.fixed.to(x.device).expand(-1, x.shape[0], 1, *x.shape[2:])
        else:
            if self._last is None or self._calls % self.every == 0:
                self._last = influence_weights(self.collab.logits(x, t, conds))
            weights = self._last
            if self.reweight == "released":
                weights = released_reweight(weights, self.modalities, t)
        self._calls += 1
        return combine(eps, weights), {"weights": weights}


class StepRecorder:
    """A sampler callback that keeps every step (on the CPU), per batch: ``steps[first] = [StepInfo, ...]``."""

    def __init__(self):
        self.steps: dict[int, list[StepInfo]] = {}

    def __call__(self, first: int, info: StepInfo) -> None:
        extras = {k: v.cpu() for k, v in info.extras.items()}
        kept = StepInfo(info.index, info.t, info.x_t.cpu(), info.eps.cpu(), info.pred_x0.cpu(), extras)
        self.steps.setdefault(first, []).append(kept)


@torch.no_grad()
def generate_images(
    predictor: UnimodalPredictor | CollabPredictor,
    vae,
    vae_meta: dict,
    cfg: Config,
    raw_cond: torch.Tensor | dict[str, torch.Tensor],
    seeds: list[int],
    steps: int | None = None,
    eta: float | None = None,
    solver: str = "ddim",
    batch_size: int | None = None,
    callback: Callable[[int, StepInfo], None] | None = None,
    progress: Callable[[int, int], None] | None = None,
    x_start: torch.Tensor | None = None,
) -> list[np.ndarray]:
    """One image per (condition, seed) pair; image k depends only on its condition and seed.

    ``raw_cond`` holds one row per image (a dict of rows per modality for collaborations);
    ``callback(first, info)`` sees every step of the batch whose first image is ``first``;
    ``x_start`` (one row per image) replaces the seeded start noise.
    """
    device = predictor.device
    shape = (vae_meta["latent_channels"], vae_meta["latent_size"], vae_meta["latent_size"])
    batch_size = batch_size or cfg.sample.batch_size
    out: list[np.ndarray] = []
    for i in range(0, len(seeds), batch_size):
        j = min(i + batch_size, len(seeds))
        enc = predictor.encode(_rows(raw_cond, i, j, device))
        z = sample(
            lambda x, t, enc=enc: predictor(x, t, enc),
            SOLVERS[solver](cfg.diffusion),
            shape,
            seeds[i:j],
            steps or cfg.sample.steps,
            cfg.sample.eta if eta is None else eta,
            device,
            None if callback is None else (lambda info, i=i: callback(i, info)),
            x_start=None if x_start is None else x_start[i:j],
        )
        x = vae.decode(z / vae_meta["scale_factor"]).sample
        out += [to_uint8(im) for im in x.cpu()]
        if progress is not None:
            progress(j, len(seeds))
    return out


def preview_images(predictor, module, vae, vae_meta: dict, cfg: Config, raw_cond, n: int) -> list[np.ndarray]:
    """A training stage's sample grid: seeds 0..n-1, at most 25 steps, ``module`` sampled in eval mode."""
    module.eval()
    try:
        return generate_images(
            predictor, vae, vae_meta, cfg, raw_cond, list(range(n)), min(cfg.sample.steps, 25)
        )
    finally:
        module.train()


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
