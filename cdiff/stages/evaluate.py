"""Stage ``evaluate``: mask and text consistency and image quality of each method, on validation pairs.

1. Draw N validation pairs with a fixed seed: each modality's condition from a different face (the
   mask of one face, the caption of another), so that no condition can be met by copying a face.
2. Generate one image per pair with each method (collaborative, composable, text only, mask only,
   and optionally the release's re-weighting), pair k with seed ``seed + k`` for every method.
3. Score every image with the evaluator models (``train-evaluator``), each modality by its own
   scores (:meth:`cdiff.modalities.Modality.judge`):
   - mask accuracy: the parser's pixel accuracy against the input mask, at full size and at
     the 32x32 protocol (the release's mask resolution);
   - text accuracy: the classifier's attributes against what the caption states (gender,
     beard, age), per attribute and as the mean share per image;
   - image quality: a Fréchet distance in the classifier's feature space against the
     validation images (offline, always; never called FID), and FID with the standard Inception
     weights when a local copy is given, on the first ``fid_images`` images (the paper: 50) and on N.
   Two reference rows bound the numbers: the real validation faces the conditions came from,
   and their VAE reconstructions.
4. Compare methods pair by pair (bootstrap 95 % intervals) for the paper's claims, and write
   ``metrics.json``, ``report.html`` (the table, the claims, sample rows per method with the
   parser's reading) and ``samples.png``.
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from cdiff import config as cfg_mod
from cdiff import metrics as M
from cdiff import modalities, processes
from cdiff.config import Config
from cdiff.data.datasets import to_uint8
from cdiff.data.prepared import PreparedDataset
from cdiff.diffusion.sampling import check_seed
from cdiff.models.vae import reconstruct
from cdiff.rundir import begin_stage, check_output, finish_stage, make_manifest
from cdiff.stages import generate as gen
from cdiff.stages.evaluate_cache import Pending
from cdiff.stages.evaluate_judges import Judges, _tensors
from cdiff.stages.evaluate_pages import (
    REAL,
    RECONSTRUCTED,
    RELEASED,
    columns,
    write_html,
    write_samples,
)
from cdiff.stages.evaluate_plan import (
    choose_pairs,
    claims_of,
    expand_methods,
    judged_modalities,
)
from cdiff.stages.run import Run


@dataclass
class EvaluateRequest:
    """What to evaluate; the sampling settings are ``cfg.sample`` (``sample.weights``: composable's)."""

    methods: list[str] = field(default_factory=lambda: [gen.ALL])
    pairs: int | None = None  # None: the config's evaluate.pairs
    seed: int | None = None
    inception: Path | None = None
    fid_images: int | None = None
    modalities: list[str] | None = None  # which diffuser set's modalities (None: RUN/diffuser's)


@dataclass
class EvaluateReport:
    out: Path
    metrics: dict[str, Any]
    wall_time_s: float
    notes: list[str]


def _per_image(scores: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k: v for k, v in scores.items() if v.dim() == 1}


def summarise(scores: dict[str, torch.Tensor]) -> dict[str, float]:
    """Mean of every per-image score (``<attribute>_hit`` → ``<attribute>_accuracy``)."""
    return {
        (k[:-4] + "_accuracy" if k.endswith("_hit") else k): M.nanmean(v)
        for k, v in _per_image(scores).items()
    }


@dataclass
class Setup:
    """Everything the methods are judged with, made once."""

    data: PreparedDataset
    run: Run
    judges: Judges
    pairs: list[dict[str, str]]
    seed: int
    fid_n: int
    inception_path: Path | None
    inception: Any
    ref_feats: torch.Tensor
    ref_incep: torch.Tensor | None
    notes: list[str]
    pending: Pending = field(default_factory=lambda: Pending(None))

    def quality(self, images: list[np.ndarray], feats: torch.Tensor) -> dict[str, float]:
        q = {"fd_evaluator": M.frechet_between(feats, self.ref_feats)}
        if self.inception is not None:
            f = M.inception_features(self.inception, images)
            q[f"fid_{min(self.fid_n, len(images))}"] = M.frechet_between(f[: self.fid_n], self.ref_incep)
            q[f"fid_{len(images)}"] = M.frechet_between(f, self.ref_incep)
        return q


def run(
    cfg: Config,
    req: EvaluateRequest,
    run_dir: Path | Run,
    data_dir: Path,
    out: Path,
    *,
    force: bool = False,
    log: Callable[[str], None] = print,
    progress: Callable[[str], Any] | None = None,
) -> EvaluateReport:
    procs = processes.current()  # accelerate launch: each process samples its share, the main one the rest
    if procs.main:
        check_output(out, force)  # before any set-up: finished work is refused at once
    t0 = time.perf_counter()
    # 1. inputs, judges, pairs and the reference features
    setup = _setup(cfg, req, run_dir, data_dir, with_judges=procs.main)
    partial, resumed = begin_stage(out, cfg_mod.to_yaml(cfg), force) if procs.main else (None, False)
    setup.pending = Pending(partial)
    # 2-3. generate with each method (the pairs kept by an interrupted run are not made again) and score
    per_image: dict[str, dict[str, torch.Tensor]] = {}
    images_of: dict[str, list[np.ndarray]] = {}
    results = {
        method: _method(cfg, setup, method, partial, per_image, images_of, log, progress)
        for method in req.methods
    }
    if partial is None:  # not the main process: its share is done
        return EvaluateReport(out, {}, time.perf_counter() - t0, setup.notes)
    setup.pending.clear()
    references = _references(setup)
    # 4. paired comparisons and outputs
    metrics = _metrics(cfg, setup, results, references, per_image)
    (partial / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    examples = min(cfg.evaluate.examples, len(setup.pairs))
    readings = write_samples(partial, setup.pairs, setup.data, images_of, per_image, examples)
    write_html(partial, metrics, list(per_image), examples, readings)
    manifest = make_manifest(
        "evaluate",
        cfg_mod.to_dict(cfg),
        {"run": str(setup.run.root.resolve()), "data": str(Path(data_dir).resolve())},
        {"metrics": "metrics.json", "report": "report.html", "samples": "samples.png"},
        time.perf_counter() - t0,
        settings=metrics["settings"],
        notes=setup.notes,
    )
    finish_stage(partial, out, manifest)
    return EvaluateReport(out, metrics, time.perf_counter() - t0, setup.notes)


def _setup(
    cfg: Config, req: EvaluateRequest, run_dir: Path | Run, data_dir: Path, with_judges: bool = True
) -> Setup:
    """What the methods are judged with (``with_judges=False``: only what sampling needs, for the other
    processes of a job)."""
    check_seed(cfg.evaluate.seed if req.seed is None else req.seed, req.pairs or cfg.evaluate.pairs)
    inception_path = M.find_inception(req.inception)
    data = PreparedDataset.open(data_dir)
    run = run_dir if isinstance(run_dir, Run) else Run(run_dir)
    run.require("evaluator")
    mods = judged_modalities(run, req.modalities)
    req.methods = expand_methods(req.methods, run, mods)
    seed = cfg.evaluate.seed if req.seed is None else req.seed
    pairs = choose_pairs(data, req.pairs or cfg.evaluate.pairs, seed, mods)
    if not with_judges:
        return Setup(data, run, Judges.none(mods), pairs, seed, 0, None, None, torch.empty(0), None, [])
    judges = Judges(run, data.manifest["config"]["data"]["source"], mods)
    judges.set_pairs(data, pairs)
    inception = M.load_fid_inception(inception_path) if inception_path is not None else None
    notes: list[str] = []
    if inception is None:
        notes.append(
            f"FID skipped: no Inception weights (give --inception {M.FID_WEIGHTS} or put it in torch hub's "
            "cache); the Fréchet distance in the evaluator's feature space is reported instead"
        )
    reference_images = [data.image(i) for i in data.split("val")]
    return Setup(
        data,
        run,
        judges,
        pairs,
        seed,
        req.fid_images or cfg.evaluate.fid_images,
        inception_path,
        inception,
        judges.features(reference_images),
        M.inception_features(inception, reference_images) if inception is not None else None,
        notes,
    )


def _method(
    cfg: Config,
    setup: Setup,
    method: str,
    partial: Path | None,
    per_image: dict[str, dict[str, torch.Tensor]],
    images_of: dict[str, list[np.ndarray]],
    log: Callable[[str], None],
    progress: Callable[[str], Any] | None,
) -> dict[str, float]:
    """One method's images for every pair (pair k: seed + k), written to ``partial/<method>`` and scored
    (by the main process; the others only sample their share: ``partial`` None)."""
    base = "collaborative" if method == RELEASED else method
    mods = setup.judges.mods if base in gen.MULTI else [base]
    if base.startswith(gen.SET_METHOD):  # a smaller diffuser set: the conditions it leaves out unused
        mods = [m for m in setup.judges.mods if m in base.removeprefix(gen.SET_METHOD).split("-")]
    rows = [{m: modalities.get(m).dataset_value(setup.data, p[m]) for m in mods} for p in setup.pairs]
    greq = gen.GenerateRequest(
        method=base,
        pairs=rows,
        num=1,
        seed=setup.seed,
        seed_per_row=True,
        modalities=mods if base in gen.MULTI else None,
    )
    sample = dataclasses.replace(
        cfg.sample,
        reweight="released" if method == RELEASED else cfg.sample.reweight,
        weights=cfg.sample.weights if method == "composable" else None,
    )
    done = setup.pending.done(method, setup.pairs, setup.seed)
    keep = setup.pending.saver(method, setup.pairs, setup.seed)
    with progress(method) if progress is not None else nullcontext() as update:
        generation = gen.sample(
            dataclasses.replace(cfg, sample=sample), greq, setup.run, update, None, done, keep
        )
    if partial is None:
        return {}
    result = gen.write(generation, partial / method)
    setup.notes += [x for x in result.notes if x not in setup.notes]
    scores = setup.judges(result.images)
    per_image[method], images_of[method] = scores, result.images
    row = {
        **summarise(scores),
        **setup.quality(result.images, setup.judges.features(result.images)),
        "images_per_s": len(result.images) / max(result.wall_time_s, 1e-9),
    }
    heads = [(m, modalities.get(m).headline) for m in setup.judges.mods if modalities.get(m).headline]
    log(f"{method}: " + ", ".join(f"{modalities.get(m).columns[h][1]} {row[h]:.3f}" for m, h in heads))
    return row


def _references(setup: Setup) -> dict[str, dict[str, float]]:
    """The real faces each modality's conditions came from, and their VAE reconstructions, judged
    as the methods are; their quality is that of as many training faces against the validation set."""
    data, judges, n = setup.data, setup.judges, len(setup.pairs)
    real_of = {m: [data.image(p[m]) for p in setup.pairs] for m in judges.mods}
    train_ids = data.split("train")[:n]
    train_real = [data.image(i) for i in train_ids]
    vae, _ = setup.run.vae()
    references: dict[str, dict[str, float]] = {}
    for name, transform in ((REAL, None), (RECONSTRUCTED, vae)):

        def prep(ims: list[np.ndarray], tr=transform) -> list[np.ndarray]:
            return ims if tr is None else _reconstruct(tr, ims)

        row: dict[str, float] = {}
        for m in judges.mods:
            row |= summarise(judges(prep(real_of[m]), only=[m]))
        train_imgs = prep(train_real)
        references[name] = {**row, **setup.quality(train_imgs, judges.features(train_imgs))}
    setup.notes.append(
        "reference rows: each modality's scores on the real face its conditions came from "
        f"({', '.join(judges.mods)}); their quality is that of {len(train_ids)} training faces against the "
        "validation set"
    )
    return references


def _metrics(
    cfg: Config,
    setup: Setup,
    results: dict[str, dict[str, float]],
    references: dict[str, dict[str, float]],
    per_image: dict[str, dict[str, torch.Tensor]],
) -> dict[str, Any]:
    """``metrics.json``: settings, the table, the claims checked pair by pair, every pair's scores."""
    mods, seed = setup.judges.mods, setup.seed
    claims = []
    for a, b, metric in claims_of(mods):
        if a in per_image and b in per_image:
            d = M.paired_difference(per_image[a][metric], per_image[b][metric], seed=seed)
            verdict = "higher" if d["low"] > 0 else "lower" if d["high"] < 0 else "no clear difference"
            claims.append({"method": a, "other": b, "metric": metric, **d, "verdict": verdict})
    settings = {
        "pairs": len(setup.pairs),
        "seed": seed,
        "steps": cfg.sample.steps,
        "solver": cfg.sample.solver,
        "eta": cfg.sample.eta,
        "guidance": cfg.sample.guidance,
        "fid_images": setup.fid_n,
        "inception": str(setup.inception_path) if setup.inception_path else None,
        "reference_images": len(setup.data.split("val")),
        "composable_weights": list(cfg.sample.weights) if cfg.sample.weights is not None else None,
        "modalities": mods,
    }
    pairs = [
        {
            **{f"{m}_of": p[m] for m in mods},
            "conditions": {m: modalities.get(m).dataset_value(setup.data, p[m]) for m in mods},
            "seed": seed + k,
            **{
                meth: {key: _num(v[k]) for key, v in _per_image(per_image[meth]).items()}
                for meth in per_image
            },
        }
        for k, p in enumerate(setup.pairs)
    ]
    heads = [key for key, _, _ in columns(mods)]
    intervals = {
        meth: {
            k: [round(r["low"], 4), round(r["high"], 4)]
            for k in heads
            if k in scores and (r := M.mean_interval(scores[k], seed=seed))["pairs"]
        }
        for meth, scores in per_image.items()
    }
    return {
        "settings": settings,
        "methods": results,
        "intervals": intervals,  # bootstrap 95 % intervals of each method's consistency scores
        "references": references,
        "claims": claims,
        "evaluator": setup.judges.meta.get("metrics", {}),
        "pairs": pairs,
        "notes": setup.notes,
    }


def _num(x: torch.Tensor) -> float | None:
    v = float(x)
    return None if np.isnan(v) else round(v, 4)


@torch.no_grad()
def _reconstruct(vae, images: list[np.ndarray], batch: int = 64) -> list[np.ndarray]:
    return [
        to_uint8(r)
        for i in range(0, len(images), batch)
        for r in reconstruct(vae, _tensors(images[i : i + batch]).to(next(vae.parameters()).device)).cpu()
    ]
