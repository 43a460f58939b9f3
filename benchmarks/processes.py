"""One process against several: the same ``cdiff generate`` (or ``evaluate``) alone and under
``accelerate launch``, its wall time, and whether the files are the same bytes.

    .venv/bin/python benchmarks/processes.py                          # CPU: 1 process vs 2 (gloo)
    .venv/bin/python benchmarks/processes.py --num 8 --processes 1 2 --threads 2 1
    .venv/bin/python benchmarks/processes.py --gpus --processes 1 8   # one process per GPU

Each configuration runs ``cdiff generate`` on the shipped demo models (or ``--run``) into its own
folder, timed from the command's start to its end (the imports and the model loading included, as
a user waits for them). ``--threads`` gives each configuration's torch threads per process
(OMP_NUM_THREADS), in the order of ``--processes``. Every file but the manifest (its times differ)
is compared with those of one process with as many threads (CPU kernels may round apart with
another thread count), so give that run first (the default: 1 × 2 threads, 1 × 1, 2 × 1).
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def command(n: int, gpus: bool) -> list[str]:
    if n == 1:
        return [sys.executable, "-m", "cdiff"]
    launch = [sys.executable, "-m", "accelerate.commands.launch", "--num_processes", str(n)]
    launch += ["--multi_gpu"] if gpus else ["--cpu"]
    launch += ["--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no"]
    return [*launch, "--main_process_port", str(free_port()), "-m", "cdiff"]


def files(folder: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(folder)): p.read_bytes()
        for p in sorted(folder.rglob("*"))
        if p.is_file() and p.name != "manifest.json"
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--run", default=None)
    ap.add_argument("--processes", type=int, nargs="+", default=[1, 1, 2])
    ap.add_argument("--threads", type=int, nargs="+", default=[2, 1, 1])
    ap.add_argument("--num", type=int, default=8, help="images per condition (4 example conditions)")
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--solver", default="dpm")
    ap.add_argument("--batch-size", type=int, default=4)
    ap.add_argument("--gpus", action="store_true", help="--multi_gpu instead of --cpu")
    args = ap.parse_args()
    if len(args.threads) != len(args.processes):
        ap.error("give as many --threads as --processes")
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"cdiff generate --num {args.num} (4 conditions), {args.solver} {args.steps} steps")
    for col in (
        "processes",
        "threads each",
        "wall time (s)",
        "images/s",
        "same bytes as 1 process, same threads",
    ):
        table.add_column(col, justify="right")
    with tempfile.TemporaryDirectory() as tmp:
        single: dict[int, dict[str, bytes]] = {}  # one process's files, by threads
        for k, (n, threads) in enumerate(zip(args.processes, args.threads, strict=True)):
            out = Path(tmp) / f"out{k}"
            gen = ["generate", "--num", str(args.num), "--steps", str(args.steps), "--solver", args.solver]
            gen += ["--batch-size", str(args.batch_size), "--out", str(out)]
            gen += ["--run", args.run] if args.run else []
            env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
            t0 = time.perf_counter()
            r = subprocess.run([*command(n, args.gpus), *gen], env=env, capture_output=True, text=True)
            wall = time.perf_counter() - t0
            if r.returncode != 0:
                table.add_row(str(n), str(threads), "failed", r.stderr.strip().splitlines()[-1][:60], "")
                continue
            got = files(out)
            if n == 1:
                single.setdefault(threads, got)
            ref = single.get(threads)
            same = (
                "-"
                if ref is None
                else "yes"
                if got == ref
                else f"no ({sum(ref.get(f) != b for f, b in got.items())} differ)"
            )
            images = sum(f.endswith(".png") and f != "grid.png" for f in got)
            table.add_row(str(n), str(threads), f"{wall:.1f}", f"{images / wall:.2f}", same)
    Console().print(table)


if __name__ == "__main__":
    main()
