"""Concurrent runs never lose each other's work: one writer per output, numbered folders claimed once.

The second writer is always a separate process (a ``python -c`` holder, or a real ``cdiff``
command), so the locks are tested as the kernel enforces them between processes.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cdiff.cli import app
from cdiff.errors import InputError
from cdiff.locks import lock_path
from cdiff.rundir import MANIFEST, begin_stage, check_output, partial_dir, require_stage

runner = CliRunner()
ENV = {**os.environ, "OMP_NUM_THREADS": "1"}
BUSY = r"{out} is already being written by pid {pid} \(since \d\d:\d\d\); wait for it or stop it"

# Holds the lock of argv[1] as a stage does (a .partial folder with a config), says "ready", and
# finishes the stage (manifest, rename) when its stdin closes.
HOLDER = """
import sys
from pathlib import Path
from cdiff.rundir import begin_stage, check_output, finish_stage
out = Path(sys.argv[1])
check_output(out, False)
partial, _ = begin_stage(out, "a: 1\\n", False)
(partial / "checkpoint.pt").write_bytes(b"state")
print("ready", flush=True)
sys.stdin.read()
finish_stage(partial, out, {"stage": "train-x", "outputs": {"w": 1}})
print("done", flush=True)
"""

# Claims a numbered folder under argv[1] once argv[2] exists (all claimers start together).
CLAIMER = """
import sys, time
from pathlib import Path
from cdiff.outputs import next_output_dir
go = Path(sys.argv[2])
while not go.exists():
    time.sleep(0.001)
print(next_output_dir(Path(sys.argv[1])).name, flush=True)
"""


def holder(out: Path) -> subprocess.Popen:
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(out)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env=ENV,
    )
    assert proc.stdout.readline().strip() == "ready"
    return proc


def message(fn) -> str:
    with pytest.raises(InputError) as exc:
        fn()
    return str(exc.value)


def one_line(result) -> str:
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in result.output, result.output
    return lines[0]


def test_second_writer_of_a_stage_fails_at_once(tmp_path):
    out = tmp_path / "run" / "vae"
    proc = holder(out)
    try:
        busy = BUSY.format(out=re.escape(str(out)), pid=proc.pid)
        t0 = time.perf_counter()
        for force in (False, True):  # --force does not take over a running stage either
            assert re.fullmatch(busy, message(lambda f=force: check_output(out, f)))
            assert re.fullmatch(busy, message(lambda f=force: begin_stage(out, "a: 1\n", f)))
        assert time.perf_counter() - t0 < 1.0
        text = message(lambda: require_stage(out, "train-vae", "cdiff train-vae"))
        assert text.startswith(f"'train-vae' is still being written in {out} by pid {proc.pid} (since ")
        assert "--resume" not in text  # never the advice that starts a second trainer
        assert (partial_dir(out) / "checkpoint.pt").read_bytes() == b"state"  # untouched
        assert lock_path(out).read_text().split()[0] == str(proc.pid)
    finally:
        proc.stdin.close()
        assert proc.stdout.readline().strip() == "done"
        proc.wait(timeout=30)
    assert json.loads((out / MANIFEST).read_text())["stage"] == "train-x"  # the first writer's work
    assert not lock_path(out).exists() and not partial_dir(out).exists()
    assert "finished work" in message(lambda: check_output(out, False))


def test_a_killed_writer_holds_nothing(tmp_path):
    out = tmp_path / "vae"
    proc = holder(out)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    assert lock_path(out).exists()  # left behind, but no longer locked: the kernel let go
    text = message(lambda: require_stage(out, "train-vae", "cdiff train-vae --run R"))
    assert "it was interrupted" in text and "`cdiff train-vae --run R --resume`" in text
    assert "`cdiff train-vae --run R --force` to start over" in text
    partial, resumed = begin_stage(out, "a: 1\n", True)  # --force: starts over
    assert not resumed and sorted(p.name for p in partial.iterdir()) == ["config.yaml"]


def test_numbered_folders_are_claimed_once(tmp_path):
    root, go = tmp_path / "samples", tmp_path / "go"
    (root / "002").mkdir(parents=True)  # taken before: the claims start after it
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", CLAIMER, str(root), str(go)], stdout=subprocess.PIPE, text=True, env=ENV
        )
        for _ in range(4)
    ]
    time.sleep(1.0)  # every claimer imported and waiting
    go.touch()
    names = [p.communicate(timeout=60)[0].strip() for p in procs]
    assert sorted(names) == ["003", "004", "005", "006"]


def _cdiff(*args, cwd: Path) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "cdiff", *map(str, args)]
    return subprocess.Popen(cmd, cwd=cwd, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _wait_for(path: Path, proc: subprocess.Popen, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, f"{path} never appeared"
        time.sleep(0.01)


def test_two_generate_runs_into_one_out(tmp_path, monkeypatch):
    """A real ``cdiff generate --out X`` runs; a second one into X fails at once and X is the first's."""
    import cdiff.stages.generate  # noqa: F401  (imported: only the refusal is timed)

    out = tmp_path / "same"
    first = _cdiff("generate", "--num", 3, "--steps", 12, "--seed", 5, "--out", out, cwd=tmp_path)
    _wait_for(lock_path(out), first)
    monkeypatch.chdir(tmp_path)
    t0 = time.perf_counter()
    for force in ([], ["--force"]):
        second = runner.invoke(app, ["generate", "--num", "1", "--steps", "2", "--out", str(out), *force])
        assert second.exit_code == 2
        assert re.fullmatch("error: " + BUSY.format(out=re.escape(str(out)), pid=first.pid), one_line(second))
    assert time.perf_counter() - t0 < 2.0
    assert first.wait(timeout=300) == 0, first.communicate()
    manifest = json.loads((out / MANIFEST).read_text())
    assert [r["seed"] for r in manifest["outputs"]["images"]] == [5, 6, 7] * 4  # the first run's images
    assert len(list(out.glob("*.png"))) == 13  # 12 images and the grid
    assert not lock_path(out).exists() and not partial_dir(out).exists()


