"""Recovery from faults: --force starts over, temp files are never shipped, user folders are never
deleted, failed writes are one line and leave nothing half-written, files get the usual mode, and
manifests of the wrong shape are named."""

from __future__ import annotations

import errno
import json
import os
import shutil
from collections import namedtuple
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn
from typer.testing import CliRunner

from cdiff import rundir
from cdiff.cli import app
from cdiff.config import TrainConfig
from cdiff.errors import InputError
from cdiff.locks import lock_path
from cdiff.rundir import (
    MANIFEST,
    atomic_write_bytes,
    begin_stage,
    check_free_space,
    check_output,
    finish_stage,
    output_sha,
    partial_dir,
    read_manifest,
    require_stage,
    write_error,
    written_by_cdiff,
)
from cdiff.stages.demo_weights import shipped_run
from cdiff.stages.training_common import TrainingOutput
from cdiff.training.loop import CKPT, METRICS, Task, fit

runner = CliRunner()
FAST = ["--num", "1", "--steps", "2"]


def message(fn) -> str:
    with pytest.raises(InputError) as exc:
        fn()
    return str(exc.value)


def one_line(result) -> str:
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in result.output, result.output
    return lines[0]


def user_folder(path: Path) -> Path:
    path.mkdir(parents=True)
    (path / "thesis.tex").write_text("years of work")
    (path / "figures").mkdir()
    (path / "figures" / "a.png").write_bytes(b"png")
    return path


def untouched(path: Path) -> bool:
    return (path / "thesis.tex").read_text() == "years of work" and (path / "figures" / "a.png").is_file()


# ---- --force starts over --------------------------------------------------------------------


class Line(Task):
    trainable = ("net",)

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.net = nn.Linear(2, 1)

    def forward(self, batch, generator):
        x, y = batch
        return ((self.net(x) - y) ** 2).mean(), {}


class Pairs(torch.utils.data.Dataset):
    def __len__(self):
        return 16

    def __getitem__(self, i):
        x = torch.tensor([float(i), 1.0]) / 16
        return x, x.sum(0, keepdim=True)


def train(stage: TrainingOutput, steps: int, resume: bool = False):
    cfg = TrainConfig(steps=steps, batch_size=4, lr=1e-2, checkpoint_every=5, log_every=5)
    return fit(Line(), Pairs(), cfg, stage.begin(cfg), resume=resume, show_progress=False)


def test_force_starts_a_training_over(tmp_path):
    out = tmp_path / "stage"
    train(TrainingOutput(out, False), 10)  # interrupted: never finished
    partial = partial_dir(out)
    assert (partial / CKPT).is_file()
    with pytest.raises(InputError, match="--resume"):  # without --force: the loop asks
        train(TrainingOutput(out, False), 10)
    (partial / "stale.png").write_bytes(b"old grid")
    result = train(TrainingOutput(out, True), 10)  # --force: no "pass --resume", a fresh start
    assert result.step == 10 and not (partial / "stale.png").exists()
    assert [json.loads(line)["step"] for line in (partial / METRICS).read_text().splitlines()] == [5, 10]
    (partial / CKPT).write_bytes(b"torn")  # a damaged checkpoint: --resume refuses it, naming --force
    with pytest.raises(InputError, match="--force"):
        train(TrainingOutput(out, False), 10, resume=True)
    stage = TrainingOutput(out, True)
    assert train(stage, 10, resume=True).step == 10  # --force (even with --resume) starts over
    stage.finish("train-x", TrainConfig(), {}, {})
    assert not (out / CKPT).exists() and not lock_path(out).exists() and not partial.exists()


def test_force_deletes_an_interrupted_partial_folder(tmp_path):
    out = tmp_path / "out"
    partial, _ = begin_stage(out, "a: 1\n", False)
    (partial / "progress.jsonl").write_text("{}\n")
    assert begin_stage(out, "a: 1\n", False) == (partial, True)  # the same settings: resumed
    partial, resumed = begin_stage(out, "a: 1\n", True)
    assert not resumed and sorted(p.name for p in partial.iterdir()) == ["config.yaml"]


# ---- temp files -----------------------------------------------------------------------------


