"""Stage ``evaluate``: mask and text consistency and image quality of each method, on validation pairs.

1. Draw N validation pairs with a fixed seed: the mask of one face and the caption of another
   (never its own), so that neither condition can be met by copying a training face.
2. Generate one image per pair with each method (collaborative, composable, text only, mask only,
   and optionally the release's re-weighting), pair k with seed ``seed + k`` for every method.
3. Score every image with the evaluator models (``train-evaluator``):
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
import html
import json
import time
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from cdiff import config as cfg_mod
from cdiff import metrics as M
from cdiff.config import Config
from cdiff.data import attributes as attr_mod
from cdiff.data.datasets import to_tensor, to_uint8
from cdiff.data.masks import colorize, resize_label
from cdiff.data.prepared import PreparedDataset, resize_image
from cdiff.errors import InputError
from cdiff.imageio import grid, save_png
from cdiff.models import evaluator as ev
from cdiff.models.vae import reconstruct
from cdiff.rundir import begin_stage, check_output, finish_stage, make_manifest
from cdiff.stages import generate as gen
from cdiff.stages.run import Run

RELEASED = "collaborative-released"  # the collaborative method with the release's inference re-weighting


def methods() -> list[str]:
    return [*gen.methods(), RELEASED]


REAL, RECONSTRUCTED = "real faces", "VAE reconstructions"


@dataclass
class EvaluateRequest:
    """What to evaluate; the sampling settings are ``cfg.sample`` (``sample.weights``: composable's)."""

    methods: list[str] = field(default_factory=lambda: list(gen.methods()))
    pairs: int | None = None  # None: the config's evaluate.pairs
    seed: int | None = None
    inception: Path | None = None
    fid_images: int | None = None


@dataclass
class EvaluateReport:
    out: Path
    metrics: dict[str, Any]
    wall_time_s: float
    notes: list[str]


def choose_pairs(data: PreparedDataset, n: int, seed: int) -> list[tuple[str, str]]:
    """``(mask id, caption id)`` for n validation faces in a seeded order, each captioned by the next one."""
    val = data.split("val")
    if n < 2 or n > len(val):
        raise InputError(f"--pairs must be between 2 and the {len(val)} validation images, got {n}")
    order = np.random.default_rng(seed).permutation(len(val))[:n]
    ids = [val[i] for i in order]
    return [(ids[k], ids[(k + 1) % n]) for k in range(n)]


class Scorer:
    """The evaluator models, scoring uint8 images against mask labels and caption attributes."""

    def __init__(self, folder: Path, source: str):
        self.parser, self.classifier, self.spec, self.meta = ev.load(folder)
        if self.spec.source != source and {self.spec.source, source} != {"celeba", "codiff"}:
            raise InputError(
                f"the evaluator in {folder} was trained on {self.spec.source} data, the run's data is {source}; "
                f"retrain it: cdiff train-evaluator --run {folder.parent} --force"
            )
        self.names = list(self.spec.attributes)

    def __call__(
        self, images: list[np.ndarray], labels: torch.Tensor, targets: torch.Tensor
    ) -> dict[str, torch.Tensor]:
        """Per image: mask accuracy (full, 32), hits per attribute, text accuracy; features; parsed maps."""
        size = images[0].shape[0]
        if labels.shape[-1] != size:
            labels = torch.from_numpy(np.stack([resize_label(lb.numpy(), size) for lb in labels]))
        return ev.judge(self.parser, self.classifier, _tensors(images), labels, targets)

    @torch.no_grad()
    def features(self, images: list[np.ndarray], batch: int = 64) -> torch.Tensor:
        """The classifier's pooled features alone (the Fréchet distance's reference sets)."""
        return torch.cat(
            [self.classifier.features(_tensors(images[i : i + batch])) for i in range(0, len(images), batch)]
        )


def _tensors(images: list[np.ndarray]) -> torch.Tensor:
    return torch.stack([to_tensor(im) for im in images])


def summarise(scores: dict[str, torch.Tensor], names: list[str]) -> dict[str, float]:
    out = {
        "mask_accuracy": M.nanmean(scores["mask_accuracy"]),
        "mask_accuracy_32": M.nanmean(scores["mask_accuracy_32"]),
        "text_accuracy": M.nanmean(scores["text_accuracy"]),
    }
    for n in names:
        out[f"{n}_accuracy"] = M.nanmean(scores[f"{n}_hit"])
    return out


# the paper's claims: (method, other, metric) — "method scores higher than other on metric"
CLAIMS = (
    ("collaborative", "composable", "mask_accuracy"),
    ("collaborative", "composable", "text_accuracy"),
    ("collaborative", "text", "mask_accuracy"),
    ("collaborative", "mask", "text_accuracy"),
)


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
    check_output(out, force)  # before any set-up: finished work is refused at once
    t0 = time.perf_counter()
    # 1. inputs and pairs
    unknown = [m for m in req.methods if m not in methods()]
    if unknown or not req.methods:
        raise InputError(
            f"unknown --method '{unknown[0] if unknown else ''}'; choose from {', '.join(methods())}"
        )
    inception_path = M.find_inception(req.inception)
    data = PreparedDataset.open(data_dir)
    source = data.manifest["config"]["data"]["source"]
    run = run_dir if isinstance(run_dir, Run) else Run(run_dir)
    run.require("evaluator")
    scorer = Scorer(run.root / "evaluator", source)
    n = req.pairs or cfg.evaluate.pairs
    seed = cfg.evaluate.seed if req.seed is None else req.seed
    fid_n = req.fid_images or cfg.evaluate.fid_images
    pairs = choose_pairs(data, n, seed)
    records = data.records()
    inception = M.load_fid_inception(inception_path) if inception_path is not None else None
    notes: list[str] = []
    if inception is None:
        notes.append(
            f"FID skipped: no Inception weights (give --inception {M.FID_WEIGHTS} or put it in torch hub's "
            "cache); the Fréchet distance in the evaluator's feature space is reported instead"
        )
    partial, _ = begin_stage(out, cfg_mod.to_yaml(cfg), force)
    labels = torch.from_numpy(np.stack([data.label(m) for m, _ in pairs]))
    targets = torch.tensor(
        [[attr_mod.stated(records[c], source)[a] for a in scorer.names] for _, c in pairs], dtype=torch.long
    )
    val_all = data.split("val")
    reference_images = [data.image(i) for i in val_all]
    ref_feats = scorer.features(reference_images)
    ref_incep = M.inception_features(inception, reference_images) if inception is not None else None

    def quality(images: list[np.ndarray], feats: torch.Tensor) -> dict[str, float]:
        q = {"fd_evaluator": M.frechet_between(feats, ref_feats)}
        if inception is not None:
            f = M.inception_features(inception, images)
            q[f"fid_{min(fid_n, len(images))}"] = M.frechet_between(f[:fid_n], ref_incep)
            q[f"fid_{len(images)}"] = M.frechet_between(f, ref_incep)
        return q

    # 2-3. generate with each method and score
    rows = [{"mask": str(data.root / "masks" / f"{m}.png"), "text": records[c]["caption"]} for m, c in pairs]
    results: dict[str, dict[str, Any]] = {}
    per_image: dict[str, dict[str, torch.Tensor]] = {}
    images_of: dict[str, list[np.ndarray]] = {}
    for method in req.methods:
        base = "collaborative" if method == RELEASED else method
        keep = [base] if base not in gen.MULTI else list(rows[0])
        greq = gen.GenerateRequest(
            method=base, pairs=[{k: r[k] for k in keep} for r in rows], num=1, seed=seed, seed_per_row=True
        )
        sample = dataclasses.replace(
            cfg.sample,
            reweight="released" if method == RELEASED else cfg.sample.reweight,
            weights=cfg.sample.weights if method == "composable" else None,
        )
        bar = progress(method) if progress is not None else nullcontext()
        with bar as update:
            generation = gen.sample(dataclasses.replace(cfg, sample=sample), greq, run, update)
        result = gen.write(generation, partial / method)
        notes += [x for x in result.notes if x not in notes]
        scores = scorer(result.images, labels, targets)
        per_image[method], images_of[method] = scores, result.images
        results[method] = {
            **summarise(scores, scorer.names),
            **quality(result.images, scores["features"]),
            "images_per_s": len(result.images) / max(result.wall_time_s, 1e-9),
        }
        log(
            f"{method}: mask {results[method]['mask_accuracy']:.3f}, text {results[method]['text_accuracy']:.3f}"
        )

    # references: the real faces the conditions came from, and their VAE reconstructions
    real_masks = [data.image(m) for m, _ in pairs]
    real_texts = [data.image(c) for _, c in pairs]
    vae, _ = run.vae()
    references: dict[str, dict[str, float]] = {}
    train_ids = data.split("train")[:n]
    train_real = [data.image(i) for i in train_ids]
    for name, transform in ((REAL, None), (RECONSTRUCTED, vae)):

        def prep(ims: list[np.ndarray], tr=transform) -> list[np.ndarray]:
            return ims if tr is None else _reconstruct(tr, ims)

        mask_side = scorer(prep(real_masks), labels, targets)
        text_side = scorer(prep(real_texts), labels, targets)
        train_imgs = prep(train_real)
        references[name] = {
            "mask_accuracy": M.nanmean(mask_side["mask_accuracy"]),
            "mask_accuracy_32": M.nanmean(mask_side["mask_accuracy_32"]),
            "text_accuracy": M.nanmean(text_side["text_accuracy"]),
            **{f"{a}_accuracy": M.nanmean(text_side[f"{a}_hit"]) for a in scorer.names},
            **quality(train_imgs, scorer.features(train_imgs)),
        }
    notes.append(
        f"reference rows: mask accuracy on the real face each mask came from, text accuracy on the real face each "
        f"caption came from; their quality is that of {len(train_ids)} training faces against the validation set"
    )

    # 4. paired comparisons and outputs
    claims = []
    for a, b, metric in CLAIMS:
        if a in per_image and b in per_image:
            d = M.paired_difference(per_image[a][metric], per_image[b][metric], seed=seed)
            verdict = "higher" if d["low"] > 0 else "lower" if d["high"] < 0 else "no clear difference"
            claims.append({"method": a, "other": b, "metric": metric, **d, "verdict": verdict})
    settings = {
        "pairs": n,
        "seed": seed,
        "steps": cfg.sample.steps,
        "solver": cfg.sample.solver,
        "eta": cfg.sample.eta,
        "guidance": cfg.sample.guidance,
        "fid_images": fid_n,
        "inception": str(inception_path) if inception_path else None,
        "reference_images": len(val_all),
        "composable_weights": list(cfg.sample.weights) if cfg.sample.weights is not None else None,
    }
    metrics = {
        "settings": settings,
        "methods": results,
        "references": references,
        "claims": claims,
        "evaluator": scorer.meta.get("metrics", {}),
        "pairs": [
            {
                "mask_of": m,
                "caption_of": c,
                "caption": records[c]["caption"],
                "seed": seed + k,
                **{
                    meth: {key: _num(per_image[meth][key][k]) for key in _per_image_keys(scorer.names)}
                    for meth in per_image
                },
            }
            for k, (m, c) in enumerate(pairs)
        ],
        "notes": notes,
    }
    (partial / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    examples = min(cfg.evaluate.examples, n)
    _write_samples(partial, pairs, data, images_of, per_image, examples)
    _write_html(partial, metrics, pairs, data, list(per_image), scorer.names, examples)
    manifest = make_manifest(
        "evaluate",
        cfg_mod.to_dict(cfg),
        {"run": str(run.root.resolve()), "data": str(Path(data_dir).resolve())},
        {"metrics": "metrics.json", "report": "report.html", "samples": "samples.png"},
        time.perf_counter() - t0,
        settings=settings,
        notes=notes,
    )
    finish_stage(partial, out, manifest)
    return EvaluateReport(out, metrics, time.perf_counter() - t0, notes)


def _per_image_keys(names: list[str]) -> list[str]:
    return ["mask_accuracy", "mask_accuracy_32", "text_accuracy", *[f"{a}_hit" for a in names]]


def _num(x: torch.Tensor) -> float | None:
    v = float(x)
    return None if np.isnan(v) else round(v, 4)


@torch.no_grad()
def _reconstruct(vae, images: list[np.ndarray], batch: int = 64) -> list[np.ndarray]:
    return [
        to_uint8(r)
        for i in range(0, len(images), batch)
        for r in reconstruct(vae, _tensors(images[i : i + batch]))
    ]


def _write_samples(
    folder: Path,
    pairs: list[tuple[str, str]],
    data: PreparedDataset,
    images: dict[str, list[np.ndarray]],
    scores: dict[str, dict[str, torch.Tensor]],
    k: int,
) -> None:
    """``samples.png``: per pair, the mask, the caption's face, then each method's image and its parsed mask."""
    size = next(iter(images.values()))[0].shape[0]
    tiles: list[np.ndarray] = []
    for j in range(k):
        m, c = pairs[j]
        tiles += [colorize(resize_label(data.label(m), size)), _fit(data.image(c), size)]
        for meth in images:
            tiles += [images[meth][j], colorize(scores[meth]["parsed"][j].numpy())]
    meta = {
        "layout": "rows: mask, the caption's face, then per method its image and the parser's reading",
        "methods": list(images),
        "captions": [data.records()[c]["caption"] for _, c in pairs[:k]],
    }
    save_png(folder / "samples.png", grid(tiles, ncol=2 + 2 * len(images)), meta)
    for meth in images:  # small pictures for the HTML page
        for j in range(k):
            save_png(folder / "parsed" / meth / f"{j:03d}.png", colorize(scores[meth]["parsed"][j].numpy()))
    for j in range(k):
        m, c = pairs[j]
        save_png(folder / "conditions" / f"{j:03d}-mask.png", colorize(resize_label(data.label(m), size)))
        save_png(folder / "conditions" / f"{j:03d}-face.png", _fit(data.image(c), size))


def _fit(image: np.ndarray, size: int) -> np.ndarray:
    return image if image.shape[0] == size else np.asarray(resize_image(Image.fromarray(image), size))


COLUMNS = (
    ("mask_accuracy_32", "mask acc. (32×32)"),
    ("mask_accuracy", "mask acc. (full)"),
    ("text_accuracy", "text acc."),
)
SHORT = {"mask_accuracy_32": "mask 32", "mask_accuracy": "mask", "text_accuracy": "text"}


def table_rows(metrics: dict[str, Any], short: bool = False) -> tuple[list[str], list[list[str]]]:
    """Header and rows (methods, then references) of the results table, as text (``short``: for terminals)."""
    first = next(iter(metrics["methods"].values()))
    main = {c for c, _ in COLUMNS}
    names = [k[: -len("_accuracy")] for k in first if k.endswith("_accuracy") and k not in main]
    quality = [k for k in first if k.startswith(("fd_", "fid_"))]
    titles = [SHORT[c] if short else t for c, t in COLUMNS]
    header = ["", *titles, *names, *[_quality_title(q, short) for q in quality]]
    rows = []
    for group in ("methods", "references"):
        for name, rec in metrics[group].items():
            label = name if group == "methods" else f"reference: {name}"
            if short:
                label = {RELEASED: "collab. released", REAL: "ref: real", RECONSTRUCTED: "ref: VAE rec."}.get(
                    name, label
                )
            rows.append(
                [
                    label,
                    *[_fmt(rec.get(c)) for c, _ in COLUMNS],
                    *[_fmt(rec.get(f"{a}_accuracy")) for a in names],
                    *[_fmt(rec.get(q), 2) for q in quality],
                ]
            )
    return header, rows


def _quality_title(key: str, short: bool = False) -> str:
    if key == "fd_evaluator":
        return "FD (eval.)" if short else "FD (evaluator features)"
    return f"FID@{key[4:]}"


def _fmt(v: Any, digits: int = 3) -> str:
    return "–" if v is None or (isinstance(v, float) and np.isnan(v)) else f"{v:.{digits}f}"


def claim_lines(metrics: dict[str, Any]) -> list[str]:
    out = []
    for c in metrics["claims"]:
        what = c["metric"].replace("_", " ")
        out.append(
            f"{c['method']} vs {c['other']}, {what}: {c['mean']:+.3f} (95 % CI {c['low']:+.3f} … {c['high']:+.3f}, "
            f"{c['pairs']} pairs): {c['verdict']}"
        )
    return out


def _write_html(
    folder: Path,
    metrics: dict[str, Any],
    pairs: list[tuple[str, str]],
    data: PreparedDataset,
    methods: list[str],
    names: list[str],
    k: int,
) -> None:
    esc = html.escape
    header, rows = table_rows(metrics)
    table = "<table><tr>" + "".join(f"<th>{esc(h)}</th>" for h in header) + "</tr>"
    table += "".join("<tr>" + "".join(f"<td>{esc(v)}</td>" for v in r) + "</tr>" for r in rows) + "</table>"
    claims = "".join(f"<li>{esc(line)}</li>" for line in claim_lines(metrics))
    notes = "".join(f"<li>{esc(x)}</li>" for x in metrics["notes"])
    body = []
    for j in range(k):
        rec = metrics["pairs"][j]
        cells = (
            f'<td><img src="conditions/{j:03d}-mask.png" width="96" alt="mask"></td>'
            f'<td><img src="conditions/{j:03d}-face.png" width="96" alt="caption face"><br><small>'
            f"{esc(rec['caption'])}</small></td>"
        )
        for meth in methods:
            s = rec[meth]
            hits = " ".join(
                f"{a} {'✓' if s[f'{a}_hit'] == 1 else '✗'}" for a in names if s.get(f"{a}_hit") is not None
            )
            name = f"{j:03d}-{rec['seed']:06d}.png"
            cells += (
                f'<td><img src="{meth}/{name}" width="96" alt="{meth}">'
                f'<img src="parsed/{meth}/{j:03d}.png" width="96" alt="parsed"><br>'
                f"<small>mask {_fmt(s['mask_accuracy'])} · {esc(hits)}</small></td>"
            )
        body.append(f"<tr>{cells}</tr>")
    heads = "<th>mask</th><th>caption (its face)</th>" + "".join(f"<th>{esc(m)}</th>" for m in methods)
    s = metrics["settings"]
    ev_val = metrics.get("evaluator", {}).get("val") or {}
    ev_line = ", ".join(f"{key.replace('_', ' ')} {v:.3f}" for key, v in ev_val.items())
    (folder / "report.html").write_text(
        "<!doctype html><html><head><meta charset='utf-8'><title>cdiff evaluate</title><style>"
        "body{font-family:system-ui,sans-serif;margin:2em} img{image-rendering:pixelated}"
        "td,th{padding:4px 8px;text-align:center;border-bottom:1px solid #ddd} small{color:#555}</style></head><body>"
        f"<h1>Evaluation: {s['pairs']} validation pairs</h1><p>The mask of one validation face with the caption "
        f"of another; {s['solver']} with {s['steps']} steps, guidance {s['guidance']}, pair k uses seed "
        f"{s['seed']} + k for every method. Mask accuracy: the face parser's reading against the input mask; text "
        "accuracy: the attribute classifier against what the caption states; FD: Fréchet distance to the "
        "validation images in the classifier's feature space (not FID).</p>"
        f"{table}<h2>The paper's claims, pair by pair</h2><ul>{claims}</ul>"
        f"<p><small>evaluator on the real validation images: {esc(ev_line)}</small></p><ul>{notes}</ul>"
        f"<h2>Samples</h2><p>Each method: the image, and beside it what the parser reads.</p>"
        f"<table><tr>{heads}</tr>{''.join(body)}</table></body></html>\n"
    )


__all__ = ["EvaluateRequest", "choose_pairs", "claim_lines", "run", "table_rows"]
