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
   with ``save_intermediates``, each step's influence maps, x_t and predicted x_0 for ``visualize``.
"""

from __future__ import annotations

import dataclasses
import html
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import save_file

from cdiff import config as cfg_mod
from cdiff.config import Config
from cdiff.data.prepared import PreparedDataset
from cdiff.data.tokenizer import encode as tokenize
from cdiff.data.tokenizer import load_tokenizer
from cdiff.diffusion.sampling import StepInfo
from cdiff.errors import InputError
from cdiff.imageio import grid, save_png
from cdiff.models.collab import Collaboration, load_diffusers
from cdiff.models.unimodal import MODALITIES, TOKENIZER, UnimodalModel, load_unimodal
from cdiff.models.vae import load_vae
from cdiff.rundir import atomic_write_json, make_manifest, read_manifest, require_stage
from cdiff.stages import sampling_common as sc
from cdiff.stages.conditions import null_condition, read_condition_masks

METHODS = ("collaborative", "composable", "text", "mask")
ALL = "all"  # every method, side by side
PAIR_KEYS = {"mask", "text", "mask_of", "caption_of"}  # the last two: where the conditions came from
INTERMEDIATES = "intermediates"


@dataclass
class GenerateRequest:
    method: str = "collaborative"
    texts: list[str] = field(default_factory=list)
    masks: list[Path] = field(default_factory=list)
    pairs: list[dict[str, str]] = field(default_factory=list)  # from --from-file: {"text": ..., "mask": ...}
    num: int = 4  # images per condition
    seed: int = 0
    steps: int | None = None
    eta: float | None = None
    guidance: float | None = None  # None: the config's sample.guidance
    solver: str = "ddim"
    batch_size: int | None = None
    weights: list[float] | None = None  # composable only
    reweight: str | None = None  # collaborative only; None: the config's sample.reweight
    influence_every: int | None = None  # collaborative only; None: the config's sample.influence_every
    save_intermediates: bool = False
    val_conditions: int = 4  # used when no condition is given
    seed_per_row: bool = False  # each condition row its own seeds (seed + row * num + k), not the same ones


@dataclass
class GenerateResult:
    out: Path
    images: list[np.ndarray]
    conditions: list[dict[str, str]]
    seeds: list[int]
    wall_time_s: float
    notes: list[str]


def next_output_dir(root: Path) -> Path:
    """``root/000``, ``root/001``, ...: the first number not taken."""
    root.mkdir(parents=True, exist_ok=True)
    taken = [int(p.name) for p in root.iterdir() if p.name.isdigit()]
    return root / f"{max(taken, default=-1) + 1:03d}"


def read_pairs_file(path: Path) -> list[dict[str, str]]:
    """A JSONL file, one condition set per line: ``{"mask": "m.png", "text": "..."}``."""
    if not path.is_file():
        raise InputError(f"--from-file: {path} not found")
    pairs = []
    for n, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
        except json.JSONDecodeError:
            raise InputError(
                f'{path}:{n} is not JSON; each line must be like {{"mask": "m.png", "text": "..."}}'
            ) from None
        if not isinstance(rec, dict) or not set(rec) <= PAIR_KEYS or not set(rec) & set(MODALITIES):
            raise InputError(
                f"{path}:{n}: expected an object with the keys mask and/or text (and optionally mask_of, "
                f"caption_of), got {line.strip()[:80]}"
            )
        if "mask" in rec and not Path(rec["mask"]).is_absolute():
            rec["mask"] = str(path.parent.resolve() / rec["mask"])
        pairs.append({k: str(v) for k, v in rec.items() if k in MODALITIES})
    if not pairs:
        raise InputError(f"--from-file: {path} holds no condition lines")
    return pairs


def modalities_of(method: str, cfg: Config, run_dir: Path) -> list[str]:
    if method in MODALITIES:
        return [method]
    if method == "collaborative" and (run_dir / "diffuser" / "config.json").is_file():
        return list(json.loads((run_dir / "diffuser" / "config.json").read_text())["diffuser"]["modalities"])
    return list(cfg.diffuser.modalities)


def condition_rows(req: GenerateRequest, modalities: list[str], run_dir: Path) -> list[dict[str, str]]:
    """One dict per condition set: ``{"text": caption, "mask": path or "val:<id>"}``."""
    given = {"text": list(req.texts), "mask": [str(Path(p).resolve()) for p in req.masks]}
    extra = [m for m in MODALITIES if given[m] and m not in modalities]
    if extra:
        raise InputError(
            f"--method {req.method} does not use --{extra[0]}; it conditions on {', '.join(modalities)}"
        )
    if req.pairs:
        if any(given.values()):
            raise InputError("give conditions either with --from-file or with --text/--mask, not both")
        for n, rec in enumerate(req.pairs, 1):
            missing = [m for m in modalities if m not in rec]
            if missing:
                raise InputError(
                    f"--from-file line {n} lacks {', '.join(missing)} (--method {req.method} needs {', '.join(modalities)})"
                )
        return [{m: rec[m] for m in modalities} for rec in req.pairs]
    if not any(given[m] for m in modalities):
        return _val_rows(run_dir, modalities, req.val_conditions)
    missing = [m for m in modalities if not given[m]]
    if missing:
        raise InputError(
            f"--method {req.method} needs {' and '.join('--' + m for m in modalities)}; --{missing[0]} is missing"
        )
    n = max(len(given[m]) for m in modalities)
    for m in modalities:
        if len(given[m]) not in (1, n):
            raise InputError(
                f"{len(given[m])} --{m} for {n} of the other condition: give one, or as many (paired by position)"
            )
    return [{m: given[m][k if len(given[m]) > 1 else 0] for m in modalities} for k in range(n)]


def _val_rows(run_dir: Path, modalities: list[str], n: int) -> list[dict[str, str]]:
    """The run's example pairs (shipped demo runs), else its first validation pairs."""
    examples = run_dir / "examples" / "pairs.jsonl"
    if examples.is_file():
        return [{m: rec[m] for m in modalities} for rec in read_pairs_file(examples)[:n]]
    if not (run_dir / "data").is_dir():
        raise InputError(
            f"no conditions given and {run_dir} has no data to take validation pairs from; give --text/--mask"
        )
    data = PreparedDataset.open(run_dir / "data")
    ids = data.split("val")[:n]
    records = data.records()
    return [{m: records[i]["caption"] if m == "text" else f"val:{i}" for m in modalities} for i in ids]


