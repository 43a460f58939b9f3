"""Whole images at paper scale with random weights: images/s and peak memory per solver, batch and dtype.

    .venv/bin/python benchmarks/paper_throughput.py --preset celeba256 --device cpu --batch 1 --steps 2
    .venv/bin/python benchmarks/paper_throughput.py --preset celeba256 celeba512 --device cuda \\
        --batch 1 8 32 --dtype float32 bfloat16 --solver ddim:50 dpm:20

The models of the preset (VAE, text and mask experts, the dynamic diffusers; the release's
architectures, random weights: time does not depend on them) sample a collaborative batch with the
library's own loop (:func:`cdiff.stages.sampling_common.generate_images`: the same code as ``cdiff
generate``) and decode it. ``--steps`` caps the steps actually run on slow devices, and the time
is scaled to the solver's step count (the time per step does not depend on which step it is);
otherwise every step runs. Guidance as ``--guidance`` (the release samples without: 1).
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch


def build(preset: str, device: str, dtype: torch.dtype):
    from cdiff import config as C
    from cdiff.data.masks import NUM_CLASSES
    from cdiff.diffusion.predictors import CollabPredictor
    from cdiff.models.build import build_vae
    from cdiff.models.collab import Collaboration, DiffuserSet
    from cdiff.models.unimodal import UnimodalModel

    cfg = C.load_config(preset)
    latent = cfg.data.resolution // 2 ** (len(cfg.vae.block_out_channels) - 1)
    torch.manual_seed(0)
    experts = {
        m: UnimodalModel(cfg.unimodal, m, cfg.vae.latent_channels, latent, 30522) for m in ("mask", "text")
    }
    extra = {m: NUM_CLASSES for m, e in experts.items() if e.concat}
    diffusers = DiffuserSet(cfg.diffuser, cfg.vae.latent_channels, latent, extra)
    with torch.no_grad():  # non-zero output layers, as after training
        for net in diffusers.nets.values():
            torch.nn.init.normal_(net.unet.conv_out.weight, std=0.1)
    collab = Collaboration(experts, diffusers, list(cfg.diffuser.modalities)).eval().to(device, dtype)
    vae = build_vae(cfg.vae).eval().to(device)
    meta = {"latent_channels": cfg.vae.latent_channels, "latent_size": latent, "scale_factor": 1.0}
    return cfg, collab, vae, meta, CollabPredictor


@torch.no_grad()
def measure(args, preset: str, dtype_name: str, solver: str, steps: int, batch: int) -> dict:
    from cdiff.stages import sampling_common as sc

    dtype = getattr(torch, dtype_name)
    cfg, collab, vae, meta, CollabPredictor = build(preset, args.device, dtype)
    run_steps = min(steps, args.steps) if args.steps else steps
    cfg.sample.solver, cfg.sample.steps, cfg.sample.batch_size = solver, steps, batch
    predictor = CollabPredictor(collab, guidance=args.guidance)
    res = cfg.data.resolution
    raw = {"mask": torch.randint(0, 19, (batch, res, res)), "text": torch.randint(0, 30522, (batch, 77))}
    if args.guidance != 1.0:
        predictor.nulls = {
            "mask": torch.zeros(res, res, dtype=torch.long),
            "text": torch.zeros(77, dtype=torch.long),
        }

    def once() -> float:
        sync()
        t0 = time.perf_counter()
        sc.generate_images(predictor, vae, meta, cfg, raw, list(range(batch)), steps=run_steps)
        sync()
        return time.perf_counter() - t0

    def sync():
        if args.device.startswith("cuda"):
            torch.cuda.synchronize()

    once()  # warm-up
    if args.device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
    t = statistics.median(once() for _ in range(args.repeats))
    per_image_s = t * steps / run_steps / batch  # the decode is scaled too: an upper bound on it
    peak = torch.cuda.max_memory_allocated() / 2**30 if args.device.startswith("cuda") else None
    return {
        "images_per_s": 1 / per_image_s,
        "s_per_batch": per_image_s * batch,
        "peak_gib": peak,
        "ran": run_steps,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--preset", nargs="+", default=["celeba256"])
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--dtype", nargs="+", default=["float32"])
    ap.add_argument("--solver", nargs="+", default=["ddim:50", "dpm:20"], help="solver:steps")
    ap.add_argument("--batch", type=int, nargs="+", default=[1])
    ap.add_argument("--steps", type=int, default=0, help="run at most this many steps (0: all)")
    ap.add_argument("--guidance", type=float, default=1.0)
    ap.add_argument("--repeats", type=int, default=1)
    args = ap.parse_args()
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"collaborative sampling, random weights, {args.device}, guidance {args.guidance:g}")
    for col in ("preset", "dtype", "solver", "batch", "s per batch", "images/s", "peak GiB", "steps run"):
        table.add_column(col, justify="right")
    for preset in args.preset:
        for dtype in args.dtype:
            for spec in args.solver:
                solver, steps = spec.split(":")
                for batch in args.batch:
                    try:
                        r = measure(args, preset, dtype, solver, int(steps), batch)
                    except torch.OutOfMemoryError:
                        table.add_row(preset, dtype, spec, str(batch), "out of memory", "", "", "")
                        torch.cuda.empty_cache()
                        continue
                    peak = f"{r['peak_gib']:.1f}" if r["peak_gib"] is not None else "-"
                    table.add_row(
                        preset,
                        dtype,
                        spec,
                        str(batch),
                        f"{r['s_per_batch']:.2f}",
                        f"{r['images_per_s']:.3f}",
                        peak,
                        f"{r['ran']} of {steps}",
                    )
                    Console().print(f"{preset} {dtype} {spec} batch {batch}: {r}")
    Console().print(table)


if __name__ == "__main__":
    main()
