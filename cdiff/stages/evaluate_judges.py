"""``evaluate``'s judges: the evaluator models scoring images against what each modality's conditions
ask for (:meth:`cdiff.modalities.Modality.judge`), and the classifier's features for the Fréchet distance."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from cdiff import modalities
from cdiff.data.datasets import to_tensor
from cdiff.data.prepared import PreparedDataset
from cdiff.errors import InputError
from cdiff.models import evaluator as ev
from cdiff.stages.run import Run


class Judges:
    """The evaluator models, scoring uint8 images against what each modality's conditions ask for."""

    @classmethod
    def none(cls, mods: list[str]) -> Judges:
        """No models, only the modalities (the processes of a job that only sample)."""
        judges = cls.__new__(cls)
        judges.mods, judges.truths, judges.models, judges.meta = mods, {}, None, {}
        return judges

    def __init__(self, run: Run, source: str, mods: list[str]):
        self.models, self.meta = run.evaluator()
        spec, folder = self.models.spec, run.path("evaluator")
        if spec.source != source and {spec.source, source} != {"celeba", "codiff"}:
            raise InputError(
                f"the evaluator in {folder} was trained on {spec.source} data, the run's data is {source}; "
                f"retrain it: cdiff train-evaluator --run {run.root} --force"
            )
        self.mods = mods
        self.truths: dict[str, Any] = {}

    def set_pairs(self, data: PreparedDataset, pairs: list[dict[str, str]]) -> None:
        """What the images of ``pairs`` are judged against, per modality."""
        self.truths = {
            m: modalities.get(m).truth(data, [p[m] for p in pairs], self.models) for m in self.mods
        }

    def __call__(self, images: list[np.ndarray], only: list[str] | None = None) -> dict[str, torch.Tensor]:
        """Per image, every modality's scores (``only``: those modalities), and their readings (on the CPU)."""
        x, out = _tensors(images).to(self.device), {}
        for m in only or self.mods:
            truth = self.truths[m]
            truth = truth.to(self.device) if isinstance(truth, torch.Tensor) else truth
            out.update({k: v.cpu() for k, v in modalities.get(m).judge(self.models, x, truth).items()})
        return out

    def features(self, images: list[np.ndarray], batch: int = 64) -> torch.Tensor:
        """The classifier's pooled features (the Fréchet distance's space)."""
        return torch.cat(
            [
                ev.features(self.models.classifier, _tensors(images[i : i + batch]).to(self.device)).cpu()
                for i in range(0, len(images), batch)
            ]
        )

    @property
    def device(self) -> torch.device:
        return next(self.models.parameters()).device


def _tensors(images: list[np.ndarray]) -> torch.Tensor:
    return torch.stack([to_tensor(im) for im in images])


__all__ = ["Judges"]