def test_finish_ships_no_temp_files(tmp_path):
    out = tmp_path / "vae"
    partial, _ = begin_stage(out, "a: 1\n", False)
    (partial / "model.safetensors").write_bytes(b"weights")
    (partial / f".{CKPT}.4242.tmp").write_bytes(b"torn checkpoint")
    (partial / "samples").mkdir()
    (partial / "samples" / "step_000010.png").write_bytes(b"png")
    (partial / "samples" / ".step_000020.png.x1y2.tmp").write_bytes(b"torn png")
    finish_stage(partial, out, {"stage": "train-vae", "outputs": {}})
    files = sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file())
    assert files == ["config.yaml", MANIFEST, "model.safetensors", "samples/step_000010.png"]
    assert not lock_path(out).exists()


# ---- --force removes only what cdiff wrote --------------------------------------------------


def test_what_cdiff_wrote(tmp_path):
    def folder(name: str, manifest: str | None) -> Path:
        f = tmp_path / name
        f.mkdir()
        if manifest is not None:
            (f / MANIFEST).write_text(manifest)
        return f

    assert written_by_cdiff(folder("stage", json.dumps({"stage": "train-vae", "outputs": {}})))
    assert written_by_cdiff(folder("damaged", "{torn"))  # cdiff's message says: rerun with --force
    assert not written_by_cdiff(folder("webapp", json.dumps({"name": "my app", "start_url": "/"})))
    assert not written_by_cdiff(folder("plain", None))
    compare = folder("compare", None)  # generate --method all: no manifest of its own
    (compare / "compare.html").write_text("<html>")
    (compare / "text").mkdir()
    (compare / "text" / MANIFEST).write_text(json.dumps({"stage": "generate", "outputs": {}}))
    assert written_by_cdiff(compare)


def test_force_never_deletes_a_user_folder(tmp_path):
    mine = user_folder(tmp_path / "mine")
    for force in (False, True):
        text = message(lambda f=force: check_output(mine, f, "--out"))
        assert text == f"{mine} holds files cdiff did not write; choose an empty or new --out"
    assert untouched(mine) and not lock_path(mine).exists()
    empty = tmp_path / "empty"
    empty.mkdir()
    check_output(empty, False, "--out")  # an empty folder is a new output


def test_commands_refuse_user_folders_even_with_force(tmp_path):
    mine = user_folder(tmp_path / "mine")
    photo = tmp_path / "face.png"
    Image.fromarray(np.full((32, 32, 3), 128, np.uint8)).save(photo)
    gen = tmp_path / "gen"  # a generation with intermediates, for visualize
    (gen / "intermediates").mkdir(parents=True)
    manifest = {"stage": "generate", "inputs": {"run": str(shipped_run())}, "outputs": {"images": []}}
    (gen / MANIFEST).write_text(json.dumps(manifest))
    commands = [
        ["generate", *FAST, "--out", mine, "--force"],
        ["edit", photo, "--target-text", "x", "--run", shipped_run(), "--out", mine, "--force"],
        ["visualize", gen, "--out", mine, "--force"],
    ]
    for args in commands:
        r = runner.invoke(app, [str(a) for a in args])
        assert r.exit_code == 2, r.output
        assert one_line(r) == f"error: {mine} holds files cdiff did not write; choose an empty or new --out"
        assert untouched(mine) and sorted(p.name for p in mine.iterdir()) == ["figures", "thesis.tex"]


def test_an_empty_out_folder_is_used(tmp_path):
    out = tmp_path / "empty"
    out.mkdir()
    r = runner.invoke(app, ["generate", *FAST, "--out", str(out)])
    assert r.exit_code == 0, r.output
    assert (out / MANIFEST).is_file() and (out / "grid.png").is_file()


# ---- write errors ---------------------------------------------------------------------------


def failing_writes(monkeypatch, code: int, after: int = 2):
    """PNG writes fail with ``code`` from the ``after``-th on, each leaving its torn temp file."""
    import cdiff.imageio as imageio

    real, calls = imageio.atomic_write_bytes, []

    def write(path, data):
        calls.append(path)
        if len(calls) < after:
            return real(path, data)
        path = Path(path)
        (path.parent / f".{path.name}.torn.tmp").write_bytes(data[:10])
        raise OSError(code, os.strerror(code), str(path))

    monkeypatch.setattr(imageio, "atomic_write_bytes", write)
    return calls


@pytest.mark.parametrize("code", [errno.ENOSPC, errno.EROFS, errno.EACCES, errno.EDQUOT])
def test_a_failed_write_is_one_line_and_leaves_nothing(tmp_path, monkeypatch, code):
    calls = failing_writes(monkeypatch, code)
    out = tmp_path / "out"
    r = runner.invoke(app, ["generate", *FAST, "--out", str(out)])
    assert r.exit_code == 2
    assert one_line(r) == (
        f"error: cannot write {calls[-1]}: {os.strerror(code)}; free space or choose another --run/--out"
    )
    assert sorted(tmp_path.iterdir()) == []  # no output, no .partial, no lock, no temp file
    monkeypatch.chdir(tmp_path)  # without --out: the numbered folder claimed is given back
    r = runner.invoke(app, ["generate", *FAST])
    assert r.exit_code == 2 and "cannot write" in one_line(r)
    assert list((tmp_path / "outputs").iterdir()) == []


