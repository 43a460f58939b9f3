"""Sampling speed of whole images in one process, and how far each faster setting moves them.

    .venv/bin/python benchmarks/throughput.py                                   # CPU, the demo models
    .venv/bin/python benchmarks/throughput.py --variants float32 compile --batch 1 16
    .venv/bin/python benchmarks/throughput.py --run runs/c256 --device cuda --variants float32 bfloat16 compile

For each variant (``float32``; ``bfloat16``/``float16``: ``--dtype``; ``compile``: ``--compile``,
float32; ``compile-bfloat16``), one process loads the models (``cdiff.Pipeline``), generates once
to warm up (and, with ``compile``, to compile: that time is reported apart), then times
``--repeats`` generations of one example pair with ``--num`` = batch (one forward pass per step:
``batch_size`` = batch): collaborative, DPM-Solver++ 20 steps, guidance 3 unless told otherwise.
Images/s = batch / median time. PSNR: each variant's images against float32's (same seeds).
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import subprocess
import sys
import time

import numpy as np

VARIANTS = {
    "float32": ("float32", False),
    "bfloat16": ("bfloat16", False),
    "float16": ("float16", False),
    "compile": ("float32", True),
    "compile-bfloat16": ("bfloat16", True),
}


def child(args: argparse.Namespace, variant: str, batch: int, out: str) -> dict:
    import torch

    from cdiff import Pipeline

    if args.threads:
        torch.set_num_threads(args.threads)
    dtype, compiled = VARIANTS[variant]
    pipe = Pipeline.from_run(
        args.run,
        device=args.device,
        dtype=dtype,
        solver=args.solver,
        steps=args.steps,
        guidance=args.guidance,
        batch_size=batch,
        compile=compiled,
    )
    ex = pipe.examples()[0] if pipe.examples() else {}

    def once():
        t0 = time.perf_counter()
        r = pipe.generate(
            mask=ex.get("mask"), text=ex.get("text"), method=args.method, num=batch, progress=False
        )
        if pipe.run.device.type == "cuda":
            torch.cuda.synchronize()
        return time.perf_counter() - t0, r

    first, _ = once()
    if pipe.run.device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    times, result = [], None
    for _ in range(args.repeats):
        t, result = once()
        times.append(t)
    np.save(out, np.stack(result.images))
    peak = torch.cuda.max_memory_allocated() / 2**30 if pipe.run.device.type == "cuda" else None
    return {"first_s": first, "median_s": statistics.median(times), "peak_gib": peak}


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return math.inf if mse == 0 else 10 * math.log10(255**2 / mse)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--run", default=None, help="a run directory (default: the shipped demo models)")
    ap.add_argument("--device", default="cpu")
    ap.add_argument(
        "--variants", nargs="+", default=["float32", "bfloat16", "compile"], choices=list(VARIANTS)
    )
    ap.add_argument("--batch", type=int, nargs="+", default=[1, 16])
    ap.add_argument("--method", default="collaborative")
    ap.add_argument("--solver", default="dpm")
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--guidance", type=float, default=3.0)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    ap.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        variant, batch, out = args.child
        print(json.dumps(child(args, variant, int(batch), out)))
        return
    import tempfile

    from rich.console import Console
    from rich.table import Table

    rows, images = [], {}
    with tempfile.TemporaryDirectory() as tmp:
        for batch in args.batch:
            for variant in args.variants:
                out = f"{tmp}/{variant}-{batch}.npy"
                cmd = [sys.executable, __file__, *sys.argv[1:], "--child", variant, str(batch), out]
                r = subprocess.run(cmd, capture_output=True, text=True)
                if r.returncode != 0:
                    rows.append((variant, batch, None, r.stderr.strip().splitlines()[-1][:80]))
                    continue
                rows.append((variant, batch, json.loads(r.stdout.strip().splitlines()[-1]), ""))
                images[variant, batch] = np.load(out)
    table = Table(
        title=f"{args.method}, {args.solver} {args.steps} steps, guidance {args.guidance:g}, {args.device}"
    )
    for col in (
        "variant",
        "batch",
        "s per call",
        "images/s",
        "first call (s)",
        "PSNR vs float32",
        "peak GiB",
    ):
        table.add_column(col, justify="right")
    for variant, batch, r, error in rows:
        if r is None:
            table.add_row(variant, str(batch), "failed", error, "", "", "")
            continue
        ref = images.get(("float32", batch))
        quality = (
            "reference"
            if variant == "float32"
            else f"{psnr(images[variant, batch], ref):.1f} dB"
            if ref is not None
            else "-"
        )
        peak = f"{r['peak_gib']:.2f}" if r["peak_gib"] is not None else "-"
        table.add_row(
            variant,
            str(batch),
            f"{r['median_s']:.3f}",
            f"{batch / r['median_s']:.2f}",
            f"{r['first_s']:.1f}",
            quality,
            peak,
        )
    Console().print(table)


if __name__ == "__main__":
    main()
