"""Many processes: ``accelerate launch --cpu`` (gloo) with 2 processes writes the files one process
writes, byte for byte; an interrupted evaluation resumes without sampling its finished pairs again."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from test_pipeline_tiny import TINY, cli

from cdiff.processes import Processes
from cdiff.stages import evaluate as evaluate_stage
from cdiff.stages.evaluate_cache import PENDING

TIMES = {"created", "wall_time_s", "images_per_s"}  # what differs between any two runs


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def launch(*args) -> subprocess.CompletedProcess:
    """``accelerate launch --cpu --num_processes 2 -m cdiff ARGS`` with the tiny models' settings."""
    sets = [a for s in TINY for a in ("--set", s)]
    accelerate = [sys.executable, "-m", "accelerate.commands.launch", "--cpu", "--num_processes", "2"]
    accelerate += ["--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no"]
    accelerate += ["--main_process_port", str(free_port())]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [*accelerate, "-m", "cdiff", *map(str, args), *sets]
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def run_dir(tiny_run):
    """test_pipeline_tiny's run (4 validation faces), made once a session."""
    return tiny_run


def files(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def without_times(obj):
    if isinstance(obj, dict):
        return {k: without_times(v) for k, v in obj.items() if k not in TIMES}
    if isinstance(obj, list):
        return [without_times(v) for v in obj]
    return obj


def same_outputs(a: Path, b: Path) -> None:
    fa, fb = files(a), files(b)
    assert sorted(fa) == sorted(fb)
    for name in fa:
        if name.endswith(".json"):  # manifests and metrics: equal but for the times
            assert without_times(json.loads(fa[name])) == without_times(json.loads(fb[name])), name
        else:
            assert fa[name] == fb[name], name


def test_rounds_deal_out_every_item_once():
    items = list(range(7))
    shares = [list(Processes(k, 3).rounds(items)) for k in range(3)]
    assert shares == [[0, 3, 6], [1, 4, None], [2, 5, None]]
    assert sorted(x for s in shares for x in s if x is not None) == items


@pytest.fixture
def one_thread():
    """The single process with the threads of each launched one: CPU kernels may round apart with
    another thread count (on GPUs each process has a whole GPU, as a single process has)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_generate_and_evaluate_two_processes_write_the_same_bytes(run_dir, tmp_path, one_thread):
    common = ["--run", run_dir, "--steps", 3]  # the tiny settings batch 3 images
    gen = ["generate", *common, "--num", 3, "--method", "all", "--save-intermediates"]
    r = cli(*gen, "--out", tmp_path / "g1")
    assert r.exit_code == 0, r.output
    r = launch(*gen, "--out", tmp_path / "g2")
    assert r.returncode == 0, r.stderr[-3000:]
    assert r.stdout.count("wrote ") == 1  # the main process reports, the other one is quiet
    same_outputs(tmp_path / "g1", tmp_path / "g2")

    ev = ["evaluate", *common, "--pairs", 4, "--method", "collaborative", "--method", "mask"]
    r = cli(*ev, "--out", tmp_path / "e1")
    assert r.exit_code == 0, r.output
    r = launch(*ev, "--out", tmp_path / "e2")
    assert r.returncode == 0, r.stderr[-3000:]
    assert r.stdout.count("report:") == 1
    same_outputs(tmp_path / "e1", tmp_path / "e2")


class Interrupt(Exception):
    pass


def test_an_interrupted_evaluation_keeps_its_finished_pairs(run_dir, tmp_path, monkeypatch):
    from cdiff.cli.common import resolve
    from cdiff.stages.run import Run

    cfg = resolve("demo", {}, [*TINY, "sample.batch_size=2", "sample.steps=2"])
    req = evaluate_stage.EvaluateRequest(methods=["collaborative", "mask"], pairs=4)
    batches: list[tuple[str, int]] = []
    real_sample = evaluate_stage.gen.sample

    def counting(cfg, greq, run, progress, on_step, done, keep):
        def keep_and_count(first, images):
            batches.append((greq.method, first))
            keep(first, images)
            if len(batches) == 3:  # collaborative's 2 batches, then the first of mask's
                raise Interrupt

        return real_sample(cfg, greq, run, progress, on_step, done, keep_and_count)

    monkeypatch.setattr(evaluate_stage.gen, "sample", counting)
    out = tmp_path / "ev"
    with pytest.raises(Interrupt):
        evaluate_stage.run(cfg, req, Run(run_dir), run_dir / "data", out, log=lambda _: None)
    pending = out.with_name("ev.partial") / PENDING
    assert len(list((pending / "collaborative").glob("*.png"))) == 4
    assert len(list((pending / "mask").glob("*.png"))) == 2
    batches.clear()
    report = evaluate_stage.run(cfg, req, Run(run_dir), run_dir / "data", out, log=lambda _: None)
    assert batches == [("mask", 2)]  # only what was missing
    assert not (out / PENDING).exists()
    monkeypatch.setattr(evaluate_stage.gen, "sample", real_sample)
    whole = evaluate_stage.run(
        cfg, req, Run(run_dir), run_dir / "data", tmp_path / "whole", log=lambda _: None
    )
    assert without_times(report.metrics) == without_times(whole.metrics)
    same_outputs(out, tmp_path / "whole")
