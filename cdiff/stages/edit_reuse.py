"""Edits rendered from saved states, without optimising again (``edit --from``).

- One earlier edit: render (more) alphas into ``EDIT_DIR/renders/NNN``.
- Several edits of one photo toward other targets (``--from A --from B``): the collaborative edit
  toward all their targets, a new edit beside the first (``RUN/edits/NNN``, ``./outputs/NNN``). Each modality's embedding optimisation and fine-tuning
  run alone, seeded by the edit's seed, so the edits toward a caption and toward a mask hold exactly
  the state that an edit toward both builds (the same images, tested): combining them costs only
  the sweep.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from cdiff import config as cfg_mod
from cdiff.config import Config
from cdiff.errors import InputError
from cdiff.locks import release
from cdiff.rundir import read_manifest
from cdiff.stages.edit import EditRequest, EditResult, set_of_targets, write
from cdiff.stages.edit_state import load_state
from cdiff.stages.generate import check_out, write_to
from cdiff.stages.imagic import EditState
from cdiff.stages.run import Run

SAME = ("seed", "embed_steps", "embed_lr", "finetune_steps", "finetune_lr", "batch", "precision")


def run(
    cfg: Config, req: EditRequest, out: Path | None, force: bool, progress=None, device=None
) -> EditResult:
    """Render from ``req.from_dir``: one edit folder (more alphas), or several (combined)."""
    sources = [Path(p) for p in (req.from_dir if isinstance(req.from_dir, list) else [req.from_dir])]
    manifests = [_edit_manifest(src) for src in sources]
    if req.photo is not None or any(v is not None for v in req.targets.values()):
        raise InputError(
            "--from renders earlier edits: give no photo or targets (only --alphas and output options)"
        )
    check_out(out, force)  # before any set-up: locked, finished work refused
    try:
        if len(sources) == 1:
            return _rerender(cfg, req, sources[0], manifests[0], out, progress, device, time.perf_counter())
        return _combine(cfg, req, sources, manifests, out, progress, device, time.perf_counter())
    finally:
        if out is not None:
            release(out)


def _edit_manifest(src: Path) -> dict[str, Any]:
    if not (src / "manifest.json").is_file():
        raise InputError(
            f"{src} is not an edit folder (no manifest.json); give a folder written by cdiff edit"
        )
    manifest = read_manifest(src)
    if manifest.get("stage") != "edit":
        raise InputError(f"{src} holds '{manifest.get('stage')}' output, not an edit")
    return manifest


def _run_of(manifest: dict, device: tuple[Any, Any] | None) -> Run:
    """The edit's own run, on ``device`` (``(device, dtype)`` names) when given."""
    run = Run(Path(manifest["inputs"]["run"]))
    if device is None:
        return run
    from cdiff.devices import resolve_device, resolve_dtype

    dev = resolve_device(device[0])
    return Run(run.root, dev, resolve_dtype(device[1], dev))


def _sampling(cfg: Config, req: EditRequest, settings: dict[str, Any], run: Run) -> None:
    """The edit's own steps, eta and solver unless given now; the schedule the models were trained with."""
    for key in ("steps", "eta", "solver"):
        settings[key] = req.sample_given.get(key, settings[key])
        setattr(cfg.sample, key, settings[key])
    cfg.diffusion = cfg_mod.build(
        cfg_mod.DiffusionConfig, run.expert(settings["modalities"][0])[1]["diffusion"]
    )
    cfg_mod.check_sample(cfg.sample, cfg.diffusion.timesteps)


def _rerender(
    cfg: Config,
    req: EditRequest,
    src: Path,
    manifest: dict,
    out: Path | None,
    progress: Callable[[str], Any] | None,
    device: tuple[Any, Any] | None,
    t0: float,
) -> EditResult:
    """:func:`rerender` once its output is checked: the edit's state, then the sweep."""
    settings = dict(manifest["settings"])
    run = _run_of(manifest, device)
    _sampling(cfg, req, settings, run)
    state = load_state(src, run, settings)
    alphas = list(req.alphas or [r["alpha"] for r in manifest["outputs"]["images"]])
    conditions = manifest["outputs"]["images"][0]["conditions"] if manifest["outputs"]["images"] else {}
    conditions = {**conditions, **{m: str(src / f"target_{m}.png") for m in state.raw}}
    inputs = {"run": str(run.root.resolve()), "edit": str(src.resolve())}
    record = {"inputs": inputs, "metrics": {}, "notes": [], "t0": t0, "conditions": conditions}
    out, images = write_to(
        out, src / "renders", lambda f: (f, write(cfg, state, alphas, req, f, record, progress))
    )
    return EditResult(out, alphas, images, {}, [], time.perf_counter() - t0)


