"""Stage ``visualize``: why a collaborative sample looks as it does (seed §C.2, Figures A4/A5).

From a ``generate --save-intermediates`` folder, for each image:
- per-modality influence grids over the sampling steps (one tile per step, t = 981 ... 1, left to
  right and top to bottom; colour = the weight actually applied to that modality's noise
  prediction at each latent pixel, with a legend);
- the decoded x_t and predicted x_0 at every step;
- the mask overlaid on the result;
- an animated GIF of the steps;
and one ``index.html`` that puts them together.
"""

from __future__ import annotations

import html
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from safetensors.torch import load_file

from cdiff import modalities as registry
from cdiff.data.datasets import to_uint8
from cdiff.data.prepared import PreparedDataset
from cdiff.errors import InputError
from cdiff.imageio import save_png
from cdiff.locks import release
from cdiff.modalities import Context
from cdiff.models import store
from cdiff.rundir import atomic_write_json, check_output, fresh_output
from cdiff.viz import colorbar, colormap, label, overlay, save_gif, tile_grid, titled, upscale

INTERMEDIATES = "intermediates"
COLUMNS = 10


@dataclass
class VisualizeReport:
    out: Path
    images: list[str]
    wall_time_s: float


def _read_generation(folder: Path) -> dict:
    manifest_path = folder / "manifest.json"
    if not manifest_path.is_file():
        raise InputError(
            f"{folder} is not a generate output (no manifest.json); give a folder written by cdiff generate"
        )
    try:
        manifest = json.loads(manifest_path.read_text())
    except json.JSONDecodeError:
        raise InputError(f"{manifest_path} is corrupt (not JSON); generate again") from None
    if manifest.get("stage") not in ("generate", "edit"):
        raise InputError(f"{folder} holds '{manifest.get('stage')}' output, not a generation")
    if not (folder / INTERMEDIATES).is_dir():
        raise InputError(
            f"{folder} has no intermediates; generate again with --save-intermediates to visualise the steps"
        )
    return manifest


@torch.no_grad()
def _decode(vae, latents: torch.Tensor, scale: float, batch: int = 16) -> list[np.ndarray]:
    out = []
    for i in range(0, len(latents), batch):
        z = (latents[i : i + batch].float() / scale).to(next(vae.parameters()).device)
        x = vae.decode(z).sample.cpu()
        out += [to_uint8(im) for im in x]
    return out


def run(
    gen_dir: Path,
    out: Path | None = None,
    *,
    images: list[str] | None = None,
    run_dir: Path | None = None,
    force: bool = False,
    progress=None,
    device: torch.device | str = "cpu",
) -> VisualizeReport:
    t0 = time.perf_counter()
    # 1. the generation, the run that made it, the images chosen
    gen_dir = Path(gen_dir)
    manifest = _read_generation(gen_dir)
    settings = manifest.get("settings", {})
    run_dir = Path(run_dir or manifest["inputs"]["run"])
    if not (run_dir / "vae").is_dir():
        raise InputError(
            f"the run {run_dir} (where the VAE is) does not exist; pass --run to say where it is now"
        )
    out = Path(out or gen_dir / "visualize")
    check_output(out, force, "--out")  # locked from here; finished work refused without --force
    try:
        records = _chosen(manifest["outputs"]["images"], images, gen_dir)
        vae, vae_meta = store.load(run_dir / "vae", "vae", device)
        modalities = settings.get("modalities", [])

        # 2. each image's pictures in its own folder (in OUT.partial, moved into place at the end)
        with fresh_output(out) as partial:
            sections = []
            for n, rec in enumerate(records):
                sections.append(_visualize_one(partial, rec, gen_dir, run_dir, vae, vae_meta, modalities))
                if progress is not None:
                    progress(n + 1, len(records))

            # 3. the page and the manifest
            _write_html(partial / "index.html", gen_dir, settings, sections)
            stems = [s["stem"] for s in sections]
            record = {"stage": "visualize", "generation": str(gen_dir), "images": stems, "settings": settings}
            atomic_write_json(partial / "manifest.json", record)
    finally:
        release(out)
    return VisualizeReport(out, stems, time.perf_counter() - t0)


