"""Stage ``generate``: faces from a mask and a caption together (collaborative), or from one of them.

Methods:
- ``collaborative``: the frozen experts combined per pixel and per step by the dynamic diffusers
  (seed §A.1), optionally with the release's inference-only re-weighting;
- ``composable``: the same experts with fixed weights (``--weights``, default equal): the paper's baseline;
- ``text`` / ``mask``: one uni-modal model.

1. Load the VAE, the experts the method needs and (collaborative) the dynamic diffusers.
2. Read the conditions: ``--text`` / ``--mask`` (paired by position; one of a kind is used with
   every one of the other), a JSONL file of pairs, or else the first validation pairs.
3. Sample one image per (condition, seed) with DDIM (the release's settings by default) or
   DPM-Solver++; conditions are encoded once, each step runs each expert and diffuser once over
   the whole batch, and each image has its own seed.
4. Write one PNG per image (conditions and settings in its metadata), a grid, a manifest and,
   with ``save_intermediates``, each step's influence maps, x_t and predicted x_0 for ``visualize``;
   all into ``<out>.partial/``, moved into place at the end (``--out`` locked from the first check;
   a numbered folder claimed with an atomic ``mkdir``).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from cdiff import config as cfg_mod
from cdiff import locks, modalities, processes
from cdiff.config import Config
from cdiff.diffusion.predictors import CollabPredictor
from cdiff.diffusion.sampling import StepInfo, check_seed
from cdiff.errors import InputError
from cdiff.models.collab import Collaboration, check_released, released_reweight
from cdiff.outputs import next_output_dir, write_to  # noqa: F401  (edit and the studio use them from here)
from cdiff.stages import sampling_common as sc
from cdiff.stages.conditions import SOURCE_KEY, condition_rows, read_pairs_file  # noqa: F401  (used from here)
from cdiff.stages.generate_files import (  # noqa: F401  (the API, compare, edit and evaluate use them from here)
    INTERMEDIATES,
    GenerateResult,
    check_out,
    estimated_bytes,
    file_name,
    save_intermediates,
    write,
    write_files,
)
from cdiff.stages.run import Run

MULTI = ("collaborative", "composable")
ALL = "all"  # every method, side by side
SET_METHOD = (
    "collaborative-"  # collaborative-<set>: the diffuser set of those modalities (collaborative-mask-sketch)
)


def methods() -> list[str]:
    """collaborative, composable, and one uni-modal method per registered modality."""
    return [*MULTI, *modalities.names()]


@dataclass
class GenerateRequest:
    """What to generate; the sampling settings are ``cfg.sample``."""

    method: str = "collaborative"
    conditions: dict[str, list[Any]] = field(default_factory=dict)  # per modality, paired by position
    pairs: list[dict[str, Any]] = field(default_factory=list)  # whole condition sets (JSONL, the API)
    num: int = 4  # images per condition
    seed: int = 0
    save_intermediates: bool = False
    val_conditions: int = 4  # used when no condition is given
    seed_per_row: bool = False  # each condition row its own seeds (seed + row * num + k), not the same ones
    modalities: list[str] | None = (
        None  # which experts (and diffuser set) combine; None: see chosen_modalities
    )


@dataclass
class Generation:
    """Images in memory, with everything :func:`write` needs to save them."""

    method: str
    modalities: list[str]
    images: list[np.ndarray]
    rows: list[dict[str, Any]]  # the condition values as given, one dict per condition set
    raw: dict[str, torch.Tensor]  # raw conditions, one row per condition set
    seeds: list[int]
    num: int
    settings: dict[str, Any]
    notes: list[str]
    cfg: Config
    run_root: Path
    steps: dict[int, list[StepInfo]] | None = None  # per batch, when intermediates were kept
    wall_time_s: float = 0.0


def base_method(method: str) -> str:
    """``collaborative`` for ``collaborative-<set>``, else the method itself."""
    return "collaborative" if method.startswith(SET_METHOD) else method


def chosen_modalities(req: GenerateRequest) -> list[str] | None:
    """What a multi-modal method combines: a ``collaborative-<set>`` method's modalities, ``--modalities``,
    or those of the conditions given when two or more; None: the run's default diffuser set."""
    named = req.method.removeprefix(SET_METHOD).split("-") if req.method.startswith(SET_METHOD) else None
    if named is not None and req.modalities and sorted(req.modalities) != sorted(named):
        raise InputError(f"--method {req.method} combines {', '.join(named)}; drop --modalities")
    chosen = named or req.modalities
    if req.modalities and req.method in modalities.names():
        raise InputError(
            f"--modalities picks what the multi-modal methods combine; drop it with --method {req.method}"
        )
    if chosen is not None:
        what = f"--method {req.method}" if named else "--modalities"
        chosen = modalities.check(list(dict.fromkeys(chosen)), what)
        if len(chosen) < 2:
            raise InputError(f"{what} needs two or more of {', '.join(modalities.names())}")
        return chosen
    given = [m for m, v in req.conditions.items() if v]
    if req.pairs:
        given = [m for m in req.pairs[0] if all(m in rec for rec in req.pairs)]
    return modalities.check(given, "conditions") if len(given) > 1 else None


