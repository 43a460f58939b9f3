"""Peak memory and time of one dynamic-diffuser training step: frozen experts vs the naive version.

    .venv/bin/python benchmarks/diffuser_step.py --scale paper --batch 1     # CPU: ~1 min per variant
    .venv/bin/python benchmarks/diffuser_step.py --scale demo --batch 32
    .venv/bin/python benchmarks/diffuser_step.py --scale paper --batch 8 --device cuda

Variants, each in a fresh subprocess (so peak memory belongs to it alone):
- ``frozen``: what ``cdiff train-diffuser`` does: experts in eval mode under ``no_grad``, only
  the diffusers' activations are kept for backward;
- ``frozen-bf16``: the same with the experts' weights cast to bf16 (``diffuser.expert_dtype``);
- ``naive``: the experts run with gradients on (not frozen): their graphs are kept and backward
  runs through them, although only the diffusers are optimised.
A step is forward + backward + AdamW update on random latents and conditions. ``weights`` is the
resident memory once the models are built; ``peak`` the high-water mark of the whole process.
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


def one(scale: str, batch: int, variant: str, device: str, steps: int) -> dict:
    from cdiff import config as C
    from cdiff.data.masks import NUM_CLASSES
    from cdiff.models.collab import Collaboration, DiffuserSet
    from cdiff.models.unimodal import UnimodalModel
    from cdiff.stages.train_diffuser import DiffuserTask

    cfg = C.load_config("demo" if scale == "demo" else "celeba256")
    latent = cfg.data.resolution // 2 ** (len(cfg.vae.block_out_channels) - 1)
    vocab = 30522 if scale == "paper" else 200
    torch.manual_seed(0)
    experts = {m: UnimodalModel(cfg.unimodal, m, 3, latent, vocab) for m in cfg.diffuser.modalities}
    if variant == "frozen-bf16":
        experts = {m: e.to(torch.bfloat16) for m, e in experts.items()}
    extra = {m: NUM_CLASSES for m, e in experts.items() if e.concat}
    collab = Collaboration(
        experts, DiffuserSet(cfg.diffuser, 3, latent, extra), list(cfg.diffuser.modalities)
    )
    task = DiffuserTask(collab, cfg, scale=1.0, keep_expert_graphs=variant == "naive").to(device)
    opt = torch.optim.AdamW(task.diffusers.parameters(), lr=1e-4)
    batch_data = {
        "mean": torch.randn(batch, 3, latent, latent, device=device),
        "std": torch.zeros(batch, 3, latent, latent, device=device),
        "cond_mask": torch.randint(0, 19, (batch, cfg.data.resolution, cfg.data.resolution), device=device),
        "cond_text": torch.randint(0, vocab, (batch, 77), device=device),
    }
    weights = _rss_gib() if device == "cpu" else torch.cuda.memory_allocated() / 2**30
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    times = []
    for s in range(steps + 1):  # the first step is warm-up
        t0 = time.perf_counter()
        loss, _ = task(batch_data, torch.Generator(device=device).manual_seed(s))
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        task.collab.experts.zero_grad(set_to_none=True)
        if device == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
    if device == "cuda":
        peak = torch.cuda.max_memory_allocated() / 2**30
    else:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    return {
        "variant": variant,
        "batch": batch,
        "weights_gib": weights,
        "peak_gib": peak,
        "step_s": sum(times[1:]) / steps,
        "trainable": sum(p.numel() for p in task.diffusers.parameters()),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--scale", choices=["demo", "paper"], default="paper")
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--steps", type=int, default=2)
    ap.add_argument("--variants", nargs="+", default=["frozen", "frozen-bf16", "naive"])
    ap.add_argument("--child", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        print(json.dumps(one(args.scale, args.batch, args.child, args.device, args.steps)))
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(
        title=f"one dynamic-diffuser training step ({args.scale} scale, batch {args.batch}, {args.device})"
    )
    for col in ("variant", "trainable", "weights resident", "peak memory", "peak − weights", "s/step"):
        table.add_column(col, justify="right")
    for variant in args.variants:
        cmd = [
            sys.executable,
            __file__,
            "--child",
            variant,
            "--scale",
            args.scale,
            "--batch",
            str(args.batch),
        ]
        cmd += ["--device", args.device, "--steps", str(args.steps)]
        r = json.loads(
            subprocess.run(cmd, capture_output=True, text=True, check=True).stdout.strip().splitlines()[-1]
        )
        table.add_row(
            variant,
            f"{r['trainable']:,}",
            f"{r['weights_gib']:.2f} GiB",
            f"{r['peak_gib']:.2f} GiB",
            f"{r['peak_gib'] - r['weights_gib']:.2f} GiB",
            f"{r['step_s']:.2f}",
        )
        Console().print(r)
    Console().print(table)


if __name__ == "__main__":
    main()
