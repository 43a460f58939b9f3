"""No silent corruption: damaged weights and checkpoints, NaN losses, torn logs, non-finite samples."""

from __future__ import annotations

import json
import os
import shutil

import pytest
import torch
from test_training_loop import Points, cfg, weights  # the same tiny regression data
from torch import nn
from typer.testing import CliRunner

from cdiff import rundir
from cdiff.cli import app
from cdiff.errors import InputError
from cdiff.models import store
from cdiff.stages import demo_weights
from cdiff.training import checkpoints
from cdiff.training.loop import CKPT, METRICS, Task, fit, read_metrics

runner = CliRunner()
WEIGHTS = "model.safetensors"


class Regression(Task):
    """A tiny task (as in test_training_loop): y = sum(x) with per-step input noise."""

    trainable = ("net",)

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.net = nn.Sequential(nn.Linear(4, 32), nn.Tanh(), nn.Linear(32, 1))

    def forward(self, batch, generator):
        x, y = batch
        noise = torch.randn(x.shape, generator=generator, device=x.device) * 0.01
        return ((self.net(x + noise) - y) ** 2).mean(), {}


@pytest.fixture(autouse=True)
def cache(tmp_path, monkeypatch):
    """Every test gets its own hash cache."""
    folder = tmp_path / "cache"
    monkeypatch.setenv(store.CACHE_ENV, str(folder))
    return folder / store.HASH_CACHE


@pytest.fixture
def demo_run(tmp_path):
    """The shipped demo run, copied into ``tmp_path/run`` (so it can be damaged)."""
    run = tmp_path / "run"
    shutil.copytree(demo_weights.shipped_run(), run)
    return run


def garble(path, offset=-1000):
    """Flip one byte (by default near the end: tensor data, not the header)."""
    data = bytearray(path.read_bytes())
    data[offset] ^= 0xFF
    path.write_bytes(bytes(data))


def one_line(output: str) -> str:
    lines = [ln for ln in output.splitlines() if ln.strip()]
    assert len(lines) == 1 and "Traceback" not in output, output
    return lines[0]


def counting_sha256(monkeypatch) -> list:
    calls = []

    def sha(path):
        calls.append(os.path.basename(path))
        return rundir.sha256_file(path)

    monkeypatch.setattr(store, "sha256_file", sha)
    return calls


# ---- exported weights -----------------------------------------------------------------------


def test_generate_refuses_a_damaged_model(demo_run, tmp_path):
    garble(demo_run / "diffuser" / WEIGHTS)
    mask = next((demo_run / "examples" / "masks").glob("*.png"))
    args = ["generate", "--run", demo_run, "--mask", mask, "--text", "He has a beard.", "--num", "1"]
    r = runner.invoke(app, [str(a) for a in [*args, "--steps", "2", "--out", tmp_path / "out"]])
    assert r.exit_code == 2
    line = one_line(r.output)
    assert f"{demo_run / 'diffuser' / WEIGHTS} does not match its manifest (sha256 " in line
    assert line.endswith(
        f"the file is damaged: retrain it with `cdiff train-diffuser --run {demo_run} --force`"
    )
    assert not (tmp_path / "out").exists()


def test_every_weights_file_is_checked(demo_run):
    garble(demo_run / "evaluator" / "classifier.safetensors")
    with pytest.raises(InputError, match=r"classifier.safetensors does not match its manifest"):
        store.load(demo_run / "evaluator", "evaluator")
    store.load(demo_run / "vae", "vae")  # the undamaged ones still load


def test_a_warm_load_does_not_hash_again(demo_run, monkeypatch, cache):
    calls = counting_sha256(monkeypatch)
    store.load(demo_run / "evaluator", "evaluator")
    assert sorted(calls) == ["classifier.safetensors", "parser.safetensors"]
    entries = json.loads(cache.read_text())["files"]
    key = str((demo_run / "evaluator" / "parser.safetensors").resolve())
    assert entries[key]["sha256"] == rundir.sha256_file(demo_run / "evaluator" / "parser.safetensors")
    store.load(demo_run / "evaluator", "evaluator")
    assert len(calls) == 2  # the second load hashed nothing
    # a changed file (same size, new mtime) is hashed again, and its damage found
    vae = demo_run / "vae" / WEIGHTS
    store.load(demo_run / "vae", "vae")
    st = vae.stat()
    garble(vae)
    os.utime(vae, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000))
    with pytest.raises(InputError, match="vae/model.safetensors does not match its manifest"):
        store.load(demo_run / "vae", "vae")
    assert calls[-2:] == [WEIGHTS, WEIGHTS]


