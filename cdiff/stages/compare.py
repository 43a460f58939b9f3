"""``generate --method all``: every method for the same conditions and seeds, side by side.

Writes ``OUT/<method>/`` (each a whole ``generate`` output), ``compare.png`` (a row per image: the
conditions' pictures, then each method) and ``compare.html``, all in ``OUT.partial/`` first and
moved into place at the end.
"""

from __future__ import annotations

import dataclasses
import html
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from cdiff import modalities
from cdiff.config import Config
from cdiff.errors import InputError
from cdiff.imageio import grid, save_png
from cdiff.rundir import fresh_output
from cdiff.stages import generate as gen
from cdiff.stages.run import Run, set_name


def methods_for(run: Run, mods: list[str], strict: bool = True) -> list[str]:
    """Every method the run has models for, over the modalities ``mods``: collaborative (with their
    diffuser set), composable, ``collaborative-<set>`` for each smaller set of the run within ``mods``
    (the pairs of a three-way run), and each uni-modal model. ``strict``: a missing set for ``mods`` is a
    one-line error naming the command that trains it (else collaborative is left out)."""
    sets = [v for v in run.diffuser_sets().values() if set(v) <= set(mods)]
    full = [v for v in sets if sorted(v) == sorted(mods)]
    if strict and not full:
        run.require(run.diffuser_part(mods))
    smaller = [gen.SET_METHOD + set_name(v) for v in sets if len(v) < len(mods)]
    return [
        *(["collaborative"] if full else []),
        "composable",
        *sorted(smaller),
        *[m for m in modalities.names() if m in mods and run.has(m)],
    ]


def sample_all(
    cfg: Config, req: gen.GenerateRequest, run: Run, progress: Callable[[int, int], None] | None = None
) -> dict[str, gen.Generation]:
    """One :class:`~cdiff.stages.generate.Generation` per method, the same conditions and seeds for all."""
    s = cfg.sample
    if s.weights is not None or s.reweight != "none" or s.influence_every != 1:
        raise InputError(
            "--method all compares the methods at their defaults; drop --weights/--reweight/--influence-every"
        )
    lead = dataclasses.replace(req, method="composable")
    every = gen.modalities_of("composable", cfg, run, gen.chosen_modalities(lead))
    rows = gen.condition_rows(lead, every, run)
    out: dict[str, gen.Generation] = {}
    for method in methods_for(run, every):
        keep = [method] if method not in gen.MULTI else every
        if method.startswith(gen.SET_METHOD):
            keep = method.removeprefix(gen.SET_METHOD).split("-")
        sub = dataclasses.replace(
            req,
            method=method,
            modalities=every if method in gen.MULTI else None,
            pairs=[{m: r[m] for m in keep} for r in rows],
            conditions={},
            save_intermediates=req.save_intermediates and gen.base_method(method) == "collaborative",
        )
        out[method] = gen.sample(dataclasses.replace(cfg), sub, run, progress)
    return out


def write_all(gens: dict[str, gen.Generation], out: Path) -> gen.GenerateResult:
    """Each method into ``out/<method>/``, then ``compare.png``, the condition pictures and ``compare.html``
    (through ``out.partial/``: see :func:`~cdiff.rundir.fresh_output`)."""
    need = 2 * sum(gen.estimated_bytes(g) for g in gens.values())  # the methods, and the page's pictures
    with fresh_output(out, need_bytes=need, what="the images") as partial:
        return _write_all(gens, partial, out)


def _write_all(gens: dict[str, gen.Generation], folder: Path, out: Path) -> gen.GenerateResult:
    """What :func:`write_all` writes, into ``folder`` (to be moved to ``out``)."""
    t0 = time.perf_counter()
    results = {m: gen.write_files(g, folder / m, out / m) for m, g in gens.items()}
    notes = list(dict.fromkeys(n for g in gens.values() for n in g.notes))
    names = list(gens)
    first = gens[names[0]]
    size = first.images[0].shape[0]
    both = max((g.modalities for g in gens.values()), key=len)
    pictured = [m for m in both if modalities.get(m).pictured]
    rows = results[names[0]].conditions
    tiles: list[np.ndarray] = []
    for k in range(len(first.images)):
        tiles += [modalities.get(m).tile(first.raw[m][k // first.num], size) for m in pictured]
        tiles += [gens[m].images[k] for m in names]
    layout = {
        "columns": [*pictured, *names],
        "rows": [{**rows[k // first.num], "seed": first.seeds[k]} for k in range(len(first.images))],
    }
    save_png(folder / "compare.png", grid(tiles, ncol=len(pictured) + len(names)), {"layout": layout})
    for j, row in enumerate(rows):  # the conditions as pictures, for the page
        for m in pictured:
            tile = modalities.get(m).tile(first.raw[m][j], size)
            save_png(folder / modalities.get(m).plural / f"{j:03d}.png", tile, {m: row[m]})
    (folder / "compare.html").write_text(_page(first, rows, names, pictured))
    wall = sum(r.wall_time_s for r in results.values()) + time.perf_counter() - t0
    return gen.GenerateResult(out, first.images, rows, first.seeds, wall, notes)


def _page(first: gen.Generation, rows: list[dict], names: list[str], pictured: list[str]) -> str:
    esc = html.escape
    body = []
    for k in range(len(first.images)):
        j, name = k // first.num, gen.file_name(first, k)
        captions = [c for m, v in rows[j].items() if (c := modalities.get(m).caption(v)) is not None]
        cells = "".join(
            f'<td><img src="{modalities.get(m).plural}/{j:03d}.png" width="128" alt="{m}"></td>'
            for m in pictured
        )
        cells += "".join(f'<td><img src="{m}/{name}" width="128" alt="{m}"></td>' for m in names)
        body.append(
            f"<tr><td>{esc(' '.join(captions))}<br><small>seed {first.seeds[k]}</small></td>{cells}</tr>"
        )
    head = "".join(f"<th>{esc(m)}</th>" for m in [*pictured, *names])
    return (
        "<!doctype html><html><head><meta charset='utf-8'><title>cdiff: methods side by side</title>"
        "<style>body{font-family:system-ui,sans-serif;margin:2em} img{image-rendering:pixelated}"
        "td,th{padding:4px;text-align:center;border-bottom:1px solid #ddd}</style></head><body>"
        "<h1>The same conditions and seeds, each method</h1><p>collaborative: the dynamic diffusers weight the "
        "models per pixel and step; composable: fixed equal weights (the paper's baseline); the others: one "
        "model alone.</p>"
        f"<table><tr><th>caption</th>{head}</tr>{''.join(body)}</table></body></html>\n"
    )