def modalities_of(method: str, cfg: Config, run: Run, chosen: list[str] | None = None) -> list[str]:
    """The modalities ``method`` conditions on: its own, or the diffuser set's for ``chosen`` (trained order)."""
    if method in modalities.names():
        return [method]
    return modalities.check(run.diffuser_modalities(cfg.diffuser.modalities, chosen))


def _check_guidance(cfg: Config, metas: dict[str, dict[str, Any]]) -> None:
    """Guidance other than 1 needs every model trained with condition dropout."""
    s = cfg.sample
    plain = [m for m, meta in metas.items() if meta["unimodal"]["cond_dropout"] <= 0]
    if s.guidance != 1.0 and plain:
        raise InputError(
            f"guidance {s.guidance:g} needs models trained with condition dropout, and the {plain[0]} model "
            f"was trained without it (e.g. the released weights); pass --guidance 1, or the run's preset "
            f"(--config {cfg.name if cfg.name != 'demo' else 'celeba256/celeba512'})"
        )


def predictor_for(
    method: str, cfg: Config, run: Run, chosen: list[str] | None = None
) -> tuple[CollabPredictor, list[str], dict[str, Any]]:
    """The predictor for ``method`` with ``cfg.sample``'s settings, its modalities, and the settings record.

    ``chosen``: what a multi-modal method combines (:func:`chosen_modalities`). Adopts the schedule the
    models were trained with (``cfg.diffusion``) and checks the settings against it.
    """
    method = base_method(method)
    if method not in methods():
        raise InputError(
            f"unknown --method '{method}'; choose {', '.join(methods())}, {SET_METHOD}<modalities> or {ALL}"
        )
    s = cfg.sample
    mods = modalities_of(method, cfg, run, chosen if method in MULTI else None)
    metas = {m: run.expert(m)[1] for m in mods}
    _check_guidance(cfg, metas)
    cfg.diffusion = cfg_mod.build(cfg_mod.DiffusionConfig, metas[mods[0]]["diffusion"])  # sample as trained
    cfg_mod.check_sample(s, cfg.diffusion.timesteps)
    settings: dict[str, Any] = {
        "method": method,
        "modalities": mods,
        "steps": s.steps,
        "eta": s.eta,
        "guidance": s.guidance,
        "solver": s.solver,
    }
    if method == "collaborative":
        if s.weights is not None:
            raise InputError(
                "--weights is for --method composable; the collaborative weights come from the diffusers"
            )
        if s.reweight == "released":
            check_released(mods)
        settings.update(reweight=s.reweight, influence_every=s.influence_every)
    elif s.reweight != "none" or s.influence_every != 1:
        what = "the multi-modal methods" if method not in MULTI else "--method collaborative"
        raise InputError(f"--reweight and --influence-every apply to {what} only")
    elif method not in MULTI and s.weights is not None:
        raise InputError("--weights, --reweight and --influence-every apply to the multi-modal methods only")
    if s.compile:
        run.compile(mods, method == "collaborative")
    experts = {m: run.expert(m)[0] for m in mods}
    diffusers = run.diffusers(mods)[0] if method == "collaborative" else None
    weights = [1.0] if method not in MULTI else s.weights
    predictor = CollabPredictor(
        Collaboration(experts, diffusers, mods),
        "collaborative" if method == "collaborative" else "composable",
        weights,
        released_reweight if method == "collaborative" and s.reweight == "released" else None,
        s.influence_every,
        s.guidance,
    )
    if method == "composable":
        settings["weights"] = predictor.fixed.flatten().tolist()
    return predictor, mods, settings