def test_a_broken_cache_never_fails_a_load(demo_run, monkeypatch, cache, tmp_path):
    calls = counting_sha256(monkeypatch)
    cache.parent.mkdir()
    cache.write_text('{"files": {"torn')  # corrupt: just hash again, and rewrite it
    store.load(demo_run / "vae", "vae")
    assert calls == [WEIGHTS] and len(json.loads(cache.read_text())["files"]) == 1
    entries = json.loads(cache.read_text())
    next(iter(entries["files"].values()))["sha256"] = "0" * 64  # a wrong hash remembered
    cache.write_text(json.dumps(entries))
    store.load(demo_run / "vae", "vae")  # checked again before it is called damaged
    assert calls == [WEIGHTS] * 2
    store.load(demo_run / "vae", "vae")  # and the right one remembered
    assert calls == [WEIGHTS] * 2
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    monkeypatch.setenv(store.CACHE_ENV, str(blocker / "cache"))  # cannot be written
    store.load(demo_run / "vae", "vae")
    store.load(demo_run / "vae", "vae")
    assert calls == [WEIGHTS] * 4


def test_no_manifest_or_no_hash_no_check(demo_run, tmp_path, monkeypatch):
    calls = counting_sha256(monkeypatch)
    model, record = store.load(demo_run / "mask", "unimodal")
    assert calls == [WEIGHTS]
    store.save(tmp_path / "mine", "unimodal", model, {k: v for k, v in record.items() if k != "kind"})
    store.load(tmp_path / "mine", "unimodal")  # saved by hand: no manifest, nothing to check
    manifest = json.loads((demo_run / "text" / "manifest.json").read_text())
    del manifest["outputs"][WEIGHTS]["sha256"]
    (demo_run / "text" / "manifest.json").write_text(json.dumps(manifest))
    garble(demo_run / "text" / WEIGHTS)
    store.load(demo_run / "text", "unimodal")  # no hash recorded: not checked
    assert calls == [WEIGHTS]
    (demo_run / "text" / "manifest.json").write_text("{torn")
    with pytest.raises(InputError, match=r"text/manifest.json cannot be read \(JSONDecodeError\)"):
        store.load(demo_run / "text", "unimodal")


def test_the_shipped_weights_verify_and_name_a_reinstall():
    store.verify(demo_weights.shipped_dir() / "diffuser", "diffuser")
    fix = store._remake(demo_weights.shipped_dir() / "diffuser", store.kind("diffuser"))
    assert fix == "reinstall cdiff (these are its shipped demo weights), or pass --run RUN"


def test_cache_dir_follows_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv(store.CACHE_ENV, str(tmp_path / "c"))
    assert store.cache_dir() == tmp_path / "c"
    monkeypatch.delenv(store.CACHE_ENV)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert store.cache_dir() == tmp_path / "xdg" / "cdiff"
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert store.cache_dir() == store.Path.home() / ".cache" / "cdiff"


# ---- training checkpoints -------------------------------------------------------------------


def test_resume_refuses_a_damaged_checkpoint(tmp_path):
    fit(Regression(), Points(), cfg(steps=10), tmp_path, show_progress=False)
    state = torch.load(tmp_path / CKPT, weights_only=True)
    assert len(state["sha256"]) == 64
    state["modules"]["net"]["0.weight"][0, 0] += 1e-3  # one weight changed, the hash kept
    torch.save(state, tmp_path / CKPT)
    with pytest.raises(InputError) as err:
        fit(Regression(), Points(), cfg(steps=20), tmp_path, resume=True, show_progress=False)
    assert str(err.value) == (
        f"{tmp_path / CKPT} is damaged (its contents do not match its sha256); start over with --force"
    )
    (tmp_path / CKPT).write_bytes((tmp_path / CKPT).read_bytes()[:500])  # truncated
    with pytest.raises(InputError, match=r"is damaged \(it cannot be read: \w+\); start over with --force$"):
        fit(Regression(), Points(), cfg(steps=20), tmp_path, resume=True, show_progress=False)


def test_resume_refuses_a_checkpoint_of_another_model(tmp_path):
    fit(Regression(), Points(), cfg(steps=10), tmp_path, show_progress=False)
    wider = Regression()
    wider.net = nn.Sequential(nn.Linear(4, 16), nn.Tanh(), nn.Linear(16, 1), nn.Linear(1, 1))
    with pytest.raises(InputError) as err:
        fit(wider, Points(), cfg(steps=20), tmp_path, resume=True, show_progress=False)
    assert str(err.value) == (
        f"{tmp_path / CKPT} does not fit this model (net: 2 missing key(s), e.g. 3.weight, "
        "3 wrong shape(s), e.g. 0.weight is [32, 4] there, [16, 4] here): the settings changed since "
        "it was saved; start over with --force"
    )


