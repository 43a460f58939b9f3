"""Cost of one collaborative sampling step against the two uni-modal steps it replaces.

    .venv/bin/python benchmarks/sampling.py --scale demo --batch 1 4
    .venv/bin/python benchmarks/sampling.py --scale paper --batch 1 4 --heads 32 4 1 --every 1 2 5
    .venv/bin/python benchmarks/sampling.py --scale demo --run runs/demo --quality   # trained weights
    .venv/bin/python benchmarks/sampling.py --scale paper --batch 1 4 --modalities mask,text,sketch   # three-way

Timing (random weights: time does not depend on them): each expert UNet forward, each dynamic
diffuser forward, and the whole collaborative step (experts + diffusers + combination), median
of ``--repeats`` after a warm-up, under ``torch.no_grad``. ``ratio`` = collaborative step / sum
of the uni-modal steps. ``--heads`` rebuilds the diffusers with another attention head count
(no parameter changes); ``--every k`` runs the diffusers on every k-th step only.

``--quality`` (needs a trained run): how far each faster setting moves the demo's samples, as
PSNR against the exact computation from the same seeds and conditions, and images/s for 50-step
DDIM and for DPM-Solver++ at fewer steps (against DPM-Solver++ at 50 steps, its own reference).
"""

from __future__ import annotations

import argparse
import copy
import statistics
import tempfile
import time
from functools import partial

import numpy as np
import torch
from rich.console import Console
from rich.table import Table