def load_models(
    req: GenerateRequest, cfg: Config, run_dir: Path
) -> tuple[sc.UnimodalPredictor | sc.CollabPredictor, dict[str, UnimodalModel], dict[str, dict], list[str]]:
    """The predictor for ``req.method``, the experts, their records, and the modalities."""
    if req.method not in METHODS:
        raise InputError(f"unknown --method '{req.method}'; choose {', '.join(METHODS)} or {ALL}")
    modalities = modalities_of(req.method, cfg, run_dir)
    experts, metas = {}, {}
    for m in modalities:
        require_stage(
            run_dir / m, f"train-unimodal-{m}", f"cdiff train-unimodal --modality {m} --run {run_dir}"
        )
        experts[m], metas[m] = load_unimodal(run_dir / m)
    if req.guidance is None:
        req.guidance = cfg.sample.guidance
    if req.guidance != 1.0:
        plain = [m for m in modalities if metas[m]["unimodal"]["cond_dropout"] <= 0]
        if plain:
            raise InputError(
                f"guidance {req.guidance:g} needs models trained with condition dropout, and the {plain[0]} model "
                f"was trained without it (e.g. the released weights); pass --guidance 1, or the run's preset "
                f"(--config {cfg.name if cfg.name != 'demo' else 'celeba256/celeba512'})"
            )
    # sample with the schedule the models were trained with
    cfg.diffusion = cfg_mod.build(cfg_mod.DiffusionConfig, metas[modalities[0]]["diffusion"])
    if req.method in MODALITIES:
        if (
            req.weights is not None
            or req.reweight not in (None, "none")
            or req.influence_every not in (None, 1)
        ):
            raise InputError(
                "--weights, --reweight and --influence-every apply to the multi-modal methods only"
            )
        return sc.UnimodalPredictor(experts[req.method], req.guidance), experts, metas, modalities
    diffusers = None
    if req.method == "collaborative":
        require_stage(run_dir / "diffuser", "train-diffuser", f"cdiff train-diffuser --run {run_dir}")
        diffusers, dmeta = load_diffusers(run_dir / "diffuser")
        for m in modalities:
            sha = read_manifest(run_dir / m)["outputs"]["model.safetensors"]["sha256"]
            if dmeta.get("experts", {}).get(m, sha) != sha:
                raise InputError(
                    f"the dynamic diffusers in {run_dir / 'diffuser'} were trained with another {m} model; "
                    f"retrain them: cdiff train-diffuser --run {run_dir} --force"
                )
        if req.weights is not None:
            raise InputError(
                "--weights is for --method composable; the collaborative weights come from the diffusers"
            )
    else:
        if req.reweight not in (None, "none") or req.influence_every not in (None, 1):
            raise InputError("--reweight and --influence-every apply to --method collaborative only")
    collab = Collaboration(experts, diffusers, modalities)
    predictor = sc.CollabPredictor(
        collab,
        req.method,
        req.weights,
        req.reweight or cfg.sample.reweight,
        req.influence_every or cfg.sample.influence_every,
        req.guidance,
    )
    return predictor, experts, metas, modalities