def _chosen(records: list[dict], images: list[str] | None, gen_dir: Path) -> list[dict]:
    """The records of the images asked for (by file name or stem; all by default) that have intermediates."""
    if images:
        known = {r["file"] for r in records} | {Path(r["file"]).stem for r in records}
        unknown = [i for i in images if i not in known]
        if unknown:
            raise InputError(
                f"--image {unknown[0]} is not in {gen_dir}; choose from {', '.join(sorted(r['file'] for r in records))}"
            )
        records = [r for r in records if r["file"] in images or Path(r["file"]).stem in images]
    records = [
        r for r in records if (gen_dir / INTERMEDIATES / f"{Path(r['file']).stem}.safetensors").is_file()
    ]
    if not records:
        raise InputError(f"no intermediates for the chosen images in {gen_dir / INTERMEDIATES}")
    return records


def _visualize_one(partial, rec, gen_dir, run_dir, vae, vae_meta, modalities) -> dict:
    """The pictures of one image in ``partial/<stem>/``; returns its section of the page."""
    stem = Path(rec["file"]).stem
    inter = load_file(str(gen_dir / INTERMEDIATES / f"{stem}.safetensors"))
    scale, res = vae_meta["scale_factor"], vae_meta["resolution"]
    tile = min(res, 128)
    folder = partial / stem
    folder.mkdir(parents=True)
    ts = inter["t"].tolist()
    files: dict[str, str] = {}  # what → file name, in the page's order
    maps = _influence_maps(folder, inter.get("weights"), ts, modalities, tile, files)
    summary = _weight_summary(folder, inter.get("weights"), ts, modalities)
    xt, x0 = _decoded_steps(folder, inter, vae, scale, ts, tile, files)
    with Image.open(gen_dir / rec["file"]) as im:
        result = np.asarray(im.convert("RGB"))
    conds = rec.get("conditions", {})
    _overlays(folder, result, conds, run_dir, res, files)
    _animation(folder, xt, x0, maps, result, ts, tile, files)
    return {
        "stem": stem,
        "file": rec["file"],
        "conditions": conds,
        "seed": rec.get("seed"),
        "files": files,
        "summary": summary,
    }


def _weight_summary(folder, weights, ts, modalities, rows: int = 6) -> dict[str, Any]:
    """``weights.json``: each modality's mean and maximum weight at every step; returns the page's excerpt
    (``rows`` steps from the first to the last)."""
    if weights is None:
        return {}
    w = weights.float()
    stats = {
        m: {
            "mean": [round(float(v), 4) for v in w[:, k].mean(dim=(1, 2))],
            "max": [round(float(v), 4) for v in w[:, k].amax(dim=(1, 2))],
        }
        for k, m in enumerate(modalities)
    }
    atomic_write_json(folder / "weights.json", {"t": ts, **stats})
    picks = sorted({round(i * (len(ts) - 1) / max(rows - 1, 1)) for i in range(rows)})
    return {"t": [ts[i] for i in picks], **{m: [v["mean"][i] for i in picks] for m, v in stats.items()}}


def _influence_maps(folder, weights, ts, modalities, tile, files) -> dict[str, list[np.ndarray]]:
    """One grid per modality, a tile per step; returns the tiles (none without weights)."""
    maps: dict[str, list[np.ndarray]] = {}
    if weights is None:
        return maps
    for k, m in enumerate(modalities):
        tiles = [upscale(colormap(weights[s, k].float().numpy()), tile) for s in range(len(ts))]
        maps[m] = tiles
        labelled = [label(t_img, f"t={t}") for t_img, t in zip(tiles, ts, strict=True)]
        body = tile_grid(labelled, COLUMNS)
        picture = titled(
            body,
            f"influence of the {m} model (weight applied per latent pixel), t = {ts[0]} ... {ts[-1]}",
            colorbar(min(body.shape[0], 200), f"w_{m}"),
        )
        name = f"influence_{m}.png"
        save_png(folder / name, picture, {"modality": m, "timesteps": ts})
        files[f"influence of the {m} model"] = name
    return maps


def _decoded_steps(folder, inter, vae, scale, ts, tile, files) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """The decoded x_t and predicted x_0 at every step, each as a grid; returns both frame lists."""
    xt = _decode(vae, inter["x_t"], scale)
    x0 = _decode(vae, inter["pred_x0"], scale)
    for key, frames, what in (
        ("x_t", xt, "noisy latent x_t, decoded"),
        ("pred_x0", x0, "predicted x_0, decoded"),
    ):
        body = tile_grid(
            [label(upscale(f, tile), f"t={t}") for f, t in zip(frames, ts, strict=True)], COLUMNS
        )
        save_png(folder / f"{key}.png", titled(body, f"{what}, t = {ts[0]} ... {ts[-1]}"), {"timesteps": ts})
        files[what] = f"{key}.png"
    return xt, x0


