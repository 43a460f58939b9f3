"""Evaluator models: a face parser (19-class segmentation) and an attribute classifier.

They score generated faces (``cdiff evaluate``): the parser against the input mask, the
classifier against the caption's attributes; the classifier's pooled features also give a
Fréchet distance that needs no download. Both are small convolutional nets trained on the
prepared training split (``cdiff train-evaluator``). Inputs are images in [-1, 1] at any size;
each net resizes to its ``input_size`` and the parser returns logits at the input's size.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from cdiff.config import to_dict
from cdiff.data.masks import NUM_CLASSES
from cdiff.metrics import attribute_hits, nearest_labels, pixel_accuracy, protocol_labels, text_accuracy
from cdiff.models import store

PARSER, CLASSIFIER, CONFIG = "parser.safetensors", "classifier.safetensors", "config.json"


@dataclass
class EvaluatorSpec:
    """What is needed to rebuild the evaluator models (saved as ``config.json``)."""

    source: str
    resolution: int  # the prepared images' size
    parser_channels: tuple[int, ...]
    parser_size: int
    classifier_channels: tuple[int, ...]
    classifier_size: int
    attributes: dict[str, int] = field(default_factory=dict)  # attribute -> classes
    groups: int = 8


def _block(cin: int, cout: int, groups: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, stride, 1),
        nn.GroupNorm(min(groups, cout), cout),
        nn.SiLU(),
        nn.Conv2d(cout, cout, 3, 1, 1),
        nn.GroupNorm(min(groups, cout), cout),
        nn.SiLU(),
    )


def _resize(x: torch.Tensor, size: int) -> torch.Tensor:
    if x.shape[-1] == size and x.shape[-2] == size:
        return x
    return F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False, antialias=True)


class FaceParser(nn.Module):
    """A small U-Net: per-pixel logits over the 19 CelebAMask-HQ classes."""

    def __init__(self, channels: tuple[int, ...] = (16, 32, 64), size: int = 64, groups: int = 8):
        super().__init__()
        self.size = size
        self.down = nn.ModuleList()
        cin = 3
        for i, c in enumerate(channels):
            self.down.append(_block(cin, c, groups, stride=1 if i == 0 else 2))
            cin = c
        self.up = nn.ModuleList(
            _block(channels[i + 1] + channels[i], channels[i], groups)
            for i in reversed(range(len(channels) - 1))
        )
        self.head = nn.Conv2d(channels[0], NUM_CLASSES, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        size = x.shape[-1]
        h, skips = _resize(x, self.size), []
        for block in self.down:
            h = block(h)
            skips.append(h)
        skips.pop()
        for block in self.up:
            skip = skips.pop()
            h = block(torch.cat([F.interpolate(h, size=skip.shape[-2:], mode="nearest"), skip], 1))
        logits = self.head(h)
        if logits.shape[-1] != size:
            logits = F.interpolate(logits, size=(size, size), mode="bilinear", align_corners=False)
        return logits


class AttributeClassifier(nn.Module):
    """A strided conv net, global average pooling, and one linear head per attribute."""

    def __init__(
        self,
        attributes: dict[str, int],
        channels: tuple[int, ...] = (32, 64, 128, 256),
        size: int = 64,
        groups: int = 8,
    ):
        super().__init__()
        self.size = size
        layers, cin = [], 3
        for i, c in enumerate(channels):
            layers.append(_block(cin, c, groups, stride=1 if i == 0 else 2))
            cin = c
        self.body = nn.Sequential(*layers)
        self.heads = nn.ModuleDict({name: nn.Linear(cin, n) for name, n in attributes.items()})
        self.feature_dim = cin

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Pooled features ``(B, D)``: the space of the offline Fréchet distance."""
        return self.body(_resize(x, self.size)).mean(dim=(2, 3))

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        f = self.features(x)
        return {name: head(f) for name, head in self.heads.items()}


