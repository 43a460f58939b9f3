"""Can a small CNN read the text-only attributes (age, beard, gender) of synthetic faces at 64 px?

SYNTHETIC.md requires every text-controlled attribute to be learnable from pixels, otherwise no
generator can be judged on text consistency. This script renders a train/validation split with
``cdiff.data.synthetic``, trains one small multi-head CNN on the CPU for a fixed time, and prints
the validation accuracy per attribute next to the majority-class baseline, plus the generation
speed (samples/s at 64 px, this process, one core).

    python benchmarks/synthetic_learnability.py --num 6000 --seed 0 --minutes 3
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from cdiff.data.synthetic import render_sample

HEADS = {"age": 5, "beard": 4, "gender": 2}


def generate(seed: int, num: int, resolution: int = 64) -> tuple[np.ndarray, dict[str, np.ndarray], float]:
    """Images (N, 3, R, R) uint8, targets per head, and samples/s (rendering only)."""
    start = time.perf_counter()
    images, targets = [], {k: [] for k in HEADS}
    for i in range(num):
        s = render_sample(seed, i, resolution)
        images.append(s.image.transpose(2, 0, 1))
        targets["age"].append(s.attributes["age"])
        targets["beard"].append(s.attributes["beard"])
        targets["gender"].append(int(s.attributes["gender"] == "man"))
    speed = num / (time.perf_counter() - start)
    return np.stack(images), {k: np.asarray(v) for k, v in targets.items()}, speed


class SmallCNN(nn.Module):
    """Four conv blocks (16-32-64-128 channels), global pooling, one linear head per attribute."""

    def __init__(self, width: int = 16) -> None:
        super().__init__()
        chans = [3, width, 2 * width, 4 * width, 8 * width]
        self.blocks = nn.ModuleList(
            nn.Sequential(
                nn.Conv2d(c0, c1, 3, padding=1),
                nn.BatchNorm2d(c1),
                nn.ReLU(),
                nn.Conv2d(c1, c1, 3, padding=1),
                nn.BatchNorm2d(c1),
                nn.ReLU(),
            )
            for c0, c1 in zip(chans[:-1], chans[1:], strict=True)
        )
        self.heads = nn.ModuleDict({k: nn.Linear(chans[-1], n) for k, n in HEADS.items()})

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        for i, block in enumerate(self.blocks):
            x = block(x)
            if i < len(self.blocks) - 1:
                x = F.max_pool2d(x, 2)
        h = x.mean(dim=(2, 3))  # (B, C)
        return {k: head(h) for k, head in self.heads.items()}


def blur(images: np.ndarray, factor: int) -> np.ndarray:
    """Box-downsample by ``factor`` and upsample back (bilinear): a stand-in for a blurry VAE."""
    x = torch.from_numpy(images).float()
    small = F.avg_pool2d(x, factor)
    return (
        F.interpolate(small, size=images.shape[-2:], mode="bilinear", align_corners=False)
        .round()
        .byte()
        .numpy()
    )


def to_input(images: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(images).float().div(127.5).sub(1.0)


def train(model: SmallCNN, x: np.ndarray, y: dict[str, np.ndarray], seconds: float, batch: int = 64) -> int:
    """Train until ``seconds`` have passed (a cosine learning-rate schedule on the time); returns steps."""
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=1e-4)
    gen = np.random.default_rng(0)
    start, steps = time.perf_counter(), 0
    model.train()
    while (elapsed := time.perf_counter() - start) < seconds:
        for group in opt.param_groups:
            group["lr"] = 3e-3 * 0.5 * (1 + np.cos(np.pi * elapsed / seconds))
        idx = gen.integers(0, len(x), batch)
        xb = to_input(x[idx])
        if gen.random() < 0.5:  # horizontal flip: none of the attributes is sided
            xb = xb.flip(3)
        out = model(xb)
        loss = sum(F.cross_entropy(out[k], torch.from_numpy(y[k][idx])) for k in HEADS)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        steps += 1
    return steps


@torch.no_grad()
def evaluate(model: SmallCNN, x: np.ndarray, y: dict[str, np.ndarray]) -> dict[str, float]:
    model.eval()
    preds = {k: [] for k in HEADS}
    for i in range(0, len(x), 256):
        out = model(to_input(x[i : i + 256]))
        for k in HEADS:
            preds[k].append(out[k].argmax(1).numpy())
    pred = {k: np.concatenate(v) for k, v in preds.items()}
    men = y["gender"] == 1
    acc = {k: float((pred[k] == y[k]).mean()) for k in HEADS}
    acc["beard_men"] = float((pred["beard"][men] == y["beard"][men]).mean())
    return acc


def majority(y: np.ndarray) -> float:
    return float(np.bincount(y).max() / len(y))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--num", type=int, default=6000, help="samples in all (the last 20%% are validation)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--minutes", type=float, default=3.0, help="training time")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument(
        "--blur", type=int, default=1, help="train and test on images blurred by this factor (2, 4)"
    )
    args = ap.parse_args()
    torch.manual_seed(args.seed)
    torch.set_num_threads(args.threads)

    x, y, speed = generate(args.seed, args.num)
    if args.blur > 1:
        x = blur(x, args.blur)
    n_val = args.num // 5
    x_tr, x_va = x[:-n_val], x[-n_val:]
    y_tr, y_va = {k: v[:-n_val] for k, v in y.items()}, {k: v[-n_val:] for k, v in y.items()}
    print(
        f"generated {args.num} samples at 64 px: {speed:.0f} samples/s"
        + (f", blurred x{args.blur}" if args.blur > 1 else "")
    )

    model = SmallCNN()
    steps = train(model, x_tr, y_tr, args.minutes * 60)
    acc = evaluate(model, x_va, y_va)
    men = y_va["gender"] == 1
    base = {k: majority(y_va[k]) for k in HEADS} | {"beard_men": majority(y_va["beard"][men])}
    print(f"trained {steps} steps (batch 64) in {args.minutes:g} min on {args.threads} threads")
    for k, v in acc.items():
        print(f"  {k:10s} val accuracy {v:.3f}   (majority baseline {base[k]:.3f})")
    print(json.dumps({"samples_per_s": round(speed, 1), "steps": steps, "accuracy": acc, "baseline": base}))


if __name__ == "__main__":
    main()