def run(
    cfg: Config,
    req: GenerateRequest,
    run_dir: Path,
    out: Path | None,
    force: bool = False,
    outputs_root: Path | None = None,
) -> GenerateResult:
    """Generate; ``out`` defaults to a new numbered folder under ``outputs_root`` (default ``RUN/samples``)."""
    if req.method == ALL:
        return run_all(cfg, req, run_dir, out, force, outputs_root)
    t0 = time.perf_counter()
    if out is not None and out.exists() and any(out.iterdir()) and not force:
        raise InputError(f"{out} is not empty; choose another --out or pass --force to write into it")
    if req.num < 1:
        raise InputError("--num must be at least 1")
    if req.solver not in sc.SOLVERS:
        raise InputError(f"unknown --solver '{req.solver}'; choose {', '.join(sc.SOLVERS)}")
    # 1. models
    predictor, experts, metas, modalities = load_models(req, cfg, run_dir)
    vae, vae_meta = load_vae(run_dir / "vae")
    # 2. conditions, each repeated for num seeds
    notes: list[str] = []
    rows = condition_rows(req, modalities, run_dir)
    raw: dict[str, torch.Tensor] = {}
    nulls: dict[str, torch.Tensor] = {}
    for m in modalities:
        values = [r[m] for r in rows]
        if m == "text":
            tok = load_tokenizer(run_dir / "text" / TOKENIZER)
            max_length = metas[m]["unimodal"]["text_encoder"]["max_length"]
            raw[m] = tokenize(tok, values, max_length)
            nulls[m] = null_condition("text", raw[m][:1], tok, max_length)[0]
        else:
            raw[m] = read_condition_masks(values, run_dir, vae_meta["resolution"], notes)
            nulls[m] = null_condition("mask", raw[m][:1])[0]
    seeds = [req.seed + k for k in range(req.num)]
    seeds_all = seeds * len(rows)
    if req.seed_per_row:
        seeds_all = [req.seed + j * req.num + k for j in range(len(rows)) for k in range(req.num)]
    raw_all = {m: v.repeat_interleave(req.num, dim=0) for m, v in raw.items()}
    if isinstance(predictor, sc.UnimodalPredictor):
        predictor.null = nulls[req.method]
        raw_in: torch.Tensor | dict = raw_all[req.method]
    else:
        predictor.nulls = nulls
        raw_in = raw_all
    # 3. sample (with the intermediates when asked)
    recorder = sc.StepRecorder()
    images = sc.generate_images(
        predictor,
        vae,
        vae_meta,
        cfg,
        raw_in,
        seeds_all,
        req.steps,
        req.eta,
        req.solver,
        req.batch_size,
        callback=recorder if req.save_intermediates else None,
    )
    # 4. write
    out = out or next_output_dir(outputs_root or run_dir / "samples")
    out.mkdir(parents=True, exist_ok=True)
    settings: dict[str, Any] = {
        "method": req.method,
        "modalities": modalities,
        "steps": req.steps or cfg.sample.steps,
        "eta": cfg.sample.eta if req.eta is None else req.eta,
        "guidance": req.guidance,
        "solver": req.solver,
    }
    if isinstance(predictor, sc.CollabPredictor):
        if req.method == "composable":
            settings["weights"] = predictor.fixed.flatten().tolist()
        else:
            settings.update(reweight=predictor.reweight, influence_every=predictor.every)
    files = []
    for k, (im, seed) in enumerate(zip(images, seeds_all, strict=True)):
        j = k // req.num
        name = f"{seed:06d}.png" if len(rows) == 1 else f"{j:03d}-{seed:06d}.png"
        save_png(out / name, im, {"conditions": rows[j], "seed": str(seed), "settings": settings})
        files.append({"file": name, "conditions": rows[j], "seed": seed, "row": j})
    tiles: list[np.ndarray] = []
    size = images[0].shape[0]
    for j in range(len(rows)):
        if "mask" in raw:
            tiles.append(sc.condition_tile(raw["mask"][j].numpy(), size))
        tiles += images[j * req.num : (j + 1) * req.num]
    ncol = req.num + (1 if "mask" in raw else 0)
    layout = "rows: the mask, then one image per seed" if "mask" in raw else "rows: one image per seed"
    save_png(out / "grid.png", grid(tiles, ncol=ncol), {"rows": rows, "layout": layout, "settings": settings})
    if req.save_intermediates:
        save_intermediates(out, recorder.steps, files)
    wall = time.perf_counter() - t0
    atomic_write_json(
        out / "manifest.json",
        make_manifest(
            "generate",
            cfg_mod.to_dict(cfg),
            {
                "run": str(Path(run_dir).resolve()),
                **{m: str(Path(run_dir / m).resolve()) for m in modalities},
            },
            {"images": files, "intermediates": INTERMEDIATES if req.save_intermediates else None},
            wall,
            settings=settings,
            notes=notes,
        ),
    )
    return GenerateResult(out, images, rows, seeds_all, wall, notes)


