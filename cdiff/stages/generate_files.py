"""The files of a ``generate`` output folder, and how they are written.

One PNG per image (its conditions and settings in the PNG metadata), ``grid.png``, with
``save_intermediates`` each image's steps in ``intermediates/``, and ``manifest.json`` last; all
written into ``<out>.partial/`` and moved into place at the end, so a failure (a full disk,
Ctrl-C) leaves no half-written folder. ``--out`` is locked from the first check
(:func:`check_out`); without it a numbered folder is claimed (:func:`~cdiff.outputs.next_output_dir`).
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from safetensors.torch import save_file

from cdiff import config as cfg_mod
from cdiff import modalities
from cdiff.diffusion.sampling import StepInfo
from cdiff.imageio import grid, save_png
from cdiff.rundir import atomic_write_json, check_output, fresh_output, make_manifest

if TYPE_CHECKING:
    from cdiff.stages.generate import Generation

INTERMEDIATES = "intermediates"


@dataclass
class GenerateResult:
    out: Path
    images: list[np.ndarray]
    conditions: list[dict[str, str]]
    seeds: list[int]
    wall_time_s: float
    notes: list[str]


def file_name(gen: Generation, k: int) -> str:
    return f"{gen.seeds[k]:06d}.png" if len(gen.rows) == 1 else f"{k // gen.num:03d}-{gen.seeds[k]:06d}.png"


def estimated_bytes(gen: Generation) -> int:
    """About what :func:`write` puts on disk: every image twice as raw pixels (the PNG and its grid
    tile; PNGs are smaller), and the kept intermediates (float16 x_t, x_0 and weights per step)."""
    pixels = 2 * sum(im.nbytes for im in gen.images)
    steps = gen.steps or {}
    kept = sum(len(infos) * infos[0].x_t.numel() * 2 * 3 for infos in steps.values() if infos)
    return pixels + kept + 2**20


def write(gen: Generation, out: Path) -> GenerateResult:
    """Save a generation into ``out`` (refused finished work first: :func:`check_out`): one PNG per
    image (conditions and settings in its metadata), ``grid.png``, the intermediates when kept and
    ``manifest.json`` last, written in ``<out>.partial/`` and moved into place at the end (removed
    if anything fails: no half-written folder is left)."""
    with fresh_output(out, need_bytes=estimated_bytes(gen), what="the images") as partial:
        return write_files(gen, partial, out)


def write_files(gen: Generation, folder: Path, final: Path) -> GenerateResult:
    """What :func:`write` writes, into ``folder``, whose files will be at ``final`` (the records say so)."""
    t0 = time.perf_counter()
    folder.mkdir(parents=True, exist_ok=True)
    rows = [
        {
            m: _moved(modalities.get(m).persist(r[m], gen.raw[m][j], folder, f"{j:03d}-{m}"), folder, final)
            for m in gen.modalities
        }
        for j, r in enumerate(gen.rows)
    ]
    files = []
    for k, (im, seed) in enumerate(zip(gen.images, gen.seeds, strict=True)):
        j, name = k // gen.num, file_name(gen, k)
        save_png(folder / name, im, {"conditions": rows[j], "seed": str(seed), "settings": gen.settings})
        files.append({"file": name, "conditions": rows[j], "seed": seed, "row": j})
    tiles: list[np.ndarray] = []
    size = gen.images[0].shape[0]
    pictured = [m for m in gen.modalities if modalities.get(m).pictured]
    for j in range(len(rows)):
        tiles += [modalities.get(m).tile(gen.raw[m][j], size) for m in pictured]
        tiles += gen.images[j * gen.num : (j + 1) * gen.num]
    layout = (
        f"rows: the {', the '.join(pictured)}, then one image per seed"
        if pictured
        else "rows: one image per seed"
    )
    meta = {"rows": rows, "layout": layout, "settings": gen.settings}
    save_png(folder / "grid.png", grid(tiles, ncol=gen.num + len(pictured)), meta)
    if gen.steps is not None:
        save_intermediates(folder, gen.steps, files)
    inputs = {
        "run": str(gen.run_root.resolve()),
        **{m: str((gen.run_root / m).resolve()) for m in gen.modalities},
    }
    outputs = {"images": files, "intermediates": INTERMEDIATES if gen.steps is not None else None}
    wall = gen.wall_time_s + time.perf_counter() - t0
    manifest = make_manifest(
        "generate", cfg_mod.to_dict(gen.cfg), inputs, outputs, wall, settings=gen.settings, notes=gen.notes
    )
    atomic_write_json(folder / "manifest.json", manifest)
    return GenerateResult(final, gen.images, rows, gen.seeds, wall, gen.notes)


def _moved(record: Any, folder: Path, final: Path) -> Any:
    """A condition's record, a path to a file written in ``folder`` made the path it has in ``final``."""
    inside = str(folder.resolve())
    if isinstance(record, str) and (record == inside or record.startswith(inside + os.sep)):
        return str(final.resolve()) + record[len(inside) :]
    return record


def check_out(out: Path | None, force: bool) -> None:
    """Before any set-up: lock ``--out`` for this run, and refuse it (one line) when it cannot be written,
    holds files cdiff did not write, or, without ``force``, finished work (see
    :func:`~cdiff.rundir.check_output`). No ``--out``: a new numbered folder is claimed when writing."""
    if out is not None:
        check_output(out, force, "--out")


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
