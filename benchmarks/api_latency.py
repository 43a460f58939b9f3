"""Latency of the entry points on the shipped demo models: what a user waits for.

    .venv/bin/python benchmarks/api_latency.py                 # CPU, ~1 min
    .venv/bin/python benchmarks/api_latency.py --device cuda

Measured, each CLI figure in a fresh process (the median of ``--repeats``):
- ``cdiff --help``: the wall time of the whole process;
- CLI start-up to first step: from the process's start (the kernel's record of it) to the first
  model evaluation of the sampler in ``cdiff generate --num 1`` (imports, config, loading the
  models, reading the conditions), and the whole command's wall time;
- ``Pipeline.generate`` for a second image in the same process (models loaded, one image, the
  demo's default sampler and DPM-Solver++ 20 steps), after a first call that loads the models.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

CLI = [str(Path(sys.executable).with_name("cdiff"))]  # the installed entry point

# Runs `cdiff generate` in this process and reports the time from the process's start to the first
# call of the sampler's model (the predictor), read from /proc (Linux).
FIRST_STEP = r"""
import json, os, sys, time
def since_start():
    ticks = int(open(f"/proc/{os.getpid()}/stat").read().rsplit(")", 1)[1].split()[19])
    return float(open("/proc/uptime").read().split()[0]) - ticks / os.sysconf("SC_CLK_TCK")
from cdiff.diffusion import predictors
first = {}
call = predictors.CollabPredictor.__call__
def timed(self, *a, **k):
    first.setdefault("s", since_start())
    return call(self, *a, **k)
predictors.CollabPredictor.__call__ = timed
from cdiff.cli import app
try:
    app(sys.argv[1:], standalone_mode=False)
finally:
    print("FIRST_STEP", json.dumps({"first_step_s": first.get("s"), "total_s": since_start()}))
"""


def _median(xs: list[float]) -> float:
    return round(statistics.median(xs), 3)


def help_time(repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        subprocess.run([*CLI, "--help"], check=True, capture_output=True)
        times.append(time.perf_counter() - t0)
    return _median(times)


def first_step(repeats: int, device: str) -> dict[str, float]:
    firsts, totals = [], []
    for _ in range(repeats):
        with tempfile.TemporaryDirectory() as tmp:
            args = ["generate", "--num", "1", "--seed", "7", "--device", device, "--out", f"{tmp}/out"]
            r = subprocess.run([sys.executable, "-c", FIRST_STEP, *args], capture_output=True, text=True)
        line = next((x for x in r.stdout.splitlines() if x.startswith("FIRST_STEP")), None)
        if r.returncode != 0 or line is None:
            raise SystemExit(f"cdiff generate failed:\n{r.stdout}\n{r.stderr}")
        rec = json.loads(line.split(" ", 1)[1])
        firsts.append(rec["first_step_s"])
        totals.append(rec["total_s"])
    return {"start_to_first_step_s": _median(firsts), "generate_command_s": _median(totals)}


def second_image(repeats: int, device: str) -> dict[str, float]:
    from cdiff import Pipeline

    t0 = time.perf_counter()
    pipe = Pipeline.from_run(device=device)
    mask = pipe.examples()[0]["mask"]
    pipe.generate(mask=mask, text="He is in his thirties.", seed=7)
    first = time.perf_counter() - t0
    out = {"from_run_and_first_image_s": round(first, 3)}
    for name, sample in (("default", {}), ("dpm20", {"solver": "dpm", "steps": 20})):
        times = []
        for k in range(repeats):
            t1 = time.perf_counter()
            pipe.generate(mask=mask, text="He is in his thirties.", seed=8 + k, **sample)
            times.append(time.perf_counter() - t1)
        out[f"second_image_{name}_s"] = _median(times)
    s = pipe.config.sample
    out["default_sampler"] = f"{s.solver} {s.steps} steps, guidance {s.guidance}"
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--repeats", type=int, default=3)
    a = ap.parse_args()
    os.environ.setdefault("COLUMNS", "100")
    rec = {
        "device": a.device,
        "threads": __import__("torch").get_num_threads(),
        "help_s": help_time(a.repeats),
        **first_step(a.repeats, a.device),
        **second_image(a.repeats, a.device),
    }
    print(json.dumps(rec, indent=2))


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    main()
