"""Evaluation metrics: mask consistency, text (attribute) consistency, Fréchet distances, paired statistics.

Pure functions over tensors; the models that produce their inputs live in ``cdiff.models.evaluator``
(the parser and classifier) and, for FID, pytorch-fid's Inception network (optional extra ``fid``).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from cdiff.errors import InputError

PROTOCOL_SIZE = 32  # the release conditions on 32x32 masks: mask accuracy is also measured there
FID_WEIGHTS = (
    "pt_inception-2015-12-05-6726825d.pth"  # the standard FID Inception (pytorch-fid's port of TF's)
)


# ---- mask consistency -----------------------------------------------------------------------


def pixel_accuracy(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Per-image fraction of pixels where two label maps ``(N, H, W)`` agree: ``(N,)``."""
    if pred.shape != target.shape:
        raise ValueError(f"label maps differ in shape: {tuple(pred.shape)} vs {tuple(target.shape)}")
    return (pred == target).flatten(1).float().mean(1)


def protocol_labels(probs: torch.Tensor, size: int = PROTOCOL_SIZE) -> torch.Tensor:
    """A parser's class probabilities ``(N, C, H, W)`` → label maps at ``size``: area-averaged, then argmax."""
    if probs.shape[-1] != size:
        probs = F.adaptive_avg_pool2d(probs, size)
    return probs.argmax(1)


def nearest_labels(labels: torch.Tensor, size: int = PROTOCOL_SIZE) -> torch.Tensor:
    """Label maps ``(N, H, W)`` resized by nearest neighbour at pixel centres (how the release reads a mask)."""
    if labels.shape[-1] == size:
        return labels
    n = labels.shape[-1]
    idx = ((torch.arange(size) + 0.5) * n / size).floor().long().clamp(max=n - 1)
    return labels[:, idx][:, :, idx]


def mean_iou(pred: torch.Tensor, target: torch.Tensor, classes: int) -> float:
    """Mean intersection over union over the classes present in the target or the prediction."""
    ious = []
    for c in range(classes):
        p, t = pred == c, target == c
        union = (p | t).sum().item()
        if union:
            ious.append((p & t).sum().item() / union)
    return float(np.mean(ious)) if ious else float("nan")


# ---- text consistency -----------------------------------------------------------------------


def attribute_hits(
    logits: dict[str, torch.Tensor], targets: dict[str, torch.Tensor]
) -> dict[str, torch.Tensor]:
    """Per attribute, ``(N,)`` floats: 1 where the prediction equals the target, 0 where not, nan where unknown (-1)."""
    out = {}
    for name, target in targets.items():
        hit = (logits[name].argmax(1) == target).float()
        out[name] = torch.where(target >= 0, hit, torch.full_like(hit, float("nan")))
    return out


def text_accuracy(hits: dict[str, torch.Tensor]) -> torch.Tensor:
    """Per image, the fraction of the caption's stated attributes that were met: ``(N,)`` (nan if none)."""
    stacked = torch.stack(list(hits.values()), 1)  # (N, A)
    known = ~stacked.isnan()
    return torch.where(known, stacked, torch.zeros_like(stacked)).sum(1) / known.sum(1).float()


def nanmean(x: torch.Tensor) -> float:
    x = x[~x.isnan()]
    return float(x.mean()) if x.numel() else float("nan")


# ---- Fréchet distances ----------------------------------------------------------------------


