"""What a visitor of cdiff studio waits for: time to the first preview and to the final image.

    .venv/bin/python benchmarks/app_latency.py                 # the demo models, CPU, ~1 min
    .venv/bin/python benchmarks/app_latency.py --repeats 7 --threads 2

Starts ``cdiff app`` on the shipped demo models in its own process (CPU; ``--threads`` for the
models, default the app's: all cores but one; it warms up before it listens), then, through
``gradio_client`` from this process, asks
the ``/generate`` endpoint for one collaborative image (DPM-Solver++ 20 steps, guidance 3, an example
mask and caption; a new seed each time) and measures, from the submit:
- ``first_preview_s``: the first streamed update holding a preview of the predicted x_0;
- ``final_image_s``: the update holding the final image, and that image fetched (as a page does);
- ``all_outputs_s``: the last update (the image files with metadata, influence maps, plot, overlay,
  downloads, details) received;
- ``server_s``: the server's wall time from the job's start to the image sampled and decoded;
and, for reference, ``library_s``: ``Pipeline.generate`` with the same settings in this process
(models loaded; no page, no preview, nothing written), with the app's threads and with all cores.
Medians of ``--repeats`` after a warm-up call.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SETTINGS = {"method": "collaborative", "solver": "dpm", "steps": 20, "guidance": 3.0}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_app(port: int, threads: int, log) -> subprocess.Popen:
    env = {**os.environ, "GRADIO_ANALYTICS_ENABLED": "False"}
    cmd = [
        sys.executable,
        "-m",
        "cdiff",
        "app",
        "--port",
        str(port),
        "--device",
        "cpu",
        "--threads",
        str(threads),
    ]
    return subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT)


def connect(url: str, proc: subprocess.Popen, timeout: float = 180.0):
    from gradio_client import Client

    t0 = time.perf_counter()
    while time.perf_counter() - t0 < timeout:
        if proc.poll() is not None:
            raise SystemExit(f"cdiff app exited with {proc.returncode}")
        try:
            return Client(url, verbose=False, download_files=False)
        except Exception:
            time.sleep(0.5)
    raise SystemExit(f"cdiff app did not answer on {url} within {timeout:.0f} s")


def one_job(client, mask: str, text: str, seed: int) -> dict[str, float]:
    """One generation; times from the submit to the first preview, the image (fetched), the last message
    (to 10 ms)."""
    import httpx
    from gradio_client import handle_file

    editor = {"background": handle_file(mask), "layers": [], "composite": None}
    t0 = time.perf_counter()
    job = client.submit(mask=editor, text=text, seed=seed, api_name="/generate", **SETTINGS)
    first = image = None
    seen, finished = 0, False
    while not finished:  # polled every 10 ms (iterating the job polls every 1 ms: a core's worth of CPU)
        finished = job.done()
        updates = job.outputs()
        for update in updates[seen:]:
            if first is None and str(update[1]).startswith("sampling"):
                first = time.perf_counter() - t0
            if image is None and update[2]:  # the images: fetch the first as a browser would
                httpx.get(update[2][0]["image"]["url"]).raise_for_status()
                image = time.perf_counter() - t0
        seen = len(updates)
        time.sleep(0.01)
    out = job.result()
    done = time.perf_counter() - t0
    return {
        "first_preview_s": first,
        "final_image_s": image,
        "all_outputs_s": done,
        "server_s": out[9]["wall_s"],
    }


def library_time(mask: str, text: str, repeats: int, threads: int) -> float:
    import torch

    from cdiff import Pipeline

    torch.set_num_threads(threads)
    pipe = Pipeline.from_run(device="cpu")
    pipe.generate(mask=mask, text=text, seed=0, **{k: v for k, v in SETTINGS.items() if k != "method"})
    times = []
    for k in range(repeats):
        t0 = time.perf_counter()
        pipe.generate(
            mask=mask, text=text, seed=100 + k, **{k: v for k, v in SETTINGS.items() if k != "method"}
        )
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--threads", type=int, default=None, help="the models' CPU threads in the app")
    a = ap.parse_args()
    from cdiff.cli.studio import model_threads
    from cdiff.stages.demo_weights import shipped_run
    from cdiff.stages.generate import read_pairs_file

    ex = read_pairs_file(shipped_run() / "examples" / "pairs.jsonl")[0]
    threads, cores = model_threads(a.threads), model_threads(None) + 1
    port = free_port()
    with tempfile.TemporaryFile() as log:
        proc = start_app(port, threads, log)
        try:
            client = connect(f"http://127.0.0.1:{port}/", proc)
            one_job(client, ex["mask"], ex["text"], 0)  # warm-up
            runs = [one_job(client, ex["mask"], ex["text"], 1 + k) for k in range(a.repeats)]
        finally:
            proc.terminate()
            proc.wait(30)
    rec = {
        "settings": {
            **SETTINGS,
            "device": "cpu",
            "cores": cores,
            "app_threads": threads,
            "repeats": a.repeats,
        },
        **{key: round(statistics.median(r[key] for r in runs), 3) for key in runs[0]},
        "library_s": round(library_time(ex["mask"], ex["text"], a.repeats, threads), 3),
        f"library_{cores}_threads_s": round(library_time(ex["mask"], ex["text"], a.repeats, cores), 3),
        "runs": runs,
    }
    print(json.dumps(rec, indent=2))


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    main()