def test_ctrl_c_while_writing_leaves_nothing(tmp_path, monkeypatch):
    import cdiff.imageio as imageio
    from cdiff.api import Pipeline

    res = Pipeline.from_run(steps=2).generate(num=1)

    def interrupted(path, data):
        raise KeyboardInterrupt

    monkeypatch.setattr(imageio, "atomic_write_bytes", interrupted)
    with pytest.raises(KeyboardInterrupt):
        res.save(tmp_path / "out")
    assert sorted(tmp_path.iterdir()) == []


def test_read_only_folder_is_one_line(tmp_path, monkeypatch):
    if os.geteuid() == 0:
        pytest.skip("root writes into read-only folders (the simulated failures above stand in)")
    outputs = tmp_path / "outputs"
    outputs.mkdir()
    outputs.chmod(0o555)
    monkeypatch.chdir(tmp_path)
    try:
        r = runner.invoke(app, ["generate", *FAST])
    finally:
        outputs.chmod(0o755)
    assert r.exit_code == 2
    assert one_line(r) == (
        f"error: cannot write {Path('outputs') / '000'}: Permission denied; free space or choose another --run/--out"
    )
    assert list(outputs.iterdir()) == []


def test_write_error_messages():
    full = OSError(errno.ENOSPC, "No space left on device", "/r/x.png")
    assert (
        write_error(full)
        == "cannot write /r/x.png: No space left on device; free space or choose another --run/--out"
    )
    assert write_error(OSError(errno.ENOENT, "No such file", "/r/x")) is None  # not a write fault
    assert write_error(ValueError("x")) is None
    rust = RuntimeError('IoError(Os { code: 28, kind: StorageFull, message: "No space left on device" })')
    assert write_error(rust).startswith("cannot write the output: No space left on device")
    for said in (  # what torch.save raises on a full disk: no errno
        "PytorchStreamWriter failed writing file data/0: file write failed",
        "[enforce fail at inline_container.cc:672] . unexpected pos 704 vs 598",
    ):
        assert write_error(RuntimeError(said)).startswith("cannot write a checkpoint (the disk may be full)")


def test_free_space_is_checked_before_writing(tmp_path, monkeypatch):
    import cdiff.outputs as outputs

    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(outputs.shutil, "disk_usage", lambda path: usage(2**40, 2**40 - 2**20, 2**20))
    text = message(lambda: check_free_space(tmp_path / "new" / "out", 2**30, "the weights"))
    assert text == (
        f"not enough space for the weights in {tmp_path}: it needs about 1024.0 MiB, 1.0 MiB free; "
        "free space or choose another --run/--out"
    )
    out = tmp_path / "out"
    r = runner.invoke(app, ["generate", *FAST, "--out", str(out)])
    assert r.exit_code == 2
    line = one_line(r)
    assert line.startswith(f"error: not enough space for the images in {tmp_path}: it needs about ")
    assert line.endswith("1.0 MiB free; free space or choose another --run/--out")
    assert sorted(tmp_path.iterdir()) == []  # nothing written, the lock let go


# ---- an existing file as --out --------------------------------------------------------------


def test_a_file_as_out_is_one_line(tmp_path):
    file = tmp_path / "taken.txt"
    file.write_text("mine")
    photo = tmp_path / "face.png"
    Image.fromarray(np.full((32, 32, 3), 128, np.uint8)).save(photo)
    gen = tmp_path / "gen"
    (gen / "intermediates").mkdir(parents=True)
    manifest = {"stage": "generate", "inputs": {"run": str(shipped_run())}, "outputs": {"images": []}}
    (gen / MANIFEST).write_text(json.dumps(manifest))
    cases = {
        "--out": [
            ["generate", *FAST, "--out", file],
            ["edit", photo, "--target-text", "x", "--run", shipped_run(), "--out", file, "--force"],
            ["visualize", gen, "--out", file],
        ],
        "--run/--out": [["evaluate", "--run", tmp_path / "run", "--out", file]],
    }
    for option, commands in cases.items():
        for args in commands:
            r = runner.invoke(app, [str(a) for a in args])
            assert r.exit_code == 2, r.output
            assert (
                one_line(r)
                == f"error: cannot write {file}: it is a file, not a folder; choose another {option}"
            )
    run = tmp_path / "run"
    (run / "report.html").mkdir(parents=True)
    r = runner.invoke(app, ["report", "--run", str(run), "--force"])
    assert r.exit_code == 2
    assert (
        one_line(r)
        == f"error: cannot write {run / 'report.html'}: it is a folder, not a file; choose another --run"
    )
    assert file.read_text() == "mine"