def save_intermediates(out: Path, steps_taken: dict[int, list[StepInfo]], files: list[dict]) -> None:
    """``intermediates/<image>.safetensors``: per step, x_t, predicted x_0 and the applied weights."""
    folder = out / INTERMEDIATES
    folder.mkdir(exist_ok=True)
    for first, infos in steps_taken.items():
        B = infos[0].x_t.shape[0]
        for b in range(B):
            rec = files[first + b]
            tensors = {
                "x_t": torch.stack([i.x_t[b] for i in infos]).half().contiguous(),
                "pred_x0": torch.stack([i.pred_x0[b] for i in infos]).half().contiguous(),
                "t": torch.tensor([i.t for i in infos], dtype=torch.int32),
            }
            if "weights" in infos[0].extras:  # (steps, M, h, w)
                tensors["weights"] = (
                    torch.stack([i.extras["weights"][:, b, 0] for i in infos]).half().contiguous()
                )
            stem = Path(rec["file"]).stem
            tmp = folder / f".{stem}.tmp"
            save_file(tensors, str(tmp), metadata={"file": rec["file"]})
            tmp.replace(folder / f"{stem}.safetensors")


def run_all(
    cfg: Config, req: GenerateRequest, run_dir: Path, out: Path | None, force: bool, outputs_root: Path | None
) -> GenerateResult:
    """Every method for the same conditions and seeds: ``OUT/<method>/``, ``compare.png`` and ``compare.html``."""
    t0 = time.perf_counter()
    if out is not None and out.exists() and any(out.iterdir()) and not force:
        raise InputError(f"{out} is not empty; choose another --out or pass --force to write into it")
    if req.weights is not None or req.reweight not in (None, "none") or req.influence_every not in (None, 1):
        raise InputError(
            "--method all compares the methods at their defaults; drop --weights/--reweight/--influence-every"
        )
    out = out or next_output_dir(outputs_root or run_dir / "samples")
    methods = [
        m for m in METHODS if m != "collaborative" or (run_dir / "diffuser" / "manifest.json").is_file()
    ]
    both = modalities_of("composable", cfg, run_dir)
    rows = condition_rows(dataclasses.replace(req, method="composable"), both, run_dir)
    results: dict[str, GenerateResult] = {}
    notes: list[str] = []
    for method in methods:
        keep = [method] if method in MODALITIES else both
        sub = dataclasses.replace(
            req,
            method=method,
            pairs=[{m: r[m] for m in keep} for r in rows],
            texts=[],
            masks=[],
            save_intermediates=req.save_intermediates and method == "collaborative",
        )
        results[method] = run(cfg, sub, run_dir, out / method, force=force)
        notes += [n for n in results[method].notes if n not in notes]
    first = results[methods[0]]
    size = first.images[0].shape[0]
    labels = read_condition_masks([r["mask"] for r in rows], run_dir, size, [])
    tiles: list[np.ndarray] = []
    for k in range(len(first.images)):
        tiles.append(sc.condition_tile(labels[k // req.num].numpy(), size))
        tiles += [results[m].images[k] for m in methods]
    layout = {
        "columns": ["mask", *methods],
        "rows": [{**rows[k // req.num], "seed": first.seeds[k]} for k in range(len(first.images))],
    }
    save_png(out / "compare.png", grid(tiles, ncol=1 + len(methods)), {"layout": layout})
    esc = html.escape
    body = []
    for k in range(len(first.images)):
        j = k // req.num
        name = f"{first.seeds[k]:06d}.png" if len(rows) == 1 else f"{j:03d}-{first.seeds[k]:06d}.png"
        cells = f'<td><img src="masks/{j:03d}.png" width="128" alt="mask"></td>'
        cells += "".join(f'<td><img src="{m}/{name}" width="128" alt="{m}"></td>' for m in methods)
        body.append(
            f"<tr><td>{esc(rows[j].get('text', ''))}<br><small>seed {first.seeds[k]}</small></td>{cells}</tr>"
        )
    head = "<th>mask</th>" + "".join(f"<th>{esc(m)}</th>" for m in methods)
    for j in range(len(rows)):  # the masks as pictures, for the page
        save_png(
            out / "masks" / f"{j:03d}.png",
            sc.condition_tile(labels[j].numpy(), size),
            {"mask": rows[j]["mask"]},
        )
    (out / "compare.html").write_text(
        "<!doctype html><html><head><meta charset='utf-8'><title>cdiff: methods side by side</title>"
        "<style>body{font-family:system-ui,sans-serif;margin:2em} img{image-rendering:pixelated}"
        "td,th{padding:4px;text-align:center;border-bottom:1px solid #ddd}</style></head><body>"
        "<h1>The same conditions and seeds, each method</h1><p>collaborative: the dynamic diffusers weight the "
        "models per pixel and step; composable: fixed equal weights (the paper's baseline); text / mask: one "
        "model alone.</p>"
        f"<table><tr><th>caption</th>{head}</tr>{''.join(body)}</table></body></html>\n"
    )
    return GenerateResult(out, first.images, rows, first.seeds, time.perf_counter() - t0, notes)
