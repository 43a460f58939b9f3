"""Stage ``generate`` (uni-modal): sample faces from the text- or mask-driven model.

1. Load the VAE and the model of the chosen modality from the run directory.
2. Read the conditions: captions or mask files given on the command line, else the first
   validation conditions of the prepared dataset.
3. Sample one image per (condition, seed) with DDIM (the release's settings by default) or
   DPM-Solver++, each image from its own seed.
4. Write one PNG per image (conditions and settings in its metadata), a grid and a manifest.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from cdiff import config as cfg_mod
from cdiff.config import Config
from cdiff.data.masks import read_mask
from cdiff.data.prepared import PreparedDataset
from cdiff.data.tokenizer import encode as tokenize
from cdiff.data.tokenizer import load_tokenizer
from cdiff.errors import InputError
from cdiff.imageio import grid, save_png
from cdiff.models.unimodal import TOKENIZER, load_unimodal
from cdiff.models.vae import load_vae
from cdiff.rundir import atomic_write_json, make_manifest, require_stage
from cdiff.stages import sampling_common as sc
from cdiff.stages.conditions import null_condition


@dataclass
class GenerateRequest:
    modality: str
    texts: list[str] = field(default_factory=list)
    masks: list[Path] = field(default_factory=list)
    num: int = 4  # images per condition
    seed: int = 0
    steps: int | None = None
    eta: float | None = None
    guidance: float = 1.0
    solver: str = "ddim"
    batch_size: int | None = None
    val_conditions: int = 4  # used when no condition is given


def next_output_dir(root: Path) -> Path:
    """``root/000``, ``root/001``, ...: the first number not taken."""
    root.mkdir(parents=True, exist_ok=True)
    taken = [int(p.name) for p in root.iterdir() if p.name.isdigit()]
    return root / f"{max(taken, default=-1) + 1:03d}"


def _conditions(req: GenerateRequest, run_dir: Path, model_dir: Path, resolution: int, max_length: int):
    """(raw condition tensor, description per condition)."""
    if req.modality == "text":
        texts = req.texts or _val_conditions(run_dir, "text", req.val_conditions)
        tok = load_tokenizer(model_dir / TOKENIZER)
        return tokenize(tok, texts, max_length), texts, tok
    if req.masks:
        labels = [read_mask(p, size=resolution) for p in req.masks]
        return torch.from_numpy(np.stack(labels)), [str(p) for p in req.masks], None
    ids = _val_conditions(run_dir, "mask", req.val_conditions)
    data = PreparedDataset.open(run_dir / "data")
    return (
        torch.from_numpy(np.stack([data.label(i) for i in ids])),
        [f"validation mask {i}" for i in ids],
        None,
    )


def _val_conditions(run_dir: Path, modality: str, n: int) -> list[str]:
    data = PreparedDataset.open(run_dir / "data")
    ids = data.split("val")[:n]
    if modality == "text":
        records = data.records()
        return [records[i]["caption"] for i in ids]
    return ids


def run(
    cfg: Config, req: GenerateRequest, run_dir: Path, out: Path | None, force: bool = False
) -> tuple[Path, int, float]:
    t0 = time.perf_counter()
    if out is not None and out.exists() and any(out.iterdir()) and not force:
        raise InputError(f"{out} is not empty; choose another --out or pass --force to write into it")
    # 1. models
    model_dir = run_dir / req.modality
    require_stage(
        model_dir,
        f"train-unimodal-{req.modality}",
        f"cdiff train-unimodal --modality {req.modality} --run {run_dir}",
    )
    model, meta = load_unimodal(model_dir)
    # sample with the schedule the model was trained with
    cfg.diffusion = cfg_mod.build(cfg_mod.DiffusionConfig, meta["diffusion"])
    vae, vae_meta = load_vae(run_dir / "vae")
    if req.guidance != 1.0 and meta["unimodal"]["cond_dropout"] <= 0:
        raise InputError(
            "--guidance needs a model trained with condition dropout "
            "(--set unimodal.cond_dropout=0.1); this one was trained without it"
        )
    if req.solver not in sc.SOLVERS:
        raise InputError(f"unknown --solver '{req.solver}'; choose {', '.join(sc.SOLVERS)}")
    # 2. conditions, each repeated for num seeds
    max_length = meta["unimodal"]["text_encoder"]["max_length"]
    raw, described, tok = _conditions(req, run_dir, model_dir, vae_meta["resolution"], max_length)
    seeds = [req.seed + k for k in range(req.num)]
    raw_all = raw.repeat_interleave(req.num, dim=0)
    seeds_all = seeds * len(described)
    null = null_condition(req.modality, raw[:1], tok, max_length)[0] if req.guidance != 1.0 else None
    # 3. sample
    images = sc.generate_images(
        model,
        vae,
        vae_meta,
        cfg,
        raw_all,
        seeds_all,
        req.steps,
        req.eta,
        req.guidance,
        null,
        req.solver,
        req.batch_size,
    )
    # 4. write
    out = out or next_output_dir(run_dir / "samples")
    settings = {
        "modality": req.modality,
        "steps": req.steps or cfg.sample.steps,
        "eta": cfg.sample.eta if req.eta is None else req.eta,
        "guidance": req.guidance,
        "solver": req.solver,
    }
    files = []
    for k, (im, seed) in enumerate(zip(images, seeds_all, strict=True)):
        j = k // req.num
        name = f"{seed:06d}.png" if len(described) == 1 else f"{j:03d}-{seed:06d}.png"
        save_png(out / name, im, {"condition": described[j], "seed": str(seed), "settings": settings})
        files.append({"file": name, "condition": described[j], "seed": seed})
    save_png(out / "grid.png", grid(images, ncol=req.num), {"rows": described, "settings": settings})
    wall = time.perf_counter() - t0
    atomic_write_json(
        out / "manifest.json",
        make_manifest(
            "generate",
            cfg_mod.to_dict(cfg),
            {"run": str(run_dir), "model": str(model_dir)},
            {"images": files},
            wall,
            settings=settings,
        ),
    )
    return out, len(images), wall
