"""``cdiff import-official``: the released checkpoints' keys, safe loading, bad input, and a run that generates.

The fake checkpoints come from the manifests of the released files (exact key names and shapes,
REFERENCE.md §5) with random values. The tiny ones keep every key name of the 256 px release and
shrink the channel widths (VAE /4, uni-modal UNets /6 = the diffusers' widths, text encoder 2
layers over a small vocabulary); the 256 px VAE file is built at its real size.
"""

from __future__ import annotations

import json
import os
import sys
import types
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from safetensors.torch import load_file
from typer.testing import CliRunner

from cdiff import config as cfg_mod
from cdiff.cli import app
from cdiff.data.masks import write_mask
from cdiff.errors import InputError
from cdiff.models import official, store
from cdiff.models.collab import DiffuserSet
from cdiff.stages import import_official as stage

MANIFESTS = Path(
    os.environ.get(
        "CDIFF_OFFICIAL_MANIFESTS",
        Path(__file__).resolve().parent / "fixtures" / "official_ckpt_manifest",
    )
)
pytestmark = pytest.mark.skipif(
    not MANIFESTS.is_dir(), reason=f"released-checkpoint manifests not found ({MANIFESTS})"
)
VOCAB = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *"he she has a full beard is in his sixties .".split()]
TEXT_DEPTH = 2
TINY = [  # --set overrides for the tiny release: its widths, same layout
    "vae.block_out_channels=[32,64,128]",
    "unimodal.unet.block_out_channels=[32,64,96,160]",
    f"unimodal.text_encoder.depth={TEXT_DEPTH}",
    f"unimodal.text_encoder.vocab_size={len(VOCAB)}",
]
runner = CliRunner()


