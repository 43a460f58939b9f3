"""The command line as a user calls it (CliRunner)."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from cdiff import __version__
from cdiff.cli import app

runner = CliRunner()


def invoke(*args, env=None):
    return runner.invoke(app, [str(a) for a in args], env=env)


def command_names():
    import typer.main

    return sorted(typer.main.get_command(app).commands)


def test_version():
    result = invoke("--version")
    assert result.exit_code == 0 and result.output.strip() == f"cdiff {__version__}"


def test_every_command_has_help():
    names = command_names()
    assert "prepare" in names
    no_config = {
        "visualize",
        "import-demo",
        "report",
    }  # they read a generation / the package / a run, not a preset
    for name in names:
        result = invoke(name, "--help")
        assert result.exit_code == 0, name
        assert "--force" in result.output, name
        if name not in no_config:
            assert "--config" in result.output and "--dry-run" in result.output, name


def celeba_args(tree):
    return [
        "--source",
        "celeba",
        "--celebahq",
        tree / "CelebA-HQ-img",
        "--masks",
        tree / "CelebAMask-HQ-mask-anno",
        "--captions",
        tree / "captions_hq.json",
        "--resolution",
        32,
        "--set",
        "data.val_count=2",
    ]


def test_prepare_default_run_dir_and_table(celeba_tree, tmp_path):
    env = {"CDIFF_RUNS_DIR": str(tmp_path / "runs")}
    result = invoke("prepare", *celeba_args(celeba_tree), env=env)
    assert result.exit_code == 0, result.output
    data = tmp_path / "runs" / "demo" / "data"
    manifest = json.loads((data / "manifest.json").read_text())
    assert manifest["config"]["data"]["source"] == "celeba" and manifest["config"]["data"]["val_count"] == 2
    assert "kept: train" in result.output and "6" in result.output


def test_dry_run_writes_nothing(celeba_tree, tmp_path):
    result = invoke("prepare", *celeba_args(celeba_tree), "--run", tmp_path / "run", "--dry-run")
    assert result.exit_code == 0, result.output
    assert (
        "source: celeba" in result.output
        and "would prepare 8 celeba samples (6 train, 2 val)" in result.output
    )
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize(
    "args, message",
    [
        (["--set", "data.nmu=3"], "unknown config key 'data.nmu'"),
        (["--config", "nope"], "unknown preset 'nope'"),
        (["--source", "celeba"], "CelebA-HQ image folder not given; pass --celebahq"),
        (["--source", "codiff", "--root", "/nonexistent"], "release datasets/ folder not found"),
        (["--num", "0"], "--num must be at least 1"),
    ],
)
def test_bad_input_exit_2_one_line(tmp_path, args, message):
    result = invoke("prepare", "--run", tmp_path / "run", *args)
    assert result.exit_code == 2, result.output
    assert message in result.output
    assert "Traceback" not in result.output
    assert len([ln for ln in result.output.splitlines() if ln.strip()]) == 1
    assert not (tmp_path / "run").exists()


def test_refuses_to_overwrite_without_force(celeba_tree, tmp_path):
    args = ["prepare", *celeba_args(celeba_tree), "--out", tmp_path / "d"]
    assert invoke(*args).exit_code == 0
    again = invoke(*args)
    assert again.exit_code == 2 and "pass --force" in again.output
    assert invoke(*args, "--force").exit_code == 0
