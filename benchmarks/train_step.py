"""Samples/s and peak memory of one uni-modal training step (text model: UNet + text encoder).

    .venv/bin/python benchmarks/train_step.py --scale demo --batch 32
    .venv/bin/python benchmarks/train_step.py --scale paper --batch 1          # CPU: ~10 GB, slow
    .venv/bin/python benchmarks/train_step.py --scale paper --batch 8 --device cuda

Each configuration runs in a fresh subprocess so that peak memory (ru_maxrss on CPU,
torch.cuda.max_memory_allocated on a GPU) belongs to that configuration alone. A step is
forward + backward + AdamW update on random latents and tokens, with and without bf16 autocast.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time

import torch


def one(scale: str, batch: int, bf16: bool, device: str, steps: int) -> dict:
    from cdiff import config as C
    from cdiff.diffusion.schedule import alphas_cumprod, q_sample
    from cdiff.models.unimodal import UnimodalModel

    cfg = C.load_config("demo" if scale == "demo" else "celeba256")
    latent = cfg.data.resolution // 2 ** (len(cfg.vae.block_out_channels) - 1)
    vocab = 30522 if scale == "paper" else 200
    model = UnimodalModel(cfg.unimodal, "text", 3, latent, vocab).to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    ab = alphas_cumprod(cfg.diffusion).float().to(device)
    z0 = torch.randn(batch, 3, latent, latent, device=device)
    ids = torch.randint(0, vocab, (batch, 77), device=device)
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    times = []
    for _ in range(steps + 1):  # the first step is warm-up
        t0 = time.perf_counter()
        t = torch.randint(0, 1000, (batch,), device=device)
        eps = torch.randn_like(z0)
        with torch.autocast(
            device_type="cuda" if device == "cuda" else "cpu", dtype=torch.bfloat16, enabled=bf16
        ):
            pred = model(q_sample(z0, t, eps, ab), t, model.encode(ids))
            loss = torch.nn.functional.mse_loss(pred.float(), eps)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        if device == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
    step_s = sum(times[1:]) / steps
    if device == "cuda":
        peak = torch.cuda.max_memory_allocated() / 2**30
    else:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    params = sum(p.numel() for p in model.parameters())
    return {
        "scale": scale,
        "batch": batch,
        "bf16": bf16,
        "device": device,
        "params": params,
        "step_s": step_s,
        "samples_per_s": batch / step_s,
        "peak_gib": peak,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--scale", choices=["demo", "paper"], default="demo")
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--bf16", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        print(json.dumps(one(args.scale, args.batch, args.bf16, args.device, args.steps)))
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"one text-model training step ({args.scale} scale, {args.device})")
    for col in ("autocast", "batch", "parameters", "s/step", "samples/s", "peak memory"):
        table.add_column(col, justify="right")
    for bf16 in (False, True):
        cmd = [
            sys.executable,
            __file__,
            "--child",
            "--scale",
            args.scale,
            "--batch",
            str(args.batch),
            "--device",
            args.device,
            "--steps",
            str(args.steps),
        ] + (["--bf16"] if bf16 else [])
        r = json.loads(
            subprocess.run(cmd, capture_output=True, text=True, check=True).stdout.strip().splitlines()[-1]
        )
        table.add_row(
            "bf16" if bf16 else "fp32",
            str(r["batch"]),
            f"{r['params']:,}",
            f"{r['step_s']:.2f}",
            f"{r['samples_per_s']:.2f}",
            f"{r['peak_gib']:.2f} GiB",
        )
    Console().print(table)


if __name__ == "__main__":
    main()