def invoke(*args):
    return runner.invoke(app, [str(a) for a in args])


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """One torch thread: these tensors are small, and on 2 shared cores a second thread mostly spins
    (measured: generate 2.3 s with one thread, 36 s with two while another job used the cores)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def one_line_error(result, message: str) -> None:
    assert result.exit_code == 2, result.output
    assert message in result.output, result.output
    assert "Traceback" not in result.output
    assert len([ln for ln in result.output.splitlines() if ln.strip()]) == 1, result.output


def manifest(name: str) -> dict[str, list[int]]:
    return json.loads((MANIFESTS / f"{name}.json").read_text())["state_dict"]


# ---- fake checkpoints -------------------------------------------------------------------------


def ldm_schedule() -> dict[str, np.ndarray]:
    """LatentDiffusion.register_schedule for the linear schedule (numpy, written from the release's formulas)."""
    betas = np.linspace(0.0015**0.5, 0.0195**0.5, 1000, dtype=np.float64) ** 2
    alphas = 1.0 - betas
    ac = np.cumprod(alphas)
    prev = np.append(1.0, ac[:-1])
    var = betas * (1.0 - prev) / (1.0 - ac)
    return {
        "betas": betas,
        "alphas_cumprod": ac,
        "alphas_cumprod_prev": prev,
        "sqrt_alphas_cumprod": np.sqrt(ac),
        "sqrt_one_minus_alphas_cumprod": np.sqrt(1.0 - ac),
        "log_one_minus_alphas_cumprod": np.log(1.0 - ac),
        "sqrt_recip_alphas_cumprod": np.sqrt(1.0 / ac),
        "sqrt_recipm1_alphas_cumprod": np.sqrt(1.0 / ac - 1),
        "posterior_variance": var,
        "posterior_log_variance_clipped": np.log(np.maximum(var, 1e-20)),
        "posterior_mean_coef1": betas * np.sqrt(prev) / (1.0 - ac),
        "posterior_mean_coef2": (1.0 - prev) * np.sqrt(alphas) / (1.0 - ac),
    }


def tiny_shape(key: str, shape: list[int]) -> list[int] | None:
    """The tiny release's shape for a released key (None: the key is not in the tiny release)."""
    if ".layers." in key and int(key.split(".layers.")[1].split(".")[0]) >= 2 * TEXT_DEPTH:
        return None
    if key.startswith(("first_stage_model.", "encoder.", "decoder.")):
        return [d // 4 if d % 128 == 0 else d for d in shape]
    if key.startswith("model.diffusion_model.") or "_unet.diffusion_model." in key:
        return [d // 6 if d % 192 == 0 else d for d in shape]
    if key.endswith(("token_emb.weight", "to_logits.weight", "to_logits.bias")):
        return [len(VOCAB), *shape[1:]]
    return shape


def fake_state(name: str, tiny: bool = True, seed: int = 0) -> dict[str, torch.Tensor]:
    """Random fp16 weights under the released key names (the schedule buffers: the real float32 values)."""
    g = torch.Generator().manual_seed(seed)
    schedule = ldm_schedule()
    sd = {}
    for key, shape in manifest(name).items():
        if key in schedule:
            sd[key] = torch.from_numpy(schedule[key]).float()
            continue
        shape = tiny_shape(key, shape) if tiny else shape
        if shape is not None:
            sd[key] = (torch.randn(shape, generator=g) * 0.05).half()
    return sd


@contextmanager
def lightning_importable():
    """A stand-in ``pytorch_lightning`` so that a checkpoint can be pickled as Lightning 1.4 writes it."""
    mod = types.ModuleType("pytorch_lightning.callbacks.model_checkpoint")
    ModelCheckpoint = type("ModelCheckpoint", (), {"__module__": mod.__name__})
    mod.ModelCheckpoint = ModelCheckpoint
    names = ["pytorch_lightning", "pytorch_lightning.callbacks", mod.__name__]
    saved = {n: sys.modules.get(n) for n in names}
    sys.modules.update(dict.fromkeys(names, mod))
    try:
        yield ModelCheckpoint
    finally:
        for n, m in saved.items():
            if m is None:
                sys.modules.pop(n)
            else:
                sys.modules[n] = m


def save_lightning(path: Path, sd: dict[str, torch.Tensor], legacy: bool = False) -> Path:
    with lightning_importable() as ModelCheckpoint:
        ckpt = {
            "state_dict": sd,
            "global_step": 4200,
            "epoch": 3,
            "pytorch-lightning_version": "1.4.2",
            "callbacks": {ModelCheckpoint: {"best_model_score": torch.tensor(0.1), "best_model_path": "x"}},
            "optimizer_states": [{"state": {}, "param_groups": [{"lr": 6.4e-5, "betas": (0.9, 0.999)}]}],
            "lr_schedulers": [],
        }
        torch.save(ckpt, path, _use_new_zipfile_serialization=not legacy)
    return path


def codiff_to_text(sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The uni-modal text file holding the same weights (manifest notes: 'model.' → 'model.text_unet.')."""
    out = {}
    for key in manifest("256_text"):
        src = key.replace("model.diffusion_model.", "model.text_unet.diffusion_model.").replace(
            "cond_stage_model.", "cond_stage_model.text_cond_stage_model."
        )
        if src in sd:
            out[key] = sd[src]
    return out


@pytest.fixture(scope="module")
def codiff_sd() -> dict[str, torch.Tensor]:
    """The tiny 256 px collaborative checkpoint's state dict."""
    return fake_state("256_codiff_mask_text")


@pytest.fixture(scope="module")
def release(tmp_path_factory, codiff_sd) -> dict[str, Path]:
    """The tiny 256 px release (collaborative + text files) and a BERT-style vocabulary folder."""
    root = tmp_path_factory.mktemp("release")
    sd = codiff_sd
    save_lightning(root / "256_codiff_mask_text.ckpt", sd)
    save_lightning(root / "256_text.ckpt", codiff_to_text(sd))
    bert = tmp_path_factory.mktemp("bert")
    (bert / "vocab.txt").write_text("\n".join(VOCAB) + "\n")
    return {"dir": root, "bert": bert}


def tiny_cfg():
    return stage.resolve_config(256, TINY)


# ---- every key of every released file --------------------------------------------------------


@pytest.mark.parametrize(
    "name", sorted(p.stem for p in MANIFESTS.glob("*.json")) if MANIFESTS.is_dir() else []
)
def test_every_released_key_is_mapped_or_dropped_and_every_shape_fits(name):
    record = json.loads((MANIFESTS / f"{name}.json").read_text())
    shapes = {k: tuple(v) for k, v in record["state_dict"].items()}
    res = int(name[:3])
    cfg = stage.resolve_config(res)
    kind = official.file_kind(Path(name), set(shapes))
    assert kind == name[4:]
    plan = official.plan_file(Path(name), kind, shapes, len(cfg.vae.block_out_channels), 2, 2)
    models = stage.target_models(cfg, list(plan.parts))
    for part, refs in plan.parts.items():
        target = {k: v.shape for k, v in stage._weights(models[part]).state_dict().items()}
        official.check_shapes(Path(name), part, refs, target, "")  # raises on any gap or mismatch
    used = [r.key for refs in plan.parts.values() for r in refs.values()]
    assert len(used) == len(set(used)) and set(used) | set(plan.dropped) == set(shapes)
    dropped = sorted(plan.dropped)
    if kind == "vae":
        assert dropped == sorted(k for k in shapes if k.startswith("loss."))
    else:
        logits = [k for k in shapes if "to_logits" in k]
        assert dropped == sorted(list(official.SCHEDULE) + logits)
    counts = {p: sum(int(np.prod(r.shape)) for r in refs.values()) for p, refs in plan.parts.items()}
    assert counts["vae"] == (55_312_063 if res == 256 else 83_639_999)
    if "mask" in counts:
        assert counts["mask"] == 403_623_939 + 656_000
    if "text" in counts:
        assert counts["text"] == 403_623_939 + 186_154_682 - 19_564_602  # without the unused output layer
    if "diffuser" in counts:
        assert counts["diffuser"] == 2 * 13_136_321


# ---- the converted weights compute what the released layers compute -------------------------

CONV, CONV_S2, LINEAR = "conv", "conv_s2", "linear"
UNET_LAYERS = [  # (cdiff module, released module, how the released module computes)
    ("unet.conv_in", "input_blocks.0.0", CONV),
    ("unet.time_embedding.linear_1", "time_embed.0", LINEAR),
    ("unet.down_blocks.0.resnets.1.conv1", "input_blocks.2.0.in_layers.2", CONV),
    ("unet.down_blocks.0.resnets.1.time_emb_proj", "input_blocks.2.0.emb_layers.1", LINEAR),
    ("unet.down_blocks.0.downsamplers.0.conv", "input_blocks.3.0.op", CONV_S2),
    ("unet.down_blocks.1.resnets.0.conv_shortcut", "input_blocks.4.0.skip_connection", CONV),
    ("unet.down_blocks.1.attentions.0.proj_in", "input_blocks.4.1.proj_in", CONV),
    (
        "unet.down_blocks.2.attentions.1.transformer_blocks.0.attn2.to_k",
        "input_blocks.8.1.transformer_blocks.0.attn2.to_k",
        LINEAR,
    ),
    (
        "unet.down_blocks.3.attentions.1.transformer_blocks.0.ff.net.0.proj",
        "input_blocks.11.1.transformer_blocks.0.ff.net.0.proj",
        LINEAR,
    ),
    ("unet.mid_block.resnets.1.conv2", "middle_block.2.out_layers.3", CONV),
    (
        "unet.mid_block.attentions.0.transformer_blocks.0.attn1.to_out.0",
        "middle_block.1.transformer_blocks.0.attn1.to_out.0",
        LINEAR,
    ),
    ("unet.up_blocks.0.upsamplers.0.conv", "output_blocks.2.2.conv", CONV),
    ("unet.up_blocks.2.attentions.2.proj_out", "output_blocks.8.1.proj_out", CONV),
    ("unet.up_blocks.3.resnets.2.conv_shortcut", "output_blocks.11.0.skip_connection", CONV),
    ("unet.conv_norm_out", "out.0", "groupnorm"),
    ("unet.conv_out", "out.2", CONV),
]
VAE_LAYERS = [
    ("encoder.conv_in", "encoder.conv_in", CONV),
    ("encoder.down_blocks.1.resnets.0.conv_shortcut", "encoder.down.1.block.0.nin_shortcut", CONV),
    ("encoder.down_blocks.0.downsamplers.0.conv", "encoder.down.0.downsample.conv", "conv_s2_pad"),
    ("decoder.up_blocks.0.upsamplers.0.conv", "decoder.up.2.upsample.conv", CONV),
    ("decoder.up_blocks.2.resnets.1.conv2", "decoder.up.0.block.1.conv2", CONV),
    ("post_quant_conv", "post_quant_conv", CONV),
]


def released_layer(sd: dict, prefix: str, how: str, x: torch.Tensor) -> torch.Tensor:
    w, b = sd[f"{prefix}.weight"].float(), sd.get(f"{prefix}.bias")
    b = None if b is None else b.float()
    if how == LINEAR:
        return F.linear(x, w, b)
    if how == "groupnorm":
        return F.group_norm(x, 32, w, b)
    if how == "conv_s2_pad":  # LDM's VAE Downsample: pad (0, 1, 0, 1), then a 3×3 conv with stride 2
        return F.conv2d(F.pad(x, (0, 1, 0, 1)), w, b, stride=2)
    return F.conv2d(x, w, b, stride=2 if how == CONV_S2 else 1, padding=w.shape[-1] // 2)


def layer_input(module: torch.nn.Module, w: torch.Tensor, how: str) -> torch.Tensor:
    g = torch.Generator().manual_seed(1)
    if how == LINEAR:
        return torch.randn(2, w.shape[1], generator=g)
    return torch.randn(1, w.shape[1] if w.dim() == 4 else w.shape[0], 8, 8, generator=g)


def check_layers(model: torch.nn.Module, sd: dict, prefix: str, layers: list) -> None:
    for ours, theirs, how in layers:
        module = model.get_submodule(ours)
        x = layer_input(module, sd[f"{prefix}{theirs}.weight"], how)
        expect = released_layer(sd, prefix + theirs, how, x)
        if ours.endswith("downsamplers.0.conv") and how == "conv_s2_pad":
            x = F.pad(x, (0, 1, 0, 1))  # diffusers' Downsample2D pads before its conv, as LDM does
        torch.testing.assert_close(module(x), expect, rtol=1e-4, atol=1e-5, msg=ours)


def released_text_encoder(sd: dict, p: str, ids: torch.Tensor) -> torch.Tensor:
    """The release's x-transformers encoder (pre-norm, 8 heads × 64, GELU ×4), from its tensors."""
    w = {k: v.float() for k, v in sd.items() if k.startswith(p)}
    B, T = ids.shape
    x = F.embedding(ids, w[p + "token_emb.weight"]) + w[p + "pos_emb.emb.weight"][:T]
    for i in range(TEXT_DEPTH):
        a, f = f"{p}attn_layers.layers.{2 * i}.", f"{p}attn_layers.layers.{2 * i + 1}."
        h = F.layer_norm(x, (640,), w[a + "0.weight"], w[a + "0.bias"])
        q, k, v = (F.linear(h, w[a + f"1.to_{n}.weight"]).view(B, T, 8, 64).transpose(1, 2) for n in "qkv")
        att = torch.softmax(q @ k.transpose(-1, -2) * 64**-0.5, dim=-1) @ v
        x = x + F.linear(
            att.transpose(1, 2).reshape(B, T, 512), w[a + "1.to_out.weight"], w[a + "1.to_out.bias"]
        )
        h = F.layer_norm(x, (640,), w[f + "0.weight"], w[f + "0.bias"])
        h = F.gelu(F.linear(h, w[f + "1.net.0.0.weight"], w[f + "1.net.0.0.bias"]))
        x = x + F.linear(h, w[f + "1.net.2.weight"], w[f + "1.net.2.bias"])
    return F.layer_norm(x, (640,), w[p + "norm.weight"], w[p + "norm.bias"])


def converted(cfg, sd: dict, kind: str) -> dict[str, torch.nn.Module]:
    shapes = {k: tuple(v.shape) for k, v in sd.items()}
    plan = official.plan_file(Path(kind), kind, shapes, len(cfg.vae.block_out_channels), 2, 2)
    models = stage.target_models(cfg, list(plan.parts))
    for part, model in models.items():
        stage._weights(model).load_state_dict(official.convert(sd, plan.parts[part]), assign=True)
        model.float()
    return models


def test_converted_models_compute_what_the_released_layers_compute(codiff_sd):
    cfg = tiny_cfg()
    sd = codiff_sd
    models = converted(cfg, sd, "codiff_mask_text")
    check_layers(models["text"], sd, "model.text_unet.diffusion_model.", UNET_LAYERS)
    check_layers(models["mask"], sd, "model.seg_mask_unet.diffusion_model.", UNET_LAYERS)
    diff = [(f"mask.{a}", b, h) for a, b, h in UNET_LAYERS]
    check_layers(models["diffuser"].nets, sd, "model.seg_mask_confidence_predictor.diffusion_model.", diff)
    check_layers(models["vae"], sd, "first_stage_model.", VAE_LAYERS)
    # the VAE's mid attention: a 1×1 conv over pixels in the release, a linear over tokens in diffusers
    x = torch.randn(1, 128, 4, 4)
    q = sd["first_stage_model.decoder.mid.attn_1.q.weight"].float()
    expect = F.conv2d(x, q, sd["first_stage_model.decoder.mid.attn_1.q.bias"].float())
    got = models["vae"].decoder.mid_block.attentions[0].to_q(x.flatten(2).transpose(1, 2))
    torch.testing.assert_close(got.transpose(1, 2).reshape(1, 128, 4, 4), expect, rtol=1e-4, atol=1e-5)
    # the whole text encoder, and the mask encoder on a one-hot mask
    ids = torch.randint(0, len(VOCAB), (2, 77), generator=torch.Generator().manual_seed(0))
    p = "cond_stage_model.text_cond_stage_model.transformer."
    torch.testing.assert_close(
        models["text"].encoder(ids), released_text_encoder(sd, p, ids), rtol=1e-4, atol=1e-4
    )
    labels = torch.randint(0, 19, (1, 64, 64), generator=torch.Generator().manual_seed(0))
    # PIL-style nearest resize to 32×32 (pixel centres), one-hot, [1, 19, 1024] row-major as the release
    onehot = F.one_hot(labels[:, 1::2, 1::2].flatten(1), 19).permute(0, 2, 1).float()
    lin = "cond_stage_model.seg_mask_cond_stage_model.linear."
    expect = F.linear(onehot, sd[lin + "weight"].float(), sd[lin + "bias"].float())
    torch.testing.assert_close(models["mask"].encode(labels)["tokens"], expect, rtol=1e-4, atol=1e-5)


# ---- the command, end to end ----------------------------------------------------------------


def test_import_then_generate_and_visualize(release, tmp_path):
    run = tmp_path / "run"
    args = [
        "import-official",
        release["dir"],
        "--resolution",
        "256",
        "--run",
        run,
        "--tokenizer",
        release["bert"],
    ]
    args += [a for s in TINY for a in ("--set", s)]
    result = invoke(*args)
    assert result.exit_code == 0, result.output
    stages = {
        p: json.loads((run / p / "manifest.json").read_text()) for p in ("vae", "text", "mask", "diffuser")
    }
    assert {p: m["stage"] for p, m in stages.items()} == stage.STAGES
    assert stages["vae"]["imported"]["checked_equal_in"] == ["text"]  # the text file's VAE: equal, not used
    assert stages["text"]["imported"]["checked_equal_in"] == ["text"]
    assert stages["diffuser"]["metrics"]["global_step"] == 4200
    diffuser_cfg = json.loads((run / "diffuser" / "config.json").read_text())
    assert diffuser_cfg["diffuser"]["unet"]["time_injection"] == "additive"
    assert diffuser_cfg["experts"] == {
        m: stages[m]["outputs"]["model.safetensors"]["sha256"] for m in ("mask", "text")
    }
    assert json.loads((run / "vae" / "config.json").read_text())["scale_factor"] == 0.058
    # the written tensors are the released ones, under cdiff's names
    sd, _ = official.load_checkpoint(release["dir"] / "256_codiff_mask_text.ckpt")
    text = load_file(str(run / "text" / "model.safetensors"))
    assert torch.equal(
        text["unet.conv_in.weight"], sd["model.text_unet.diffusion_model.input_blocks.0.0.weight"]
    )
    diff = load_file(str(run / "diffuser" / "model.safetensors"))
    key = "model.text_confidence_predictor.diffusion_model.out.2.weight"
    assert torch.equal(diff["text.unet.conv_out.weight"], sd[key])
    assert "encoder.to_logits.weight" not in text
    # refused without --force, replaced with it
    one_line_error(invoke(*args), "pass --force")
    # generate (collaborative, with the release's re-weighting) and visualize, as with a trained run
    mask = tmp_path / "m.png"
    write_mask(mask, np.pad(np.ones((40, 40), np.uint8), 12))
    out = tmp_path / "gen"
    gen_args = ["generate", "--config", "celeba256", "--run", run, "--mask", mask, "--num", 1, "--out", out]
    gen_args += ["--text", "he has a full beard .", "--reweight", "released", "--save-intermediates"]
    # the demo preset guides (scale 3): the released models were trained without condition dropout
    one_line_error(
        invoke(*[a for a in gen_args if a not in ("--config", "celeba256")], "--steps", 2), "--config"
    )
    gen = invoke(*gen_args, "--steps", 2)
    assert gen.exit_code == 0, gen.output
    image = np.asarray(Image.open(out / "000000.png"))
    assert image.shape == (256, 256, 3) and image.std() > 0
    vis = invoke("visualize", out)
    assert vis.exit_code == 0, vis.output
    assert (out / "visualize" / "index.html").is_file()


def test_real_size_256_vae(tmp_path):
    """The 256 px VAE file at its real size (loss.* included): imported, dropped, and decoding as released."""
    sd = fake_state("256_vae", tiny=False, seed=5)
    path = save_lightning(tmp_path / "256_vae.ckpt", sd)
    report = stage.run([path], 256, tmp_path / "run")
    assert report.parts == {"vae": "vae"} and report.parameters == {"vae": 55_312_063}
    assert report.dropped == {official.DROP_LOSS: 56} and report.mapped == 204
    vae, meta = store.load(tmp_path / "run" / "vae", "vae")
    assert meta["scale_factor"] == 0.058 and meta["latent_size"] == 64
    z = torch.randn(1, 3, 4, 4)
    expect = F.conv2d(z, sd["post_quant_conv.weight"].float(), sd["post_quant_conv.bias"].float())
    torch.testing.assert_close(vae.post_quant_conv(z), expect)
    check_layers(vae, sd, "", [("encoder.conv_in", "encoder.conv_in", CONV)])


# ---- safe loading and bad input --------------------------------------------------------------


class _Evil:
    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_malicious_pickle_is_refused_and_not_run(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "256_vae.ckpt"
    torch.save({"state_dict": {"encoder.conv_in.weight": torch.zeros(1)}, "x": _Evil(marker)}, path)
    result = invoke("import-official", path, "--resolution", "256", "--run", tmp_path / "run")
    one_line_error(result, "system to load, which could run arbitrary code")
    assert "--trust-pickle" in result.output
    assert not marker.exists() and not (tmp_path / "run").exists()


def test_expanded_tensors_are_refused_before_anything_is_materialised(tmp_path):
    path = tmp_path / "256_vae.ckpt"
    betas = torch.zeros(1, dtype=torch.float64).expand(20_000_000_000)  # 160 GB claimed, 8 bytes stored
    torch.save({"state_dict": {"betas": betas, "encoder.conv_in.weight": torch.zeros(1)}}, path)
    assert path.stat().st_size < 10_000
    result = invoke("import-official", path, "--resolution", "256", "--run", tmp_path / "run")
    one_line_error(result, "tensor betas claims shape 20000000000 with strides (0,) over 8 bytes")
    assert not (tmp_path / "run").exists()


def test_lightning_objects_load_as_inert_stand_ins_in_every_format(tmp_path):
    sd = {"encoder.conv_in.weight": torch.ones(2)}
    for legacy in (False, True):
        path = save_lightning(tmp_path / f"l{legacy}.ckpt", sd, legacy=legacy)
        for trust in (False, True):  # Lightning is not installed: the stand-ins serve both ways
            loaded, info = official.load_checkpoint(path, trust_pickle=trust)
            assert torch.equal(loaded["encoder.conv_in.weight"], sd["encoder.conv_in.weight"])
            assert info["global_step"] == 4200


def test_schedule_buffers_must_equal_ours():
    cfg = tiny_cfg()
    sd = {k: torch.from_numpy(v).float() for k, v in ldm_schedule().items()}
    assert official.check_schedule(Path("x"), sd, cfg.diffusion) == 12
    sd["betas"] = sd["betas"] * 1.01
    with pytest.raises(InputError, match="betas differ from cdiff's schedule"):
        official.check_schedule(Path("x"), sd, cfg.diffusion)


@pytest.mark.parametrize(
    "case, message",
    [
        ("missing", "not found"),
        ("corrupt", "is not a readable PyTorch checkpoint"),
        ("empty_dir", "no 256_{vae,text,mask,codiff_mask_text}.ckpt in"),
        ("resolution", "pass --resolution 256"),
        ("bad_resolution", "--resolution must be 256 or 512"),
        ("no_tokenizer", "pass --tokenizer DIR"),
        ("different_vae", "hold different vae weights"),
    ],
)
def test_bad_input_one_line_exit_2(release, tmp_path, monkeypatch, case, message):
    import cdiff.data.tokenizer as tokmod

    monkeypatch.setattr(tokmod, "_bert_in_cache", lambda: None)  # an empty Hugging Face cache
    res, src, extra = 256, [release["dir"]], ["--tokenizer", release["bert"]]
    if case == "missing":
        src = [tmp_path / "256_text.ckpt"]
    elif case == "corrupt":
        src = [tmp_path / "256_vae.ckpt"]
        src[0].write_bytes(b"PK\x03\x04" + b"\0" * 64)
    elif case == "empty_dir":
        src = [tmp_path]
    elif case == "resolution":
        src, res = [release["dir"] / "256_text.ckpt"], 512
    elif case == "bad_resolution":
        res = 128
    elif case == "no_tokenizer":
        extra = []
    elif case == "different_vae":
        sd = fake_state("256_vae", seed=9)
        src = [release["dir"] / "256_text.ckpt", save_lightning(tmp_path / "256_vae.ckpt", sd)]
    sets = [] if case == "resolution" else [a for s in TINY for a in ("--set", s)]
    result = invoke("import-official", *src, "--resolution", res, "--run", tmp_path / "run", *extra, *sets)
    one_line_error(result, message)
    assert not (tmp_path / "run").exists() or not any((tmp_path / "run").iterdir())


def test_models_built_from_the_presets_match_the_release_counts():
    """The targets are the released architectures (REFERENCE.md §1), diffusers with additive time."""
    cfg = stage.resolve_config(512)
    models = stage.target_models(cfg, ["vae", "diffuser"])
    assert sum(p.numel() for p in models["vae"].parameters()) == 83_639_999
    assert isinstance(models["diffuser"], DiffuserSet)
    assert sum(p.numel() for p in models["diffuser"].parameters()) == 2 * 13_136_321
    assert cfg_mod.to_dict(cfg)["diffuser"]["unet"]["time_injection"] == "additive"


def test_dry_run_prints_the_config_and_files_and_writes_nothing(release, tmp_path):
    result = invoke(
        "import-official", release["dir"], "--resolution", 256, "--run", tmp_path / "run", "--dry-run"
    )
    assert result.exit_code == 0, result.output
    assert "time_injection: additive" in result.output and "resolution: 256" in result.output
    assert f"# would import {release['dir'] / '256_text.ckpt'}" in result.output
    assert not (tmp_path / "run").exists()