def test_two_generate_runs_without_out_get_their_own_folders(tmp_path):
    runs = [_cdiff("generate", "--num", 1, "--steps", 2, "--seed", s, cwd=tmp_path) for s in (1, 2)]
    for proc in runs:
        assert proc.wait(timeout=300) == 0, proc.communicate()
    folders = sorted((tmp_path / "outputs").iterdir())
    assert [f.name for f in folders] == ["000", "001"]  # no lock, partial or half-written folder
    seeds = set()
    for f in folders:
        manifest = json.loads((f / MANIFEST).read_text())
        seeds |= {r["seed"] for r in manifest["outputs"]["images"]}
        assert {p.name for p in f.iterdir()} == {
            f"{k:03d}-{manifest['outputs']['images'][0]['seed']:06d}.png" for k in range(4)
        } | {"grid.png", MANIFEST}
    assert seeds == {1, 2}  # each run's images in its own folder


TINY = [
    "vae.block_out_channels=[8,16]",
    "vae.layers_per_block=1",
    "vae.norm_num_groups=4",
    "vae.perceptual_weight=0",
    "vae.train.batch_size=4",
    "vae.train.checkpoint_every=1",
    "vae.train.log_every=1",
]


def _sets() -> list[str]:
    return [a for s in TINY for a in ("--set", s)]


def test_a_second_trainer_fails_at_once_and_force_starts_over(tmp_path):
    """A running ``train-vae`` refuses a second one (even with --resume or --force) and its readers are
    told it runs; once it is killed they are told it was interrupted, and --force starts over."""
    run = tmp_path / "run"
    assert (
        runner.invoke(app, ["prepare", "--num", "12", "--resolution", "32", "--run", str(run)]).exit_code == 0
    )
    first = _cdiff("train-vae", "--run", run, "--steps", 100000, *_sets(), cwd=tmp_path)
    try:
        metrics = partial_dir(run / "vae") / "metrics.jsonl"
        _wait_for(metrics, first)
        while len(metrics.read_text().splitlines()) < 3:  # past the steps the --force run will make
            assert first.poll() is None, first.communicate()
            time.sleep(0.05)
        busy = BUSY.format(out=re.escape(str(run / "vae")), pid=first.pid)
        for extra in ([], ["--resume"], ["--force"]):
            r = runner.invoke(app, ["train-vae", "--run", str(run), *extra, *_sets()])
            assert r.exit_code == 2 and re.fullmatch("error: " + busy, one_line(r)), r.output
        r = runner.invoke(app, ["train-unimodal", "--modality", "text", "--run", str(run)])
        assert r.exit_code == 2 and f"'train-vae' is still being written in {run / 'vae'}" in one_line(r)
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait(timeout=60)
    r = runner.invoke(app, ["train-unimodal", "--modality", "text", "--run", str(run)])
    assert r.exit_code == 2 and "it was interrupted" in one_line(r) and "--resume" in r.output
    r = runner.invoke(
        app, ["train-vae", "--run", str(run), "--steps", "100000", *_sets()]
    )  # the same settings
    last = r.output.strip().splitlines()[-1]
    assert r.exit_code == 2 and "interrupted run" in last and "--resume" in last and "--force" in last
    r = runner.invoke(app, ["train-vae", "--run", str(run), "--steps", "2", "--force", *_sets()])
    assert r.exit_code == 0, r.output
    steps = [json.loads(line)["step"] for line in (run / "vae" / "metrics.jsonl").read_text().splitlines()]
    assert steps[0] == 1 and max(steps) == 2  # started over, not resumed from the killed run
    assert not list(run.glob("vae.*")) and not list((run / "vae").rglob("*.tmp"))