def _overlays(folder, result, conds, run_dir, res, files) -> None:
    """Each pictured condition (the mask), the result, and the condition over the result."""
    pictured = [m for m in conds if m in registry.names() and registry.get(m).pictured]
    for n, m in enumerate(pictured):
        data = PreparedDataset.open(run_dir / "data") if (run_dir / "data").is_dir() else None
        kind = registry.get(m)
        colours = kind.tile(kind.read([conds[m]], Context(res, data=data), [])[0], res)
        picture = tile_grid([colours, result, overlay(result, colours)], 3)
        name = "overlay.png" if n == 0 else f"overlay_{m}.png"
        save_png(folder / name, titled(picture, f"{m} | result | {m} over the result"), {})
        files[f"{m} over the result"] = name


def _animation(folder, xt, x0, maps, result, ts, tile, files) -> None:
    """x_t | predicted x_0 | influence maps, one frame per step, then the result."""
    frames = []
    for s, t in enumerate(ts):
        parts = [label(upscale(xt[s], tile), f"x_t t={t}"), label(upscale(x0[s], tile), "x_0")]
        parts += [label(maps[m][s], f"w_{m}") for m in maps]
        frames.append(tile_grid(parts, len(parts)))
    blank = np.full((tile, tile, 3), 255, np.uint8)
    frames.append(
        tile_grid([label(upscale(result, tile), "result")] + [blank] * (len(parts) - 1), len(parts))
    )
    save_gif(folder / "animation.gif", frames)
    files["animation"] = "animation.gif"


def _summary_table(summary: dict[str, Any], stem: str) -> str:
    """Each modality's mean weight at a few steps (all steps, and the maxima, in ``weights.json``)."""
    if not summary:
        return ""
    esc = html.escape
    head = "".join(f"<th>t = {t}</th>" for t in summary["t"])
    rows = "".join(
        f"<tr><th>{esc(m)}</th>{''.join(f'<td>{v:.2f}</td>' for v in means)}</tr>"
        for m, means in summary.items()
        if m != "t"
    )
    link = f'<a href="{esc(stem)}/weights.json">every step, with maxima</a>'
    return (
        f"<table><caption>mean weight per modality ({link})</caption><tr><th></th>{head}</tr>{rows}</table>"
    )


def _write_html(path: Path, gen_dir: Path, settings: dict, sections: list[dict]) -> None:
    esc = html.escape
    rows = "".join(f"<tr><th>{esc(str(k))}</th><td>{esc(str(v))}</td></tr>" for k, v in settings.items())
    body = []
    for s in sections:
        conds = "".join(f"<li><b>{esc(k)}</b>: {esc(str(v))}</li>" for k, v in s["conditions"].items())
        figs = "".join(
            f'<figure><img src="{esc(s["stem"])}/{esc(f)}" alt="{esc(what)}"><figcaption>{esc(what)}</figcaption></figure>'
            for what, f in s["files"].items()
        )
        body.append(
            f"<section><h2>{esc(s['file'])} (seed {esc(str(s['seed']))})</h2>"
            f'<img class="result" src="../{esc(s["file"])}" alt="result"><ul>{conds}</ul>'
            f"{_summary_table(s['summary'], s['stem'])}{figs}</section>"
        )
    page = f"""<!doctype html>
<html><head><meta charset="utf-8"><title>cdiff: {esc(str(gen_dir))}</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 2em; max-width: 1400px; }}
img {{ image-rendering: pixelated; max-width: 100%; }}
img.result {{ width: 192px; float: right; margin-left: 1em; }}
figure {{ margin: 1em 0; }} figcaption {{ color: #555; }}
table {{ border-collapse: collapse; }} th, td {{ border: 1px solid #ccc; padding: 2px 8px; text-align: left; }}
section {{ border-top: 1px solid #ddd; padding-top: 1em; clear: both; }}
</style></head><body>
<h1>How these faces were made</h1>
<p>Generation <code>{esc(str(gen_dir))}</code>. Each influence tile is one sampling step (t = 981 … 1, left to right, top to
bottom). Its colour is the weight that modality's noise prediction received at each latent pixel (the weights of
all modalities sum to 1 at every pixel): where the mask model is bright, the layout comes from the mask; where the
text model is bright, from the caption. The x_t and x_0 grids decode the noisy latent and the model's guess of the
clean one at each step.</p>
<table>{rows}</table>
{"".join(body)}
</body></html>
"""
    path.write_text(page)
