"""``evaluate``'s finished pairs, kept while it runs so that an interrupted evaluation resumes.

Each batch of each method is saved as it is made, one PNG per pair in
``<out>.partial/pending/<method>/NNNNNN.png`` with the pair's seed and conditions in its metadata.
Run again with the same settings, ``evaluate`` reads them back (PNG is lossless: the same pixels)
and samples only the pairs that are missing; a file whose seed or conditions are not those of its
pair now (other ``--pairs`` or ``--seed``) is not used. The folder is removed before the evaluation
is moved into place.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image

from cdiff.imageio import read_png_metadata, save_png
from cdiff.rundir import remove

PENDING = "pending"


class Pending:
    """The finished pairs of an evaluation's ``partial`` folder (``None``: nothing is kept)."""

    def __init__(self, partial: Path | None):
        self.root = None if partial is None else partial / PENDING

    def _file(self, method: str, k: int) -> Path:
        assert self.root is not None
        return self.root / method / f"{k:06d}.png"

    @staticmethod
    def _stamp(pair: dict, seed: int) -> dict[str, str]:
        return {"seed": str(seed), "pair": json.dumps(pair, sort_keys=True)}

    def done(self, method: str, pairs: list[dict], seed: int) -> dict[int, np.ndarray]:
        """The images of ``method`` kept for these pairs (pair k: seed + k), by pair index."""
        found: dict[int, np.ndarray] = {}
        if self.root is None or not (self.root / method).is_dir():
            return found
        for k, pair in enumerate(pairs):
            path = self._file(method, k)
            try:
                if read_png_metadata(path) != self._stamp(pair, seed + k):
                    continue
                with Image.open(path) as im:
                    found[k] = np.asarray(im.convert("RGB")).copy()
            except (OSError, ValueError):  # missing, or torn by the interruption: made again
                continue
        return found

    def saver(
        self, method: str, pairs: list[dict], seed: int
    ) -> Callable[[int, list[np.ndarray]], None] | None:
        """``on_batch(first, images)``: keep a batch of ``method`` as it is made."""
        if self.root is None:
            return None
        (self.root / method).mkdir(parents=True, exist_ok=True)

        def keep(first: int, images: list[np.ndarray]) -> None:
            for k, im in enumerate(images, first):
                save_png(self._file(method, k), im, self._stamp(pairs[k], seed + k))

        return keep

    def clear(self) -> None:
        if self.root is not None:
            remove(self.root)


__all__ = ["PENDING", "Pending"]
