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

import json
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
SOURCE_KEY = "{}_of"  # JSONL keys that say where a modality's condition came from (and "caption_of")


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


def read_pairs_file(path: Path) -> list[dict[str, str]]:
    """A JSONL file, one condition set per line: ``{"mask": "m.png", "text": "..."}`` (any registered modality)."""
    if not path.is_file():
        raise InputError(f"--from-file: {path} not found")
    known = set(modalities.names())
    pairs = []
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise InputError(
            f"--from-file {path} is not UTF-8 text (byte {exc.start}); save it as UTF-8 JSON lines"
        ) from None
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
        except json.JSONDecodeError:
            raise InputError(
                f'{path}:{n} is not JSON; each line must be like {{"mask": "m.png", "text": "..."}}'
            ) from None
        sources = {SOURCE_KEY.format(m) for m in known} | {"caption_of"}
        if not isinstance(rec, dict) or not set(rec) <= known | sources or not set(rec) & known:
            raise InputError(
                f"{path}:{n}: expected an object with the keys {', '.join(sorted(known))} (any of them; "
                f"optionally where each came from: {', '.join(sorted(sources))}), got {line.strip()[:80]}"
            )
        bad = [k for k in rec if k in known and not isinstance(rec[k], str)]
        if bad:
            raise InputError(f"{path}:{n}: {bad[0]} must be a string, got {json.dumps(rec[bad[0]])[:40]}")
        base = path.parent.resolve()
        pairs.append({k: modalities.get(k).resolve_path(v, base) for k, v in rec.items() if k in known})
    if not pairs:
        raise InputError(f"--from-file: {path} holds no condition lines")
    return pairs


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
        chosen = modalities.check(list(dict.fromkeys(chosen)), "--modalities")
        if len(chosen) < 2:
            raise InputError(f"--modalities needs two or more of {', '.join(modalities.names())}")
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


def condition_rows(req: GenerateRequest, mods: list[str], run: Run) -> list[dict[str, Any]]:
    """One dict per condition set: ``{modality: value}`` (a caption, a mask path or array, ``val:<id>``)."""
    given = {m: list(v) for m, v in req.conditions.items() if v}
    modalities.check(list(given), "conditions")
    extra = [m for m in given if m not in mods]
    if extra:
        raise InputError(
            f"--method {req.method} does not use {_option(extra[0])}; it conditions on {', '.join(mods)}"
        )
    if req.pairs:
        if given:
            raise InputError("give conditions either with --from-file or with options like --text, not both")
        for n, rec in enumerate(req.pairs, 1):
            missing = [m for m in mods if m not in rec]
            if missing:
                raise InputError(
                    f"--from-file line {n} lacks {', '.join(missing)} (--method {req.method} needs {', '.join(mods)})"
                )
        return [{m: rec[m] for m in mods} for rec in req.pairs]
    if not given:
        return _val_rows(run, mods, req.val_conditions)
    missing = [m for m in mods if m not in given]
    if missing:
        raise InputError(
            f"--method {req.method} needs {' and '.join(_option(m) for m in mods)}; {_option(missing[0])} is missing"
        )
    n = max(len(v) for v in given.values())
    for m, v in given.items():
        if len(v) not in (1, n):
            raise InputError(
                f"{len(v)} {_option(m)} for {n} of the other condition: give one, or as many (paired by position)"
            )
    return [{m: given[m][k if len(given[m]) > 1 else 0] for m in mods} for k in range(n)]


def _option(m: str) -> str:
    return modalities.get(m).option or f"--cond {m}=..."


def _val_rows(run: Run, mods: list[str], n: int) -> list[dict[str, Any]]:
    """The run's example pairs (shipped demo runs), else its first validation pairs."""
    examples = run.root / "examples" / "pairs.jsonl"
    if examples.is_file():
        return [{m: rec[m] for m in mods} for rec in read_pairs_file(examples)[:n]]
    if run.data is None:
        raise InputError(
            f"no conditions given and {run.root} has no data to take validation pairs from; give conditions "
            f"({', '.join(_option(m) for m in mods)})"
        )
    ids = run.data.split("val")[:n]
    return [{m: modalities.get(m).dataset_value(run.data, i) for m in mods} for i in ids]


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
    if s.guidance != 1.0:
        plain = [m for m in mods if metas[m]["unimodal"]["cond_dropout"] <= 0]
        if plain:
            raise InputError(
                f"guidance {s.guidance:g} needs models trained with condition dropout, and the {plain[0]} model "
                f"was trained without it (e.g. the released weights); pass --guidance 1, or the run's preset "
                f"(--config {cfg.name if cfg.name != 'demo' else 'celeba256/celeba512'})"
            )
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
