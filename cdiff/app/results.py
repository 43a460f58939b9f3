"""A finished generation as the Generate tab's outputs: images, influence maps, plot, overlay, files.

The images are sent twice: as arrays the moment sampling ends (exact pixels, shown at once), then
as the PNG files with their metadata once written, with the downloads and the details.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import numpy as np
import torch

from cdiff.app import views
from cdiff.app.page import notes_markdown
from cdiff.app.studio import Result
from cdiff.data.masks import resize_label
from cdiff.stages.generate import Generation, file_name

SOLVER_NAMES = {"dpm": "DPM-Solver++", "ddim": "DDIM"}


@dataclasses.dataclass
class Shown:
    """The pictures of a finished generation, made once and sent with the images, then with the files
    (plain values throughout: a ``gr.skip()`` costs Gradio a component rebuild per output)."""

    result: Result
    status: str
    influence: np.ndarray | None
    plot: np.ndarray | None
    overlay: np.ndarray
    notes: str
    maps: dict | None
    means: dict | None

    def outputs(self, files: Any, details: Any, saved: Path | None = None) -> tuple:
        gens = self.result.generations
        if saved is None:  # the arrays (exact pixels) at once; the PNG files with metadata once written
            images = [(g.images[0], _caption(m, g)) for m, g in gens.items()]
        else:
            images = [(str(_image_path(saved, m, g, len(gens))), _caption(m, g)) for m, g in gens.items()]
        steps = len(self.maps["ts"]) if self.maps else self.result.settings.steps
        s = self.result.settings
        return (
            next(iter(gens.values())).images[0],  # the preview box ends on the result
            self.status,
            images,
            self.influence,
            steps,
            self.plot,
            self.overlay,
            files,
            self.notes,
            details,
            s.seed,
            self.maps,
        )


def shown(r: Result, notes: list[str]) -> Shown:
    notes = notes + [n for n in r.result.notes if not n.startswith("mask <array")]  # the canvas is resized
    maps, influence, plot, means = _influence_views(r.generations)
    result = next(iter(r.generations.values())).images[0]
    label = r.label if r.label.shape == result.shape[:2] else resize_label(r.label, result.shape[0])
    s = r.settings
    status = (
        f"done in {r.wall_s:.1f} s: {s.method}, {SOLVER_NAMES.get(s.solver, s.solver)} {s.steps} steps, "
        f"guidance {s.guidance:g}, seed {s.seed}"
    )
    overlay = views.mask_overlay(result, label)
    return Shown(r, status, influence, plot, overlay, notes_markdown(notes), maps, means)


def _caption(method: str, g: Generation) -> str:
    return f"{method} · seed {g.seeds[0]}"


def _image_path(folder: Path, method: str, g: Generation, n: int) -> Path:
    return (folder / method if n > 1 else folder) / file_name(g, 0)


def details(r: Result, means: dict | None) -> dict[str, Any]:
    return {
        **dataclasses.asdict(r.settings),
        "folder": r.folder.name,
        "files": [Path(f).relative_to(r.folder).as_posix() for f in files(r)],
        "mean_weight": means,
        "wall_s": round(r.wall_s, 3),
    }


def _influence_views(gens: dict) -> tuple[dict | None, np.ndarray | None, np.ndarray | None, dict | None]:
    """The collaboration's weights (when there is a collaborative generation): state, frame, plot, means."""
    g = gens.get("collaborative")
    if g is None or not g.steps or len(g.modalities) < 2:
        return None, None, None, None
    infos = next(iter(g.steps.values()))
    weights = torch.stack([i.extras["weights"][:, 0, 0] for i in infos])  # (steps, M, h, w)
    ts = [i.t for i in infos]
    maps = {"weights": weights, "ts": ts, "names": list(g.modalities)}  # the slider's and play's state
    means = views.mean_weights(weights, maps["names"])
    frame = views.influence_frame(weights, ts, len(ts) - 1, maps["names"])
    return maps, frame, views.mean_weight_plot(means, ts), means


def files(r: Result) -> list[str]:
    """What a visitor downloads: every PNG written (images with metadata, grids, masks), the intermediates."""
    keep = sorted(p for p in r.folder.rglob("*") if p.suffix in (".png", ".safetensors") and p.is_file())
    return [str(p) for p in keep]


__all__ = ["SOLVER_NAMES", "Shown", "details", "files", "shown"]
