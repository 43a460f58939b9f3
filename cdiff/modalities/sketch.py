"""The ``sketch`` modality: a binary line drawing of the face at the image resolution.

Raw condition: a sketch ``(H, W)`` float (1 on the lines, 0 on the paper) at the image resolution:
a prepared sample's (:meth:`cdiff.data.prepared.PreparedDataset.sketch`), or a user's drawing, any
PNG or JPEG, dark lines on light or light on dark, thresholded, thinned and widened to
``data.sketch.line_width`` (:func:`cdiff.data.sketches.read_drawing`). Null condition: a blank page.

Encoder, in the spirit of the mask branch: the sketch's ink area-resized to ``g·p × g·p`` and cut into
a ``g × g`` grid of ``p × p`` patches (``unimodal.sketch_grid``, ``unimodal.sketch_patch``), each
patch flattened and mapped by one Linear to a token, plus a learned position per patch: ``g²`` tokens
for cross-attention (paper scale: 16 × 16 patches of 16 × 16, 256 tokens). With the demo's ``sketch_concat``
the sketch's ink at latent size is also concatenated to the UNet input (one channel), which trains
fastest.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

from cdiff.data import sketches
from cdiff.errors import InputError
from cdiff.modalities import ConditionEncoder, Context, PictureModality, register


class SketchCondition(ConditionEncoder):
    """Sketches ``(B, H, W)`` → ``{"tokens": (B, g², C)}`` (+ ``"concat"``: ``(B, 1, h, w)`` ink)."""

    def __init__(self, grid: int, patch: int, width: int, latent_size: int, concat: bool):
        super().__init__()
        self.grid, self.patch, self.latent_size = grid, patch, latent_size
        self.linear = nn.Linear(self.patch * self.patch, width)
        self.position = nn.Parameter(torch.zeros(grid * grid, width))
        self.extra_in = 1 if concat else 0

    def encode(self, raw: torch.Tensor) -> dict[str, torch.Tensor]:
        dtype = self.linear.weight.dtype
        x = raw.to(dtype)[:, None]  # (B, 1, H, W)
        if x.shape[-1] != self.grid * self.patch:
            x = F.interpolate(x, size=(self.grid * self.patch,) * 2, mode="area")
        patches = F.unfold(x, self.patch, stride=self.patch).transpose(1, 2)  # (B, g², p²)
        cond = {"tokens": self.linear(patches) + self.position}
        if self.extra_in:
            cond["concat"] = F.interpolate(x, size=(self.latent_size,) * 2, mode="area")
        return cond


class Sketch(PictureModality):
    name = "sketch"
    option = "--sketch"
    option_help = "A sketch: a PNG or JPEG line drawing, dark on light or light on dark (repeatable)."
    target_option = "--target-sketch"
    target_help = "The sketch to edit toward (a PNG or JPEG line drawing)."
    option_type = Path
    describes = "a sketch (a PNG or JPEG line drawing)"

    @property
    def plural(self) -> str:
        return "sketches"

    def build_encoder(self, cfg: Any, latent_size: int, vocab_size: int | None = None) -> SketchCondition:
        return SketchCondition(
            cfg.sketch_grid, cfg.sketch_patch, cfg.unet.cross_attention_dim, latent_size, cfg.sketch_concat
        )

    def parameter_notes(self, cfg: Any, vocab: int) -> dict[str, int]:
        enc = self.build_encoder(cfg, 1)
        return {"sketch encoder (patch tokens)": sum(p.numel() for p in enc.parameters())}

    def from_dataset(self, data: Any, ids: list[str], ctx: Context) -> torch.Tensor:
        return torch.from_numpy(np.stack([data.sketch(i) for i in ids]).astype(np.float32))

    def read(self, values: list[Any], ctx: Context, notes: list[str]) -> torch.Tensor:
        """Drawings (paths or PIL images), ``val:<id>`` (the run's data), or ``(H, W)`` arrays (ink > 0.5)."""
        width = (ctx.meta.get("data") or {}).get("sketch", {}).get("line_width", 1)
        rows = []
        for v in values:
            if isinstance(v, torch.Tensor):
                v = v.cpu().numpy()
            if isinstance(v, np.ndarray):
                lines = sketches.resize_lines(np.asarray(v, np.float32) > 0.5, ctx.resolution)
            elif isinstance(v, str) and v.startswith("val:"):
                if ctx.data is None:
                    raise InputError(f"sketch {v} names a validation sample, but there is no prepared data")
                lines = sketches.resize_lines(ctx.data.sketch(v[4:]), ctx.resolution)
            elif isinstance(v, str | Path | Image.Image):
                lines = sketches.read_drawing(v, ctx.resolution, width)
            else:
                raise InputError(
                    f"a sketch must be a file path, a PIL image or an HxW array, got {type(v).__name__}"
                )
            rows.append(lines.astype(np.float32))
        return torch.from_numpy(np.stack(rows))

    def null(self, like: torch.Tensor, ctx: Context) -> torch.Tensor:
        return torch.zeros_like(like[0])

    def save_picture(self, raw_row: torch.Tensor, path: Path) -> bool:
        from cdiff.rundir import atomic_write_bytes

        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(path, sketches.encode_sketch(raw_row.numpy() > 0.5))
        return True

    def tile(self, raw_row: torch.Tensor, size: int) -> np.ndarray:
        lines = sketches.resize_lines(raw_row.numpy() > 0.5, size)
        return np.repeat(np.where(lines, 0, 255).astype(np.uint8)[..., None], 3, axis=2)

    # sketch consistency: the generated image's edges (the detector that made the data's sketches of
    # photos, with the data's settings) against the input sketch
    columns = {"sketch_f": ("sketch F-score (1 px)", "sketch")}
    headline = "sketch_f"
    judged_by = (
        "sketch consistency: the F-score of the image's Canny edges against the input sketch (1 px tolerance)"
    )

    def truth(self, data: Any, ids: list[str], judges: Any) -> dict[str, Any]:
        settings = data.manifest["config"]["data"].get("sketch", {})
        params = {k: settings.get(k, d) for k, d in (("sigma", 1.0), ("low", 0.08), ("high", 0.2))}
        return {"lines": [data.sketch(i) for i in ids], **params}

    def judge(self, judges: Any, images: torch.Tensor, truth: dict[str, Any]) -> dict[str, torch.Tensor]:
        pictures = (
            ((images.float().clamp(-1, 1) + 1) * 127.5).round().byte().permute(0, 2, 3, 1).cpu().numpy()
        )
        edges = [sketches.edge_lines(im, truth["sigma"], truth["low"], truth["high"]) for im in pictures]
        size = pictures.shape[1]
        lines = [sketches.resize_lines(t, size) for t in truth["lines"]]
        scores = [sketches.edge_f_score(e, t) for e, t in zip(edges, lines, strict=True)]
        return {"sketch_f": torch.tensor(scores), "edges": torch.from_numpy(np.stack(edges))}

    def reading(self, scores: dict[str, torch.Tensor], j: int) -> np.ndarray:
        return np.repeat(np.where(scores["edges"][j].numpy(), 0, 255).astype(np.uint8)[..., None], 3, axis=2)


SKETCH = register(Sketch())