@torch.no_grad()
def parse_scores(
    parser: FaceParser, x: torch.Tensor, labels: torch.Tensor, batch: int = 64
) -> dict[str, torch.Tensor]:
    """Per image (``x`` in [-1, 1]): the parser's pixel accuracy against ``labels`` at full size
    (``mask_accuracy``) and at the 32x32 protocol (``mask_accuracy_32``), and its ``parsed`` label maps."""
    full, small, parsed = [], [], []
    for i in range(0, len(x), batch):
        lb = labels[i : i + batch].long()
        probs = parser(x[i : i + batch]).softmax(1)
        pred = probs.argmax(1)
        parsed.append(pred.byte())
        full.append(pixel_accuracy(pred, lb))
        small.append(pixel_accuracy(protocol_labels(probs), nearest_labels(lb)))
    return {
        "mask_accuracy": torch.cat(full),
        "mask_accuracy_32": torch.cat(small),
        "parsed": torch.cat(parsed),
    }


@torch.no_grad()
def features(classifier: AttributeClassifier, x: torch.Tensor, batch: int = 64) -> torch.Tensor:
    """The classifier's pooled features of ``x``, in batches."""
    return torch.cat([classifier.features(x[i : i + batch]) for i in range(0, len(x), batch)])


@torch.no_grad()
def attribute_scores(
    classifier: AttributeClassifier, x: torch.Tensor, targets: torch.Tensor, batch: int = 64
) -> dict[str, torch.Tensor]:
    """Per image: ``text_accuracy`` (the share of stated attributes the classifier agrees with) and
    ``<attribute>_hit`` (1, 0 or nan where the caption states nothing; ``targets`` column k: ``-1``)."""
    f = features(classifier, x, batch)
    names = list(classifier.heads)
    hits = attribute_hits(
        {n: head(f) for n, head in classifier.heads.items()}, {n: targets[:, k] for k, n in enumerate(names)}
    )
    return {"text_accuracy": text_accuracy(hits), **{f"{n}_hit": h for n, h in hits.items()}}


def judge(
    parser: FaceParser,
    classifier: AttributeClassifier,
    x: torch.Tensor,
    labels: torch.Tensor,
    targets: torch.Tensor,
    batch: int = 64,
) -> dict[str, torch.Tensor]:
    """Both judges at once: :func:`parse_scores`, :func:`attribute_scores` and the ``features``."""
    return {
        **parse_scores(parser, x, labels, batch),
        **attribute_scores(classifier, x, targets, batch),
        "features": features(classifier, x, batch),
    }


def build(spec: EvaluatorSpec) -> tuple[FaceParser, AttributeClassifier]:
    parser = FaceParser(tuple(spec.parser_channels), spec.parser_size, spec.groups)
    classifier = AttributeClassifier(
        spec.attributes, tuple(spec.classifier_channels), spec.classifier_size, spec.groups
    )
    return parser, classifier


class Evaluator(nn.Module):
    """The two evaluator nets and the spec they were built from (one model-store entry)."""

    def __init__(self, spec: EvaluatorSpec, nets: tuple[FaceParser, AttributeClassifier] | None = None):
        super().__init__()
        self.spec = spec
        self.parser, self.classifier = nets or build(spec)


store.register(
    store.Kind(
        "evaluator",
        "evaluator models",
        build=lambda record: Evaluator(EvaluatorSpec(**record["evaluator"])),
        parts=lambda ev: {PARSER: ev.parser, CLASSIFIER: ev.classifier},
        files=(PARSER, CLASSIFIER),
        command=lambda folder: f"cdiff train-evaluator --run {folder.parent}",
    )
)


def evaluator_record(spec: EvaluatorSpec, meta: dict) -> dict:
    """What ``config.json`` says of the evaluator models: their spec and ``meta`` (the metrics)."""
    return {"evaluator": to_dict(spec), **meta}
