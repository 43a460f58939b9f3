"""Two CPU processes (gloo) train through the shared loop and end with identical weights."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import torch


def test_two_processes_identical_weights(tmp_path):
    script = Path(__file__).parent / "helpers" / "ddp_train.py"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MASTER_ADDR": "127.0.0.1"}
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc_per_node",
        "2",
        "--master_port",
        "29517",
        str(script),
        str(tmp_path),
    ]
    result = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    r0 = torch.load(tmp_path / "rank0.pt", weights_only=True)
    r1 = torch.load(tmp_path / "rank1.pt", weights_only=True)
    assert r0["world"] == r1["world"] == 2
    assert r0["processes"] == r1["processes"] == 2 and {r0["index"], r1["index"]} == {0, 1}
    assert r0["backend"] == "gloo"
    for k in r0["state"]:
        assert torch.equal(r0["state"][k], r1["state"][k]), k
    torch.manual_seed(0)
    start = torch.nn.Sequential(torch.nn.Linear(4, 16), torch.nn.Tanh(), torch.nn.Linear(16, 1))
    assert not torch.equal(start[0].weight, r0["state"]["0.weight"])  # it did train
    assert (tmp_path / "train" / "checkpoint.pt").is_file()