def timed(fn, repeats: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def build_experts(scale: str, mods: list[str] | None = None):
    from cdiff import config as C
    from cdiff.models.unimodal import UnimodalModel

    cfg = C.load_config("demo" if scale == "demo" else "celeba256")
    if mods:
        cfg.diffuser.modalities = tuple(mods)
    latent = cfg.data.resolution // 2 ** (len(cfg.vae.block_out_channels) - 1)
    vocab = 30522 if scale == "paper" else 200
    torch.manual_seed(0)
    experts = {m: UnimodalModel(cfg.unimodal, m, 3, latent, vocab) for m in cfg.diffuser.modalities}
    return cfg, experts, latent, vocab


def build_collab(cfg, experts, latent: int, heads: int | None):
    from cdiff.models.collab import Collaboration, DiffuserSet

    cfg = copy.deepcopy(cfg)
    if heads is not None:
        cfg.diffuser.unet.heads = heads
    extra = {m: e.extra_in for m, e in experts.items() if e.extra_in}
    diffusers = DiffuserSet(cfg.diffuser, 3, latent, extra)
    with torch.no_grad():  # non-zero output layers, as after training
        for net in diffusers.nets.values():
            torch.nn.init.normal_(net.unet.conv_out.weight, std=0.1)
    return Collaboration(experts, diffusers, list(cfg.diffuser.modalities)).eval()


@torch.no_grad()
def random_raw(mods, B: int, size: int, vocab: int) -> dict[str, torch.Tensor]:
    """Random raw conditions of the built-in modalities: label maps, token ids, line drawings."""
    make = {
        "mask": lambda: torch.randint(0, 19, (B, size, size)),
        "text": lambda: torch.randint(0, vocab, (B, 77)),
        "sketch": lambda: (torch.rand(B, size, size) < 0.1).float(),
    }
    return {m: make[m]() for m in mods}


def timing(
    scale: str,
    batches: list[int],
    heads_list: list[int | None],
    every_list: list[int],
    repeats: int,
    mods: list[str] | None = None,
):
    from cdiff.diffusion.predictors import CollabPredictor

    rows = []
    cfg, experts, latent, vocab = build_experts(scale, mods)
    collabs = {h: build_collab(cfg, experts, latent, h) for h in heads_list}
    for B in batches:
        raw = random_raw(cfg.diffuser.modalities, B, cfg.data.resolution, vocab)
        any_collab = next(iter(collabs.values()))
        conds = any_collab.encode(raw)
        x = torch.randn(B, 3, latent, latent)
        t = torch.full((B,), 500)
        uni = sum(timed(partial(experts[m], x, t, conds[m]), repeats) for m in any_collab.modalities)
        for collab in collabs.values():
            diff_s = sum(
                timed(partial(collab.diffusers.nets[m], x, t, conds[m]), repeats) for m in collab.modalities
            )
            for every in every_list:
                pred = CollabPredictor(collab, influence_every=every)
                enc = pred.encode(raw)

                def k_steps(pred=pred, enc=enc, every=every, x=x, t=t):
                    for _ in range(every):
                        pred(x, t, enc)

                step = timed(k_steps, repeats) / every
                rows.append(
                    {
                        "scale": scale,
                        "heads": collab.diffusers.cfg.unet.heads,
                        "batch": B,
                        "every": every,
                        "experts_s": uni,
                        "diffusers_s": diff_s,
                        "collab_s": step,
                        "ratio": step / uni,
                    }
                )
                Console().print(rows[-1])
    n = len(cfg.diffuser.modalities)
    title = f"one sampling step, {scale} scale, {', '.join(cfg.diffuser.modalities)}, {torch.get_num_threads()} threads"
    table = Table(title=title)
    for col in (
        "heads",
        "batch",
        "diffusers every",
        f"{n} uni-modal steps",
        f"{n} diffusers",
        "collaborative step",
        "ratio",
    ):
        table.add_column(col, justify="right")
    for r in rows:
        table.add_row(
            str(r["heads"]),
            str(r["batch"]),
            str(r["every"]),
            f"{r['experts_s']:.3f} s",
            f"{r['diffusers_s']:.3f} s",
            f"{r['collab_s']:.3f} s",
            f"{r['ratio']:.3f}",
        )
    Console().print(table)


def _psnr(a: list[np.ndarray], b: list[np.ndarray]) -> float:
    mse = np.mean([(x.astype(np.float64) - y.astype(np.float64)) ** 2 for x, y in zip(a, b, strict=True)])
    return float("inf") if mse == 0 else 10 * np.log10(255**2 / mse)


@torch.no_grad()
def quality(run: str, n: int, save: str | None):
    from pathlib import Path

    from cdiff import config as C
    from cdiff.imageio import grid, save_png
    from cdiff.stages import generate as gen

    run_dir = Path(run)
    settings = [
        ("DDIM 50, exact (the release's computation)", dict(solver="ddim", steps=50)),
        ("DDIM 50, diffusers every 2 steps", dict(solver="ddim", steps=50, influence_every=2)),
        ("DDIM 50, diffusers every 5 steps", dict(solver="ddim", steps=50, influence_every=5)),
        ("DPM-Solver++ 50 (reference for the solver rows)", dict(solver="dpm", steps=50)),
        ("DPM-Solver++ 25", dict(solver="dpm", steps=25)),
        ("DPM-Solver++ 20", dict(solver="dpm", steps=20)),
        ("DPM-Solver++ 15", dict(solver="dpm", steps=15)),
        ("DPM-Solver++ 10", dict(solver="dpm", steps=10)),
        ("DPM-Solver++ 20, diffusers every 2", dict(solver="dpm", steps=20, influence_every=2)),
    ]
    results, pictures = {}, []
    with tempfile.TemporaryDirectory() as tmp:
        for k, (name, opts) in enumerate(settings):
            req = gen.GenerateRequest(method="collaborative", num=1, val_conditions=n)
            cfg = C.load_config(
                "demo", {"sample.batch_size": 16, **{f"sample.{k}": v for k, v in opts.items()}}
            )
            res = gen.run(cfg, req, run_dir, Path(tmp) / str(k))
            results[name] = (res.images, len(res.images) / res.wall_time_s)
            pictures += res.images
    table = Table(title=f"demo samples ({n} validation pairs): speed and how far each setting moves them")
    for col in ("setting", "images/s", "PSNR vs its reference"):
        table.add_column(col)
    for name, (images, ips) in results.items():
        ref = results[
            "DPM-Solver++ 50 (reference for the solver rows)"
            if "DPM" in name
            else "DDIM 50, exact (the release's computation)"
        ][0]
        table.add_row(name, f"{ips:.2f}", f"{_psnr(images, ref):.1f} dB")
    Console().print(table)
    if save:
        save_png(Path(save), grid(pictures, ncol=n), {"rows": [name for name, _ in settings]})


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--scale", choices=["demo", "paper"], default="demo")
    ap.add_argument("--batch", type=int, nargs="+", default=[1, 4])
    ap.add_argument(
        "--heads", type=int, nargs="+", default=None, help="diffuser head counts [default: the preset's]"
    )
    ap.add_argument("--every", type=int, nargs="+", default=[1], help="run the diffusers every k steps")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument(
        "--modalities", help="the experts that collaborate, e.g. mask,text,sketch [default: mask,text]"
    )
    ap.add_argument("--run", help="a trained demo run (for --quality)")
    ap.add_argument(
        "--quality", action="store_true", help="speed and PSNR of faster settings on trained weights"
    )
    ap.add_argument("--n", type=int, default=16, help="validation pairs for --quality")
    ap.add_argument("--save", help="--quality: save all samples as one grid (a row per setting)")
    args = ap.parse_args()
    if args.quality:
        if not args.run:
            ap.error("--quality needs --run")
        quality(args.run, args.n, args.save)
    else:
        mods = args.modalities.split(",") if args.modalities else None
        timing(args.scale, args.batch, args.heads or [None], args.every, args.repeats, mods)


if __name__ == "__main__":
    main()
