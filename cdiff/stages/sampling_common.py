"""Sampling helpers shared by the stages that draw pictures (training grids, ``generate``)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from cdiff import modalities, processes
from cdiff.config import Config
from cdiff.data.datasets import to_uint8
from cdiff.data.prepared import PreparedDataset
from cdiff.diffusion.predictors import Predictor
from cdiff.diffusion.sampling import StepInfo, sample
from cdiff.diffusion.schedule import ddim_scheduler, dpm_solver
from cdiff.errors import InputError
from cdiff.imageio import grid, save_png
from cdiff.training.loop import METRICS, read_metrics

SOLVERS = {"ddim": ddim_scheduler, "dpm": dpm_solver}


def _rows(raw: dict[str, torch.Tensor] | torch.Tensor, i: int, j: int, device) -> Any:
    if isinstance(raw, dict):
        return {k: v[i:j].to(device) for k, v in raw.items()}
    return raw[i:j].to(device)


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
    predictor: Predictor,
    vae,
    vae_meta: dict,
    cfg: Config,
    raw_cond: dict[str, torch.Tensor] | torch.Tensor,
    seeds: list[int],
    callback: Callable[[int, StepInfo], None] | None = None,
    progress: Callable[[int, int], None] | None = None,
    x_start: torch.Tensor | None = None,
    steps: int | None = None,
    done: dict[int, np.ndarray] | None = None,
    on_batch: Callable[[int, list[np.ndarray]], None] | None = None,
    procs: processes.Processes | None = None,
) -> list[np.ndarray]:
    """One image per (condition, seed) pair with the settings of ``cfg.sample``; image k depends
    only on its condition and seed, whatever the batch size or the number of processes.

    ``raw_cond`` holds one row per image (a dict of rows per modality); ``callback(first, info)``
    sees every step of the batch whose first image is ``first`` (in the process sampling it);
    ``progress(done, total)`` counts this process's steps; ``x_start`` (one row per image) replaces
    the seeded start noise; ``steps`` overrides ``cfg.sample.steps`` (training previews).

    ``done``: images already made (by index; the main process's are used): batches holding only
    those are skipped. ``on_batch(first, images)``: on the main process, each batch as it is made.
    ``procs`` (default: this process alone): the processes of a job (:mod:`cdiff.processes`) that
    all call this with the same arguments; the batches are dealt out in rounds between them, and
    every process returns every image.
    """
    procs = procs or processes.Processes()
    images = dict(done or {})
    mine = list(procs.rounds(_todo(procs, images, len(seeds), cfg.sample.batch_size)))
    steps = cfg.sample.steps if steps is None else steps
    total = sum(b is not None for b in mine) * steps
    for n, batch in enumerate(mine):
        tick = None if progress is None else (lambda info, n=n: progress(n * steps + info.index + 1, total))
        made = None
        if batch is not None:
            i, j = batch
            watch = None if callback is None else (lambda info, i=i: callback(i, info))
            rows = _rows(raw_cond, i, j, predictor.device)
            start = None if x_start is None else x_start[i:j]
            made = (
                i,
                _batch(predictor, vae, vae_meta, cfg, rows, seeds[i:j], steps, _both(watch, tick), start),
            )
        for got in procs.gather(made):
            if got is not None:
                images.update(zip(range(got[0], got[0] + len(got[1])), got[1], strict=True))
                if on_batch is not None and procs.main:
                    on_batch(*got)
    return [images[k] for k in range(len(seeds))]


def _todo(procs: processes.Processes, done: dict[int, np.ndarray], n: int, bs: int) -> list[tuple[int, int]]:
    """The batches ``(first, end)`` of ``n`` images (``bs`` each) that hold an image not in ``done``
    (the main process's: every process deals out the same ones)."""
    known = set(procs.broadcast(sorted(done)))
    batches = [(i, min(i + bs, n)) for i in range(0, n, bs)]
    return [b for b in batches if not known.issuperset(range(*b))]


def _batch(predictor, vae, vae_meta, cfg, enc_raw, seeds, steps, callback, x_start) -> list[np.ndarray]:
    """One batch: sample the latents from the seeds, decode them, refuse non-finite images."""
    s = cfg.sample
    shape = (vae_meta["latent_channels"], vae_meta["latent_size"], vae_meta["latent_size"])
    enc = predictor.encode(enc_raw)
    z = sample(
        lambda x, t, enc=enc: predictor(x, t, enc),
        SOLVERS[s.solver](cfg.diffusion),
        shape,
        seeds,
        steps,
        s.eta,
        predictor.device,
        callback,
        x_start=x_start,
    )
    x = vae.decode(z.float() / vae_meta["scale_factor"]).sample
    check_finite(x, seeds)
    return [to_uint8(im) for im in x.cpu()]


def check_finite(x: torch.Tensor, seeds: list[int]) -> None:
    """Refuse decoded images ``x`` (one per seed) holding NaN or inf: they would be saved as noise."""
    bad = ~torch.isfinite(x.flatten(1)).all(1)
    if bad.any():
        kind = "nan" if torch.isnan(x).any() else "inf"
        which = [s for s, b in zip(seeds, bad.tolist(), strict=True) if b]
        raise InputError(
            f"sampling produced non-finite values ({kind}) for {len(which)} image(s) "
            f"(seed {', '.join(map(str, which[:5]))}{', …' if len(which) > 5 else ''}) — check "
            "--guidance/--eta and the models (a damaged model? run its training again)"
        )


def _both(a, b):
    if a is None or b is None:
        return a or b
    return lambda info: (a(info), b(info))


def preview_images(predictor, module, vae, vae_meta: dict, cfg: Config, raw_cond, n: int) -> list[np.ndarray]:
    """A training stage's sample grid: seeds 0..n-1, at most 25 steps, ``module`` sampled in eval mode."""
    module.eval()
    try:
        return generate_images(
            predictor, vae, vae_meta, cfg, raw_cond, list(range(n)), steps=min(cfg.sample.steps, 25)
        )
    finally:
        module.train()


def save_condition_grid(
    path: Path, data: PreparedDataset, ids: list[str], modality: str, images: list[np.ndarray]
) -> None:
    """Rows of (condition, sample) pairs; captions go to the PNG metadata by position."""
    size = images[0].shape[0]
    tiles: list[np.ndarray] = []
    records = data.records()
    for sample_id, im in zip(ids, images, strict=True):
        tiles += [modalities.get(modality).source_tile(data, sample_id, size), im]
    meta = {
        "layout": "pairs: the condition's picture (or, for conditions without one, its source image), sample",
        "captions": [records[i]["caption"] for i in ids],
    }
    save_png(path, grid(tiles, ncol=4), meta)


def last_metric(folder: Path, key: str) -> float:
    """The last logged value of ``key`` in ``metrics.jsonl`` (nan when never logged)."""
    value = float("nan")
    for rec in read_metrics(folder / METRICS):
        if key in rec:
            value = float(rec[key])
    return value