def sample(
    cfg: Config,
    req: GenerateRequest,
    run: Run,
    progress: Callable[[int, int], None] | None = None,
    on_step: Callable[[StepInfo], None] | None = None,
    done: dict[int, np.ndarray] | None = None,
    on_batch: Callable[[int, list[np.ndarray]], None] | None = None,
) -> Generation:
    """Generate in memory: one image per (condition set, seed).

    ``on_step(info)`` sees every sampler step of every batch as it happens (a live preview decodes
    ``info.pred_x0``); it only watches, so the images are the same with or without it. ``done`` and
    ``on_batch``: images already made, and each batch as it is made (see
    :func:`~cdiff.stages.sampling_common.generate_images`). In a job of several processes
    (``accelerate launch``) every process calls this alike; each samples its share of the batches
    and all end with every image (and every intermediate).
    """
    t0 = time.perf_counter()
    if req.num < 1:
        raise InputError(f"--num must be at least 1, got {req.num}")
    rows = max([len(req.pairs), *(len(v) for v in req.conditions.values()), 1])
    check_seed(req.seed, req.num * rows)
    # 1. models
    predictor, mods, settings = predictor_for(req.method, cfg, run, chosen_modalities(req))
    vae, vae_meta = run.vae()
    # 2. conditions, each repeated for num seeds
    notes: list[str] = []
    rows = condition_rows(req, mods, run)
    raw = {m: run.read(m, [r[m] for r in rows], notes) for m in mods}
    predictor.nulls = {m: run.null(m, raw[m]) for m in mods}
    seeds = seeds_of(req, len(rows))
    raw_all = {m: v.repeat_interleave(req.num, dim=0) for m, v in raw.items()}
    # 3. sample (with the intermediates when asked), this process's share of the batches
    procs = processes.current()
    if on_step is not None and procs.count > 1:
        raise InputError("on_step watches one process's sampling; call it without accelerate launch")
    recorder = sc.StepRecorder()
    images = sc.generate_images(
        predictor,
        vae,
        vae_meta,
        cfg,
        raw_all,
        seeds,
        callback=_watcher(recorder if req.save_intermediates else None, on_step),
        progress=progress,
        done=done,
        on_batch=on_batch,
        procs=procs,
    )
    steps = None
    if req.save_intermediates:  # each process kept its own batches' steps
        steps = {k: v for part in procs.gather(recorder.steps) for k, v in part.items()}
    wall = time.perf_counter() - t0
    return Generation(
        req.method, mods, images, rows, raw, seeds, req.num, settings, notes, cfg, run.root, steps, wall
    )


def seeds_of(req: GenerateRequest, rows: int) -> list[int]:
    """Each image's seed: ``seed … seed+num-1`` for every condition set (``seed_per_row``: a set's own)."""
    if req.seed_per_row:
        return [req.seed + j * req.num + k for j in range(rows) for k in range(req.num)]
    return [req.seed + k for k in range(req.num)] * rows


def _watcher(recorder: sc.StepRecorder | None, on_step: Callable[[StepInfo], None] | None):
    """The sampler's callback: keep the steps (``recorder``) and/or show them (``on_step``); None: neither."""
    if recorder is None and on_step is None:
        return None

    def watch(first: int, info: StepInfo) -> None:
        if recorder is not None:
            recorder(first, info)
        if on_step is not None:
            on_step(info)

    return watch


def run(
    cfg: Config,
    req: GenerateRequest,
    run_dir: Path | Run,
    out: Path | None,
    force: bool = False,
    outputs_root: Path | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> GenerateResult:
    """Generate and write; ``out`` defaults to a new numbered folder under ``outputs_root`` (default ``RUN/samples``)."""
    run = run_dir if isinstance(run_dir, Run) else Run(run_dir)
    if req.method == ALL:
        return run_all(cfg, req, run, out, force, outputs_root, progress)
    check_out(out, force)
    try:
        gen = sample(cfg, req, run, progress)
        if not processes.current().main:  # the main process writes (every process has every image)
            return unwritten(gen)
        return write_to(out, outputs_root or run.root / "samples", lambda folder: write(gen, folder))
    finally:
        if out is not None:
            locks.release(out)


def unwritten(gen: Generation) -> GenerateResult:
    """What a process other than the main one returns: the images, no folder (it writes nothing)."""
    return GenerateResult(Path(), gen.images, gen.rows, gen.seeds, gen.wall_time, gen.notes)


def run_all(
    cfg: Config,
    req: GenerateRequest,
    run: Run,
    out: Path | None,
    force: bool,
    outputs_root: Path | None,
    progress: Callable[[int, int], None] | None = None,
) -> GenerateResult:
    """Every method for the same conditions and seeds (see :mod:`cdiff.stages.compare`)."""
    from cdiff.stages import compare

    check_out(out, force)
    try:
        gens = compare.sample_all(cfg, req, run, progress)
        if not processes.current().main:
            return unwritten(next(iter(gens.values())))
        root = outputs_root or run.root / "samples"
        return write_to(out, root, lambda folder: compare.write_all(gens, folder))
    finally:
        if out is not None:
            locks.release(out)
