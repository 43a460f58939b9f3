"""Speed of the synthetic generator and of ``cdiff prepare --source synthetic``.

    taskset -c 0 .venv/bin/python benchmarks/prepare_synthetic.py --num 2000 --resolution 64

Reports samples/s for rendering alone and for the whole stage (render, write PNGs, captions,
tokenizer, hashes) with one worker process, i.e. on one core under ``taskset -c 0``.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

from cdiff import config as C
from cdiff.data.synthetic import render_sample
from cdiff.stages import prepare


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--num", type=int, default=2000)
    ap.add_argument("--resolution", type=int, default=64)
    ap.add_argument("--workers", type=int, default=1)
    args = ap.parse_args()

    t0 = time.perf_counter()
    for i in range(args.num):
        render_sample(0, i, args.resolution)
    render_s = time.perf_counter() - t0

    cfg = C.load_config(
        "demo", {"data.num": args.num, "data.resolution": args.resolution, "data.workers": args.workers}
    )
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        report = prepare.run(cfg, Path(tmp) / "data")
        stage_s = time.perf_counter() - t0

    table = Table(
        title=f"synthetic data: {args.num} samples at {args.resolution} px, {args.workers} worker(s)"
    )
    for col in ("what", "seconds", "samples/s"):
        table.add_column(col, justify="right" if col != "what" else "left")
    table.add_row("render only", f"{render_s:.2f}", f"{args.num / render_s:.0f}")
    table.add_row("cdiff prepare (whole stage)", f"{stage_s:.2f}", f"{args.num / stage_s:.0f}")
    Console().print(table)
    assert report.kept["train"] + report.kept["val"] == args.num


if __name__ == "__main__":
    main()
