"""Peak memory of ``cdiff import-official`` against the checkpoint's size, on a fake release of the real shapes.

    nice -n 10 .venv/bin/python benchmarks/import_official.py --resolution 256 [--kind codiff_mask_text]

1. A subprocess writes ``{res}_{kind}.ckpt`` with every key and shape of the released file (from the
   manifests, REFERENCE.md §5; random float32 values, the real schedule buffers, a Lightning-like
   top level) and a 30,522-token BERT-style vocabulary.
2. Another subprocess imports it into a run while a thread samples its resident memory
   (``/proc/self/status``: anonymous and file-backed pages) every 20 ms; the peak is compared
   with the checkpoint's size. The baseline (torch + diffusers imported, nothing loaded) is
   reported separately.

Needs about twice the checkpoint's size in free disk (the file and the run) and prints one JSON line.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
MANIFESTS = Path(
    os.environ.get("CDIFF_OFFICIAL_MANIFESTS", REPO / "tests" / "fixtures" / "official_ckpt_manifest")
)


def build(resolution: int, kind: str, folder: Path) -> None:
    import torch

    from cdiff.models.official import ldm_schedule
    from cdiff.stages.import_official import resolve_config

    shapes = json.loads((MANIFESTS / f"{resolution}_{kind}.json").read_text())["state_dict"]
    schedule = ldm_schedule(resolve_config(resolution).diffusion)
    g = torch.Generator().manual_seed(0)
    sd = {
        k: schedule[k].float() if k in schedule else torch.empty(s).uniform_(-0.05, 0.05, generator=g)
        for k, s in shapes.items()
    }
    for k in [k for k in sd if k.endswith("num_batches_tracked")]:
        sd[k] = torch.zeros((), dtype=torch.int64)
    torch.save({"state_dict": sd, "global_step": 0, "epoch": 0}, folder / f"{resolution}_{kind}.ckpt")
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    (folder / "bert").mkdir(exist_ok=True)
    (folder / "bert" / "vocab.txt").write_text("\n".join(vocab + [f"w{i}" for i in range(30522 - 5)]) + "\n")


def _status() -> dict[str, int]:
    fields = {}
    for line in Path("/proc/self/status").read_text().splitlines():
        name, _, value = line.partition(":")
        if name in ("VmRSS", "RssAnon", "RssFile", "VmHWM"):
            fields[name] = int(value.split()[0]) * 1024
    return fields


def measure(resolution: int, kind: str, folder: Path) -> None:
    from cdiff.stages import import_official as stage

    base = _status()
    peak = dict(base)
    done = threading.Event()

    def sample() -> None:
        while not done.is_set():
            for k, v in _status().items():
                peak[k] = max(peak[k], v)
            time.sleep(0.02)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    t0 = time.perf_counter()
    report = stage.run(
        [folder / f"{resolution}_{kind}.ckpt"],
        resolution,
        folder / "run",
        tokenizer=str(folder / "bert"),
        log=lambda m: None,
    )
    wall = time.perf_counter() - t0
    done.set()
    sampler.join()
    print(
        json.dumps(
            {
                "baseline": base,
                "peak": peak,
                "wall_s": round(wall, 1),
                "parameters": sum(report.parameters.values()),
            }
        )
    )


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--resolution", type=int, default=256, choices=(256, 512))
    ap.add_argument("--kind", default="codiff_mask_text", choices=("vae", "text", "mask", "codiff_mask_text"))
    ap.add_argument("--workdir", type=Path, default=None, help="default: a temporary folder, removed after")
    ap.add_argument("--step", choices=("build", "measure"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.step:  # inside a subprocess
        (build if args.step == "build" else measure)(args.resolution, args.kind, args.workdir)
        return 0
    folder = args.workdir or Path(tempfile.mkdtemp(prefix="cdiff-import-bench-"))
    folder.mkdir(parents=True, exist_ok=True)
    try:
        common = [sys.executable, __file__, "--resolution", str(args.resolution), "--kind", args.kind]
        common += ["--workdir", str(folder)]
        t0 = time.perf_counter()
        subprocess.run([*common, "--step", "build"], check=True)
        build_s = time.perf_counter() - t0
        out = subprocess.run([*common, "--step", "measure"], check=True, capture_output=True, text=True)
        result = json.loads(out.stdout.strip().splitlines()[-1])
        size = (folder / f"{args.resolution}_{args.kind}.ckpt").stat().st_size
        gib = 2**30
        peak, base = result["peak"], result["baseline"]
        summary = {
            "checkpoint": f"{args.resolution}_{args.kind}.ckpt",
            "checkpoint_gib": round(size / gib, 2),
            "parameters_written": result["parameters"],
            "peak_rss_gib": round(peak["VmHWM"] / gib, 2),
            "peak_rss_over_baseline_gib": round((peak["VmHWM"] - base["VmRSS"]) / gib, 2),
            "peak_anonymous_gib": round(peak["RssAnon"] / gib, 2),
            "peak_file_backed_gib": round(peak["RssFile"] / gib, 2),
            "baseline_rss_gib": round(base["VmRSS"] / gib, 2),
            "peak_over_checkpoint": round((peak["VmHWM"] - base["VmRSS"]) / size, 2),
            "import_wall_s": result["wall_s"],
            "build_wall_s": round(build_s, 1),
        }
        print(json.dumps(summary))
    finally:
        if args.workdir is None:
            shutil.rmtree(folder, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