# ---- file modes -----------------------------------------------------------------------------


@pytest.mark.parametrize("umask, mode", [(0o022, 0o644), (0o002, 0o664), (0o077, 0o600)])
def test_written_files_get_the_usual_mode(tmp_path, umask, mode):
    old = os.umask(umask)
    try:
        atomic_write_bytes(tmp_path / "a.bin", b"x")
        with open(tmp_path / "b.bin", "wb") as f:  # what any other new file gets
            f.write(b"x")
    finally:
        os.umask(old)
    assert (tmp_path / "a.bin").stat().st_mode & 0o777 == mode
    assert (tmp_path / "b.bin").stat().st_mode & 0o777 == mode


def test_generated_files_are_readable_by_others(tmp_path):
    old = os.umask(0o022)
    try:
        r = runner.invoke(app, ["generate", *FAST, "--out", str(tmp_path / "out")])
    finally:
        os.umask(old)
    assert r.exit_code == 0, r.output
    modes = {p.name: p.stat().st_mode & 0o777 for p in (tmp_path / "out").iterdir()}
    assert set(modes.values()) == {0o644}, modes


# ---- manifests of the wrong shape -----------------------------------------------------------


def test_a_manifest_of_the_wrong_shape_is_named(tmp_path):
    folder = tmp_path / "vae"
    folder.mkdir()
    path = folder / MANIFEST
    cases = {
        "[]": "it holds a JSON list, not an object",
        '"done"': "it holds a JSON string, not an object",
        '{"stage": "train-vae"}': "no 'outputs' object",
        '{"stage": "train-vae", "outputs": [1]}': "no 'outputs' object",
    }
    for text, why in cases.items():
        path.write_text(text)
        expected = f"{path} is not a cdiff manifest ({why}); rerun the stage with --force"
        assert message(lambda: read_manifest(folder)) == expected
        assert message(lambda: require_stage(folder, "train-vae", "cdiff train-vae")) == expected
    path.write_text(json.dumps({"stage": "train-vae", "outputs": {"model.safetensors": {}}}))
    assert message(lambda: output_sha(folder, "model.safetensors")) == (
        f"{path} records no sha256 of model.safetensors; rerun the stage with --force"
    )


def test_a_run_with_a_wrong_shaped_expert_manifest(tmp_path):
    run = tmp_path / "run"
    shutil.copytree(shipped_run(), run)
    manifest = json.loads((run / "mask" / MANIFEST).read_text())
    manifest["outputs"] = {}  # valid JSON, but no record of the weights the diffusers were trained with
    (run / "mask" / MANIFEST).write_text(json.dumps(manifest))
    r = runner.invoke(app, ["generate", *FAST, "--run", str(run), "--out", str(tmp_path / "out")])
    assert r.exit_code == 2
    line = one_line(r)
    assert str(run / "mask" / MANIFEST) in line and "rerun the stage with --force" in line, line
    assert not (tmp_path / "out").exists()


def test_a_lock_is_released_when_the_stage_fails(tmp_path):
    """In one process (the API, a notebook): a failed stage's lock goes with it."""
    out = tmp_path / "vae"
    stage = rundir.StageOutput(out, False)
    assert lock_path(out).is_file()
    del stage  # the run failed and its frame is gone
    assert not lock_path(out).exists()


def test_an_interrupted_training_is_named_before_any_set_up(tmp_path):
    import time

    import cdiff.stages.train_vae  # noqa: F401  (imported: the time below is the stage's own)

    partial = tmp_path / "run" / "vae.partial"
    partial.mkdir(parents=True)
    (partial / "checkpoint.pt").write_bytes(b"a checkpoint")  # no data, no models: refused first
    t0 = time.perf_counter()
    r = CliRunner().invoke(app, ["train-vae", "--run", str(tmp_path / "run")])
    assert r.exit_code == 2 and "Traceback" not in r.output, r.output
    assert "holds an interrupted run; pass --resume to continue it or --force to start over" in r.output
    assert time.perf_counter() - t0 < 2