def _combine(
    cfg: Config,
    req: EditRequest,
    sources: list[Path],
    manifests: list[dict],
    out: Path | None,
    progress: Callable[[str], Any] | None,
    device: tuple[Any, Any] | None,
    t0: float,
) -> EditResult:
    """The collaborative edit toward every target of ``sources`` (edits of one photo), written as a
    new edit of its own (reusable with ``--from``) beside the first source."""
    run = _run_of(manifests[0], device)
    mods = _check_combinable(sources, manifests, run, set(req.sample_given))
    settings = {**manifests[0]["settings"], "method": "collaborative", "modalities": mods}
    _sampling(cfg, req, settings, run)
    states = [
        load_state(src, run, m["settings"], diffusers=False)
        for src, m in zip(sources, manifests, strict=True)
    ]
    for src, st in zip(sources[1:], states[1:], strict=True):
        if not np.array_equal(st.image, states[0].image):
            raise InputError(f"{src} edits another photo than {sources[0]}; combine edits of one photo")
        if not torch.equal(st.noise, states[0].noise):
            raise InputError(
                f"{src} starts from other noise than {sources[0]}; combine edits made with one --seed"
            )
    merged = {
        f: {m: v for st in states for m, v in getattr(st, f).items()}
        for f in ("experts", "targets", "optimised")
    }
    values = _targets(sources, manifests)
    notes: list[str] = []
    state = EditState(
        run.root,
        *({m: merged[f][m] for m in mods} for f in ("experts", "targets", "optimised")),
        states[0].noise,
        states[0].vae,
        states[0].vae_meta,
        settings,
        run.diffusers(mods)[0],
        {m: run.read(m, [values[m]], notes).to(run.device) for m in mods},
        {m: values[m] for m in mods},
        states[0].image,
    )
    metrics = {k: v for manifest in manifests for k, v in manifest.get("metrics", {}).items()}
    first = manifests[0]["inputs"]
    inputs = {"run": str(run.root.resolve()), **({"photo": first["photo"]} if "photo" in first else {})}
    inputs.update({m: str(run.root / m) for m in mods}, edits=[str(src.resolve()) for src in sources])
    photo = first.get("photo", {}).get("path", "<image>")
    record = {"inputs": inputs, "metrics": metrics, "notes": notes, "t0": t0, "photo": photo}
    alphas = list(req.alphas or cfg.edit.collab_alphas)
    out, images = write_to(
        out, sources[0].resolve().parent, lambda f: (f, write(cfg, state, alphas, req, f, record, progress))
    )
    return EditResult(out, alphas, images, metrics, notes, time.perf_counter() - t0)


def _targets(sources: list[Path], manifests: list[dict]) -> dict[str, Any]:
    """Every edit's targets: its saved target pictures by path, the others (captions) as recorded."""
    out: dict[str, Any] = {}
    for src, manifest in zip(sources, manifests, strict=True):
        images = manifest["outputs"]["images"]
        recorded = images[0]["conditions"] if images else {}
        for m in manifest["settings"]["modalities"]:
            picture = src / f"target_{m}.png"
            out[m] = str(picture.resolve()) if picture.is_file() else recorded.get(m)
            if out[m] is None:
                raise InputError(f"{src} does not record its {m} target; edit again")
    return out


def _check_combinable(sources: list[Path], manifests: list[dict], run: Run, given: set[str]) -> list[str]:
    """The combined modalities in their set's trained order, once the edits are known to fit together:
    one run, seed, optimisation and sampling (unless given now), other targets each, and a diffuser set
    combining them (the photo and the start noise are compared once loaded)."""
    first, mods = manifests[0], []
    same = [*SAME, *(k for k in ("steps", "eta", "solver") if k not in given)]
    for src, manifest in zip(sources, manifests, strict=True):
        s = manifest["settings"]
        if manifest["inputs"]["run"] != first["inputs"]["run"]:
            raise InputError(
                f"{src} was edited with the models of {manifest['inputs']['run']}, not {first['inputs']['run']}"
            )
        differ = [k for k in same if s.get(k) != first["settings"].get(k)]
        if differ:
            raise InputError(
                f"{src} was made with {differ[0]}={s.get(differ[0])}, {sources[0]} with "
                f"{first['settings'].get(differ[0])}; combine edits made with the same settings"
            )
        twice = [m for m in s["modalities"] if m in mods]
        if twice:
            raise InputError(f"two of the edits target {twice[0]}; combine one edit per modality")
        mods += s["modalities"]
    return set_of_targets(run, mods)


__all__ = ["SAME", "run"]
