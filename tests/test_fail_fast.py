"""Finished work is refused at once: each stage checks its output before any set-up.

Each command is called with its finished output already present and without the data,
models or checkpoints it would need (so only a check made first can answer), and must end
with a one-line error naming --force in well under the time any set-up would take.
"""

from __future__ import annotations

import importlib
import json
import os
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cdiff.cli import app
from cdiff.errors import InputError
from cdiff.rundir import MANIFEST, begin_stage, check_output, partial_dir

runner = CliRunner()
LIMIT_S = 2.0
STAGE_MODULES = [
    "prepare",
    "train_vae",
    "train_unimodal",
    "train_diffuser",
    "train_evaluator",
    "import_official",
    "report",
]


@pytest.fixture(scope="module", autouse=True)
def _imported():
    """Import the stage modules first (torch, diffusers: seconds), so only the command is timed."""
    for name in STAGE_MODULES:
        importlib.import_module(f"cdiff.stages.{name}")


def finished(folder: Path, stage: str = "x") -> Path:
    folder.mkdir(parents=True)
    (folder / MANIFEST).write_text(json.dumps({"stage": stage}))
    return folder


def timed(*args):
    t0 = time.perf_counter()
    result = runner.invoke(app, [str(a) for a in args])
    return result, time.perf_counter() - t0


def one_line(result) -> str:
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1, result.output
    return lines[0]


def stage_cases(tmp: Path) -> dict[str, tuple[Path, list]]:
    """command → (its output folder, its arguments): no data, no models, no checkpoints exist."""
    run = tmp / "run"
    missing = tmp / "missing"
    ckpts = tmp / "ckpts"
    return {
        "prepare": (
            run / "data",
            [
                "prepare",
                "--source",
                "celeba",
                "--celebahq",
                missing / "CelebA-HQ-img",
                "--masks",
                missing / "masks",
                "--captions",
                missing / "captions_hq.json",
            ],
        ),
        "train-vae": (run / "vae", ["train-vae", "--data", missing]),
        "train-unimodal-text": (run / "text", ["train-unimodal", "--modality", "text"]),
        "train-unimodal-mask": (run / "mask", ["train-unimodal", "--modality", "mask"]),
        "train-diffuser": (run / "diffuser", ["train-diffuser"]),
        "train-evaluator": (run / "evaluator", ["train-evaluator"]),
        "import-official-vae": (run / "vae", ["import-official", ckpts, "--resolution", 256]),
        "import-official-diffuser": (run / "diffuser", ["import-official", ckpts, "--resolution", 256]),
    }


CASES = list(stage_cases(Path("x")))
TIMES: dict[str, float] = {}


@pytest.mark.parametrize("case", CASES)
def test_finished_output_is_refused_first(case, tmp_path):
    out, args = stage_cases(tmp_path)[case]
    finished(out)
    ckpts = tmp_path / "ckpts"  # empty files: opening any would fail with another message
    ckpts.mkdir()
    for kind in ("vae", "codiff_mask_text"):
        (ckpts / f"256_{kind}.ckpt").write_bytes(b"")
    config = [] if args[0] == "import-official" else ["--config", "demo"]
    result, took = timed(*args, *config, "--run", tmp_path / "run")
    TIMES[case] = took
    assert result.exit_code == 2, result.output
    line = one_line(result)
    assert "--force" in line and str(out) in line and "finished work" in line, line
    assert took < LIMIT_S, f"{case} took {took:.2f} s to refuse"
    assert not partial_dir(out).exists()  # nothing was started


def test_report_refused_before_reading(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / "report.html").write_text("<html></html>")  # and nothing to report on
    result, took = timed("report", "--run", run)
    TIMES["report"] = took
    assert result.exit_code == 2, result.output
    assert "--force" in one_line(result)
    assert took < LIMIT_S


def test_unwritable_run_folder(tmp_path):
    """A run folder that cannot be written: read-only (or, as root, a file in its place)."""
    run = tmp_path / "run"
    if os.geteuid() == 0:  # root may write anywhere: os.access is always true
        run.write_text("not a folder")
    else:
        run.mkdir()
        run.chmod(0o555)
    try:
        result, took = timed("train-vae", "--config", "demo", "--run", run)
    finally:
        if run.is_dir():
            run.chmod(0o755)
    TIMES["train-vae (unwritable)"] = took
    assert result.exit_code == 2, result.output
    line = one_line(result)
    assert f"cannot write {run / 'vae'}" in line and "choose another --run/--out" in line, line
    assert took < LIMIT_S


def test_file_in_place_of_run_folder(tmp_path):
    run = tmp_path / "run"
    run.write_text("not a folder")
    result, took = timed("train-evaluator", "--config", "demo", "--run", run)
    assert result.exit_code == 2, result.output
    line = one_line(result)
    assert f"cannot write {run / 'evaluator'}: {run} is a file" in line, line
    assert took < LIMIT_S


# ---- check_output itself ----------------------------------------------------------------------


def message(fn) -> str:
    with pytest.raises(InputError) as exc:
        fn()
    return str(exc.value)


def test_check_output_says_what_begin_stage_says(tmp_path):
    done = finished(tmp_path / "done")
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine")
    for final in (done, foreign):
        early = message(lambda f=final: check_output(f, False))
        assert early == message(lambda f=final: begin_stage(f, "a: 1\n", False))
        assert "\n" not in early
    assert "finished work" in message(lambda: check_output(done, False))
    assert "--force" in message(lambda: check_output(done, False))
    # files cdiff did not write: refused even with --force (it would delete them), no --force advice
    for force in (False, True):
        text = message(lambda f=force: check_output(foreign, f))
        assert "holds files cdiff did not write" in text and "--force" not in text
    check_output(done, True)  # --force: allowed
    check_output(tmp_path / "new" / "deeper" / "out", False)  # parents not made yet: fine


def test_check_output_leaves_partial_runs_to_begin_stage(tmp_path):
    final = tmp_path / "out"
    begin_stage(final, "a: 1\n", False)  # an interrupted run with other settings
    check_output(final, False)
    assert "interrupted run" in message(lambda: begin_stage(final, "a: 2\n", False))


def test_check_output_on_a_file(tmp_path):
    final = tmp_path / "out"
    final.write_text("")
    for force in (False, True):
        text = message(lambda f=force: check_output(final, f))
        assert text.startswith(f"cannot write {final}:") and text.endswith("choose another --run/--out")


def test_check_output_not_writable(tmp_path, monkeypatch):
    """The read-only case even as root (where os.access always says yes): os.access says no."""
    import cdiff.rundir as rundir

    asked = []
    monkeypatch.setattr(rundir.os, "access", lambda p, mode: asked.append((Path(p), mode)) and False)
    final = tmp_path / "new" / "out"  # tmp_path is the first folder that exists
    text = message(lambda: check_output(final, True))
    assert asked == [(tmp_path, os.W_OK)]
    assert text == f"cannot write {final}: {tmp_path} is not writable; choose another --run/--out"


def test_check_output_is_quick(tmp_path):
    final = finished(tmp_path / "a" / "b")
    t0 = time.perf_counter()
    for _ in range(100):
        check_output(tmp_path / "a" / "c" / "d", False)
        with pytest.raises(InputError):
            check_output(final, False)
    assert (time.perf_counter() - t0) / 100 < 0.01


def test_zz_print_times():
    """Shown with ``pytest -s``: how long each refusal took."""
    for case, took in TIMES.items():
        print(f"{case}: {took * 1000:.0f} ms")
