"""Time and peak memory of the two Imagic optimisations (``cdiff edit``) per step.

    .venv/bin/python benchmarks/edit_step.py --scale paper --steps 2     # CPU: a few minutes
    .venv/bin/python benchmarks/edit_step.py --scale demo --steps 50
    .venv/bin/python benchmarks/edit_step.py --scale paper --device cuda --dtype float32 bfloat16

Each phase runs in a fresh subprocess, so peak memory belongs to it alone:
- ``embedding``: Adam on the condition embedding, the model frozen (step 2 of the recipe);
- ``finetune``: Adam on the whole UNet with the embedding fixed (step 3). Its gradients and
  Adam moments (3 more copies of the UNet) make it the memory peak of an edit.
The text model is measured (UNet + text encoder); one noise draw per step, as the release.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time

import torch


def _rss_gib() -> float:
    with open(f"/proc/{os.getpid()}/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**30


def one(scale: str, phase: str, device: str, steps: int, dtype: str = "float32") -> dict:
    from cdiff import config as C
    from cdiff.diffusion.schedule import alphas_cumprod
    from cdiff.models.unimodal import UnimodalModel
    from cdiff.stages.imagic import finetune_unet, optimise_embedding

    cfg = C.load_config("demo" if scale == "demo" else "celeba256")
    latent = cfg.data.resolution // 2 ** (len(cfg.vae.block_out_channels) - 1)
    vocab = 30522 if scale == "paper" else 200
    torch.manual_seed(0)
    model = UnimodalModel(cfg.unimodal, "text", 3, latent, vocab).to(device).eval()
    z0 = torch.randn(1, 3, latent, latent, device=device)
    with torch.no_grad():
        target = model.encode(torch.randint(0, vocab, (1, 77), device=device))
    ab = alphas_cumprod(cfg.diffusion).float().to(device)
    weights = _rss_gib() if device == "cpu" else torch.cuda.memory_allocated() / 2**30
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    fn = optimise_embedding if phase == "embedding" else finetune_unet
    precision = getattr(torch, dtype)  # cdiff edit --dtype: the forward and backward under autocast
    fn(model, z0, target, 1, 1e-3, 1, ab, 0, None, precision)  # warm-up step
    t0 = time.perf_counter()
    fn(model, z0, target, steps, 1e-3, 1, ab, 0, None, precision)
    if device == "cuda":
        torch.cuda.synchronize()
    step_s = (time.perf_counter() - t0) / steps
    peak = (
        torch.cuda.max_memory_allocated() / 2**30
        if device == "cuda"
        else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    )
    return {"phase": phase, "dtype": dtype, "weights_gib": weights, "peak_gib": peak, "step_s": step_s}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--scale", choices=["demo", "paper"], default="paper")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--steps", type=int, default=2)
    ap.add_argument("--dtype", nargs="+", default=["float32"], help="float32, bfloat16 (autocast), float16")
    ap.add_argument(
        "--edit-steps",
        type=int,
        nargs=2,
        default=None,
        metavar=("EMBED", "FINETUNE"),
        help="also the time of a whole edit with these step counts (default: the preset's)",
    )
    ap.add_argument("--child", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        print(json.dumps(one(args.scale, args.child, args.device, args.steps, args.dtype[0])))
        return
    from rich.console import Console
    from rich.table import Table

    from cdiff import config as C

    ec = C.load_config("demo" if args.scale == "demo" else "celeba256").edit
    embed, finetune = args.edit_steps or (ec.embed_steps, ec.finetune_steps)
    table = Table(title=f"one Imagic optimisation step, text model ({args.scale} scale, {args.device})")
    for col in (
        "phase",
        "precision",
        "weights resident",
        "peak memory",
        "s/step",
        "steps per edit",
        "s per edit",
    ):
        table.add_column(col, justify="right")
    for dtype in args.dtype:
        for phase, n in (("embedding", embed), ("finetune", finetune)):
            cmd = [sys.executable, __file__, "--child", phase, "--scale", args.scale, "--device", args.device]
            cmd += ["--steps", str(args.steps), "--dtype", dtype]
            out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
            r = json.loads(out.strip().splitlines()[-1])
            table.add_row(
                phase,
                dtype,
                f"{r['weights_gib']:.2f} GiB",
                f"{r['peak_gib']:.2f} GiB",
                f"{r['step_s']:.3f}",
                str(n),
                f"{r['step_s'] * n:.0f}",
            )
    Console().print(table)


if __name__ == "__main__":
    main()