def gaussian_stats(features: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """Mean and covariance (float64) of features ``(N, D)``."""
    f = features.double().cpu().numpy()
    if len(f) < 2:
        raise InputError("a Fréchet distance needs at least 2 images per set")
    return f.mean(0), np.cov(f, rowvar=False)


def frechet_distance(mu1: np.ndarray, s1: np.ndarray, mu2: np.ndarray, s2: np.ndarray) -> float:
    """``|mu1 - mu2|^2 + tr(S1) + tr(S2) - 2 tr((S1 S2)^(1/2))``, via symmetric eigendecompositions.

    ``tr((S1 S2)^(1/2))`` equals the sum of the square roots of the eigenvalues of
    ``S1^(1/2) S2 S1^(1/2)``, which is symmetric positive semi-definite: stable for the
    rank-deficient covariances of small sample sets.
    """
    vals, vecs = np.linalg.eigh(s1)
    root1 = (vecs * np.sqrt(np.clip(vals, 0, None))) @ vecs.T
    middle = root1 @ s2 @ root1
    tr_root = np.sqrt(np.clip(np.linalg.eigvalsh((middle + middle.T) / 2), 0, None)).sum()
    return float(((mu1 - mu2) ** 2).sum() + np.trace(s1) + np.trace(s2) - 2 * tr_root)


def frechet_between(a: torch.Tensor, b: torch.Tensor) -> float:
    return frechet_distance(*gaussian_stats(a), *gaussian_stats(b))


# ---- paired comparisons ---------------------------------------------------------------------


def paired_difference(
    a: torch.Tensor, b: torch.Tensor, samples: int = 2000, seed: int = 0
) -> dict[str, float]:
    """Mean of ``a - b`` over pairs (nan pairs dropped) with a bootstrap 95 % interval."""
    return mean_interval(a - b, samples, seed)


def mean_interval(x: torch.Tensor, samples: int = 2000, seed: int = 0) -> dict[str, float]:
    """Mean of ``x`` (nan entries dropped) with a bootstrap 95 % interval: mean, low, high, pairs."""
    d = x.double()
    d = d[~d.isnan()]
    if d.numel() == 0:
        return {"mean": float("nan"), "low": float("nan"), "high": float("nan"), "pairs": 0}
    g = torch.Generator().manual_seed(seed)
    idx = torch.randint(0, d.numel(), (samples, d.numel()), generator=g)
    means = d[idx].mean(1)
    low, high = torch.quantile(means, torch.tensor([0.025, 0.975], dtype=torch.float64)).tolist()
    return {"mean": float(d.mean()), "low": low, "high": high, "pairs": int(d.numel())}


# ---- FID (the standard Inception weights, from a local file) ---------------------------------


def find_inception(path: str | Path | None) -> Path | None:
    """The FID Inception weights: ``path`` when given (it must exist), else torch hub's cache, else None."""
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise InputError(
                f"--inception {path} not found; give pytorch-fid's {FID_WEIGHTS} (or leave it out: "
                "the evaluator's own Fréchet distance is always reported)"
            )
        return path
    cached = Path(torch.hub.get_dir()) / "checkpoints" / FID_WEIGHTS
    return cached if cached.is_file() else None


class FIDInception(torch.nn.Module):
    """pool3 features of the FID Inception: inputs in [0, 1], resized to 299 (bilinear), scaled to [-1, 1]."""

    LAYERS = (
        "Conv2d_1a_3x3", "Conv2d_2a_3x3", "Conv2d_2b_3x3", "maxpool1", "Conv2d_3b_1x1", "Conv2d_4a_3x3",
        "maxpool2", "Mixed_5b", "Mixed_5c", "Mixed_5d", "Mixed_6a", "Mixed_6b", "Mixed_6c", "Mixed_6d",
        "Mixed_6e", "Mixed_7a", "Mixed_7b", "Mixed_7c", "avgpool",
    )  # fmt: skip

    def __init__(self, net: torch.nn.Module):
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.interpolate(x, size=(299, 299), mode="bilinear", align_corners=False) * 2 - 1
        for name in self.LAYERS:
            x = getattr(self.net, name)(x)
        return x.flatten(1)


def build_fid_inception() -> torch.nn.Module:
    """The FID Inception's architecture (torchvision's Inception v3 with pytorch-fid's FID blocks), no weights."""
    try:
        from pytorch_fid import inception as pf
    except ImportError:
        raise InputError(
            "FID needs the pytorch-fid package: pip install 'cdiff[fid]' (or drop --inception: the "
            "evaluator's own Fréchet distance needs nothing)"
        ) from None
    net = pf._inception_v3(num_classes=1008, aux_logits=False, weights=None, init_weights=False)
    net.Mixed_5b = pf.FIDInceptionA(192, pool_features=32)
    net.Mixed_5c = pf.FIDInceptionA(256, pool_features=64)
    net.Mixed_5d = pf.FIDInceptionA(288, pool_features=64)
    net.Mixed_6b = pf.FIDInceptionC(768, channels_7x7=128)
    net.Mixed_6c = pf.FIDInceptionC(768, channels_7x7=160)
    net.Mixed_6d = pf.FIDInceptionC(768, channels_7x7=160)
    net.Mixed_6e = pf.FIDInceptionC(768, channels_7x7=192)
    net.Mixed_7b = pf.FIDInceptionE_1(1280)
    net.Mixed_7c = pf.FIDInceptionE_2(2048)
    return net


def load_fid_inception(path: Path) -> torch.nn.Module:
    """The FID Inception with the weights in ``path`` (pytorch-fid's file); nothing is downloaded."""
    net = build_fid_inception()
    try:
        net.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
    except Exception as exc:  # noqa: BLE001 - any failure means the file is not the FID Inception
        raise InputError(
            f"{path} is not the FID Inception weights ({type(exc).__name__}); give pytorch-fid's {FID_WEIGHTS}"
        ) from None
    return FIDInception(net).eval()


@torch.no_grad()
def inception_features(model: torch.nn.Module, images: list[np.ndarray], batch: int = 32) -> torch.Tensor:
    """pool3 features ``(N, 2048)`` of uint8 RGB images."""
    out = []
    for i in range(0, len(images), batch):
        x = torch.from_numpy(np.stack(images[i : i + batch])).permute(0, 3, 1, 2).float() / 255.0
        out.append(model(x))
    return torch.cat(out)