def test_a_failed_checkpoint_write_leaves_no_temp_file(tmp_path, monkeypatch):
    (tmp_path / f".{CKPT}.999.tmp").write_bytes(b"left by a killed run")

    def full_disk(state, path):
        open(path, "wb").write(b"half")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(checkpoints.torch, "save", full_disk)
    with pytest.raises(OSError, match="No space left"):
        fit(Regression(), Points(), cfg(steps=10), tmp_path, show_progress=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == [METRICS]


def test_legacy_checkpoints_without_a_hash_still_resume(tmp_path):
    full = Regression()
    fit(full, Points(), cfg(steps=20), tmp_path / "full", show_progress=False)
    fit(Regression(), Points(), cfg(steps=10), tmp_path / "old", show_progress=False)
    state = torch.load(tmp_path / "old" / CKPT, weights_only=True)
    del state["sha256"]
    torch.save(state, tmp_path / "old" / CKPT)
    resumed = Regression()
    fit(resumed, Points(), cfg(steps=20), tmp_path / "old", resume=True, show_progress=False)
    assert torch.equal(weights(full), weights(resumed))


# ---- non-finite losses ----------------------------------------------------------------------


class Diverging(Regression):
    """The regression, whose loss becomes nan at step 3 (the optimiser step made from step 2)."""

    def forward(self, batch, generator):
        loss, logs = super().forward(batch, generator)
        return (loss * float("nan") if self.current_step == 2 else loss), logs


def test_a_nan_loss_stops_training_and_keeps_the_last_good_checkpoint(tmp_path):
    with pytest.raises(InputError) as err:
        fit(
            Diverging(),
            Points(),
            cfg(steps=10, checkpoint_every=2, log_every=1),
            tmp_path,
            show_progress=False,
        )
    assert str(err.value) == (
        "loss became nan at step 3; the last good checkpoint (step 2) is kept: --resume retries from it "
        "with the same settings, or lower the learning rate (--set ...train.lr=...) and start over with --force"
    )
    state = torch.load(tmp_path / CKPT, weights_only=True)
    assert state["step"] == 2 and all(torch.isfinite(v).all() for v in state["modules"]["net"].values())
    assert [r["step"] for r in read_metrics(tmp_path / METRICS)] == [1, 2]


def test_a_nan_loss_before_any_checkpoint(tmp_path):
    with pytest.raises(InputError, match="^loss became nan at step 3; no checkpoint was saved before it: "):
        fit(Diverging(), Points(), cfg(steps=10), tmp_path, show_progress=False)
    assert not (tmp_path / CKPT).exists()


class Poisoned(Regression):
    """The regression with a spare module that becomes inf at step 5, unseen by the loss."""

    trainable = ("net", "spare")

    def __init__(self, at: int = 4):
        super().__init__()
        self.spare, self.at = nn.Linear(1, 1), at

    def forward(self, batch, generator):
        if self.current_step == self.at:
            with torch.no_grad():
                self.spare.bias.fill_(float("inf"))
        return super().forward(batch, generator)


def test_non_finite_weights_are_neither_checkpointed_nor_exported(tmp_path):
    with pytest.raises(InputError) as err:
        fit(Poisoned(), Points(), cfg(steps=10, checkpoint_every=3), tmp_path, show_progress=False)
    assert str(err.value) == (
        "the weights became non-finite at step 6; the last good checkpoint (step 3) is kept: --resume "
        "retries from it with the same settings, or lower the learning rate (--set ...train.lr=...) and start "
        "over with --force"
    )
    assert torch.load(tmp_path / CKPT, weights_only=True)["step"] == 3
    # a finished checkpoint from before weights were checked, holding a nan: resuming exports nothing
    fit(Regression(), Points(), cfg(steps=10), tmp_path / "old", show_progress=False)
    state = torch.load(tmp_path / "old" / CKPT, weights_only=True)
    del state["sha256"]
    state["modules"]["net"]["2.bias"][0] = float("nan")
    torch.save(state, tmp_path / "old" / CKPT)
    with pytest.raises(InputError) as err:
        fit(Regression(), Points(), cfg(steps=10), tmp_path / "old", resume=True, show_progress=False)
    assert str(err.value) == (
        "the trained weights are not finite after step 10, so nothing is exported: lower the learning "
        "rate, then start over with --force"
    )


def test_train_vae_with_a_nan_loss_exports_nothing(tmp_path, monkeypatch):
    from cdiff.stages.train_vae import VAETask

    run = tmp_path / "run"
    r = runner.invoke(app, ["prepare", "--num", "24", "--resolution", "32", "--run", str(run)])
    assert r.exit_code == 0, r.output
    forward = VAETask.forward

    def diverging(self, batch, generator):
        loss, logs = forward(self, batch, generator)
        return (loss * float("nan") if self.current_step == 2 else loss), logs

    monkeypatch.setattr(VAETask, "forward", diverging)
    tiny = ["vae.block_out_channels=[8,16]", "vae.norm_num_groups=4", "vae.perceptual_weight=0"]
    tiny += ["vae.train.batch_size=4", "vae.train.checkpoint_every=2"]
    sets = [a for s in tiny for a in ("--set", s)]
    r = runner.invoke(app, ["train-vae", "--run", str(run), "--steps", "6", *sets])
    assert r.exit_code == 2 and "Traceback" not in r.output
    assert r.output.splitlines()[-1] == (
        "error: loss became nan at step 3; the last good checkpoint (step 2) is kept: --resume retries from "
        "it with the same settings, or lower the learning rate (--set ...train.lr=...) and start over with --force"
    )
    assert not (run / "vae").exists()
    assert torch.load(run / "vae.partial" / CKPT, weights_only=True)["step"] == 2
    # a byte of the kept checkpoint flipped (in the weights: it still loads) → resume refuses
    ckpt = run / "vae.partial" / CKPT
    garble(ckpt, offset=ckpt.stat().st_size // 2)
    r = runner.invoke(app, ["train-vae", "--run", str(run), "--steps", "6", "--resume", *sets])
    assert r.exit_code == 2 and "Traceback" not in r.output
    assert r.output.splitlines()[-1] == (
        f"error: {ckpt} is damaged (its contents do not match its sha256); start over with --force"
    )


# ---- metrics.jsonl --------------------------------------------------------------------------


def test_a_torn_metrics_line_does_not_block_resume(tmp_path):
    full = Regression()
    fit(full, Points(), cfg(), tmp_path / "full", show_progress=False)

    def stop_at_20(step, task):
        if step == 20:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        fit(
            Regression(),
            Points(),
            cfg(sample_every=20),
            tmp_path / "half",
            on_sample=stop_at_20,
            show_progress=False,
        )
    with open(tmp_path / "half" / METRICS, "a") as f:
        f.write('{"step": 30, "loss": 0.0')  # killed while writing a line
    resumed = Regression()
    fit(resumed, Points(), cfg(), tmp_path / "half", resume=True, show_progress=False)
    assert torch.equal(weights(full), weights(resumed))
    steps = [json.loads(ln)["step"] for ln in (tmp_path / "half" / METRICS).read_text().splitlines()]
    assert steps == [10, 20, 30, 40]


def test_metrics_reading_drops_only_a_torn_last_line(tmp_path):
    path = tmp_path / METRICS
    path.write_text('{"step": 1, "loss": 0.5}\n{"step": 2, "lo')
    assert read_metrics(path) == [{"step": 1, "loss": 0.5}]
    from cdiff.stages.sampling_common import last_metric

    assert last_metric(tmp_path, "loss") == 0.5
    path.write_text('{"step": 1}\nnot json\n{"step": 2}\n')
    with pytest.raises(InputError, match=r"metrics.jsonl is damaged \(line 2 is not JSON\)"):
        read_metrics(path)


def test_a_fresh_start_drops_the_metrics_of_an_uncheckpointed_kill(tmp_path):
    (tmp_path / METRICS).write_text('{"step": 10, "loss": 9.0}\n{"step": 20, "lo')
    fit(Regression(), Points(), cfg(steps=20), tmp_path, show_progress=False)
    assert [r["step"] for r in read_metrics(tmp_path / METRICS)] == [10, 20]
    assert read_metrics(tmp_path / METRICS)[0]["loss"] != 9.0


# ---- sampling -------------------------------------------------------------------------------


def test_sampling_refuses_non_finite_images(demo_run, tmp_path, monkeypatch):
    from diffusers import AutoencoderKL
    from diffusers.models.autoencoders.vae import DecoderOutput

    def decode(self, z, *args, **kwargs):
        x = torch.zeros(z.shape[0], 3, 64, 64)
        x[1] = float("nan")  # the second image of the batch
        return DecoderOutput(sample=x)

    monkeypatch.setattr(AutoencoderKL, "decode", decode)
    mask = next((demo_run / "examples" / "masks").glob("*.png"))
    args = ["generate", "--run", demo_run, "--mask", mask, "--text", "He has a beard.", "--num", "3"]
    r = runner.invoke(
        app, [str(a) for a in [*args, "--steps", "2", "--seed", "5", "--out", tmp_path / "out"]]
    )
    assert r.exit_code == 2
    assert one_line(r.output) == (
        "error: sampling produced non-finite values (nan) for 1 image(s) (seed 6) — check --guidance/--eta "
        "and the models (a damaged model? run its training again)"
    )
    assert not list(tmp_path.glob("out*/*.png"))


def test_non_finite_sampling_settings_are_one_line(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for opt, msg in [
        ("--guidance", "--guidance must be a finite number"),
        ("--eta", "--eta must be a finite"),
    ]:
        r = runner.invoke(app, ["generate", "--num", "1", opt, "nan"])
        assert r.exit_code == 2 and msg in one_line(r.output)
