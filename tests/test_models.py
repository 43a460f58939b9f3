"""Architectures: exact paper-scale parameter counts, mask tokens, schedule, save/load."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from cdiff import config as C
from cdiff.config import DiffusionConfig
from cdiff.data import masks
from cdiff.diffusion.schedule import alphas_cumprod, ddim_scheduler
from cdiff.models import store
from cdiff.models.build import build_vae, count_parameters
from cdiff.models.encoders import MaskEncoder, TextEncoder
from cdiff.models.unimodal import UnimodalModel, onehot_tokens, unimodal_record
from cdiff.stages import train_unimodal


def test_paper_vae_counts():
    cfg256 = C.load_config("celeba256")
    cfg512 = C.load_config("celeba512")
    assert count_parameters(lambda: build_vae(cfg256.vae)) == 55_312_063
    assert count_parameters(lambda: build_vae(cfg512.vae)) == 83_639_999


@pytest.mark.parametrize("preset", ["celeba256", "celeba512"])
def test_paper_unimodal_counts(preset):
    cfg = C.load_config(preset)
    text = train_unimodal.parameter_counts(cfg, "text")
    assert text["text UNet"] == 403_623_939
    assert text["text encoder"] == 166_590_080
    assert text["release's unused text output layer (not built)"] == 19_564_602
    mask = train_unimodal.parameter_counts(cfg, "mask")
    assert mask["mask UNet"] == 403_623_939 and mask["mask encoder"] == 656_000


def test_text_encoder_with_release_output_layer():
    cfg = C.load_config("celeba256", ["unimodal.text_encoder.output_layer=true"]).unimodal.text_encoder
    assert count_parameters(lambda: TextEncoder(cfg)) == 186_154_682


@pytest.mark.parametrize("size", [64, 40, 256, 33])
def test_torch_tokens_match_reference_conversion(size):
    label = np.random.default_rng(size).integers(0, 19, (size, size)).astype(np.uint8)
    expected = masks.label_to_tokens(label, 32)
    got = onehot_tokens(torch.from_numpy(label)[None], 32)[0].numpy()
    assert np.array_equal(got, expected)


def test_schedule_values():
    ab = alphas_cumprod(DiffusionConfig())
    assert ab[0].item() == pytest.approx(0.9985, abs=1e-12)
    assert ab[999].item() == pytest.approx(1.42e-4, rel=0.01)
    sched = ddim_scheduler(DiffusionConfig())
    sched.set_timesteps(50)
    assert sched.timesteps.tolist() == list(range(981, 0, -20))  # t = 981, 961, ..., 1


def tiny_unimodal_cfg(**over):
    base = {
        "unimodal.unet.block_out_channels": [16, 32],
        "unimodal.unet.attention": [False, True],
        "unimodal.unet.heads": 2,
        "unimodal.unet.norm_num_groups": 4,
        "unimodal.unet.cross_attention_dim": 32,
        "unimodal.text_encoder.width": 32,
        "unimodal.text_encoder.depth": 1,
        "unimodal.text_encoder.heads": 2,
        "unimodal.text_encoder.head_dim": 16,
        "unimodal.mask_tokens": 8,
    }
    return C.load_config("demo", {**base, **over}).unimodal


@pytest.mark.parametrize("modality, concat", [("text", False), ("mask", False), ("mask", True)])
def test_unimodal_save_load_identical(tmp_path, modality, concat):
    torch.manual_seed(0)
    cfg = tiny_unimodal_cfg(
        **{"unimodal.mask_concat": concat, "unimodal.unet.global_condition": modality == "text"}
    )
    model = UnimodalModel(cfg, modality, 3, 8, vocab_size=50).eval()
    raw = torch.randint(0, 50, (2, 77)) if modality == "text" else torch.randint(0, 19, (2, 16, 16))
    x, t = torch.randn(2, 3, 8, 8), torch.tensor([5, 900])
    with torch.no_grad():
        before = model(x, t, model.encode(raw))
    store.save(
        tmp_path,
        "unimodal",
        model,
        unimodal_record(model, {"latent_channels": 3, "latent_size": 8, "vocab_size": 50}),
    )
    loaded, meta = store.load(tmp_path, "unimodal")
    assert meta["modality"] == modality
    with torch.no_grad():
        assert torch.equal(loaded(x, t, loaded.encode(raw)), before)


def test_mask_encoder_is_one_linear():
    enc = MaskEncoder(r=32, width=640)
    assert sum(p.numel() for p in enc.parameters()) == 656_000
    tokens = onehot_tokens(torch.zeros(1, 64, 64, dtype=torch.long), 32)
    assert enc(tokens).shape == (1, 19, 640)


def test_min_snr_weight():
    from cdiff.stages.train_unimodal import min_snr_weight

    ab = alphas_cumprod(DiffusionConfig()).float()
    w = min_snr_weight(ab, 5.0)
    snr = ab / (1 - ab)
    assert torch.allclose(w[snr > 5], 5.0 / snr[snr > 5])  # low noise: down-weighted
    assert torch.all(w[snr <= 5] == 1.0)  # high noise: plain MSE
    assert w[0] < 0.01 and w[999] == 1.0


def test_attention_goes_through_pytorchs_fused_kernels():
    """Every UNet attention of the shipped experts and diffusers uses diffusers' SDPA processor, and the
    text encoder's self-attention calls ``scaled_dot_product_attention`` (checked by patching it)."""
    from diffusers.models.attention_processor import AttnProcessor2_0

    from cdiff.stages.demo_weights import shipped_run
    from cdiff.stages.run import Run

    run = Run(shipped_run())
    unets = [run.expert(m)[0].unet for m in ("text", "mask")]
    unets += [net.unet for net in run.diffusers()[0].nets.values()]
    for unet in unets:
        assert {type(p) for p in unet.attn_processors.values()} == {AttnProcessor2_0}
    calls = []
    real = torch.nn.functional.scaled_dot_product_attention

    def counting(*args, **kwargs):
        calls.append(1)
        return real(*args, **kwargs)

    text, _ = run.expert("text")
    with torch.no_grad(), pytest.MonkeyPatch.context() as mp:
        mp.setattr(torch.nn.functional, "scaled_dot_product_attention", counting)
        text.encode(run.read("text", ["He has a beard."], []))
    assert calls


def test_compile_wraps_the_unets_in_place_once(monkeypatch):
    from cdiff.errors import InputError
    from cdiff.stages.demo_weights import shipped_run
    from cdiff.stages.run import Run

    run = Run(shipped_run())
    before = {k: v.clone() for k, v in run.expert("mask")[0].state_dict().items()}
    run.compile(["mask", "text"], diffusers=True)
    run.compile(["mask", "text"], diffusers=True)  # again: nothing more
    unets = [run.expert(m)[0].unet for m in ("mask", "text")] + [
        n.unet for n in run.diffusers()[0].nets.values()
    ]
    assert all(u._compiled_call_impl is not None for u in unets)  # compiled on their first call
    after = run.expert("mask")[0].state_dict()
    assert list(after) == list(before) and all(torch.equal(before[k], after[k]) for k in before)
    monkeypatch.setenv("PATH", "/nonexistent")
    with pytest.raises(InputError, match="C\\+\\+ compiler"):
        Run(shipped_run()).compile(["mask"], diffusers=False)


def test_imagic_optimisations_in_mixed_precision():
    """``edit --dtype bfloat16``: the forward and backward under autocast, the embedding and weights float32."""
    from cdiff.stages import imagic
    from cdiff.stages.demo_weights import shipped_run
    from cdiff.stages.run import Run

    run = Run(shipped_run())
    expert = run.fresh_expert("text")
    target = {k: v.detach() for k, v in expert.encode(run.read("text", ["He has a beard."], [])).items()}
    ab = alphas_cumprod(DiffusionConfig()).float()
    z0 = torch.randn(1, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    got = {}
    for dtype in (torch.float32, torch.bfloat16):
        got[dtype] = imagic.optimise_embedding(expert, z0, target, 3, 1e-3, 2, ab, 0, None, dtype)
        assert got[dtype]["tokens"].dtype == torch.float32 and torch.isfinite(got[dtype]["tokens"]).all()
    assert not torch.equal(got[torch.float32]["tokens"], target["tokens"])
    assert torch.allclose(got[torch.float32]["tokens"], got[torch.bfloat16]["tokens"], atol=0.05)
    imagic.finetune_unet(expert, z0, got[torch.bfloat16], 2, 1e-5, 2, ab, 0, None, torch.bfloat16)
    assert all(p.dtype == torch.float32 and torch.isfinite(p).all() for p in expert.unet.parameters())


@pytest.mark.slow
def test_compiled_sampling_matches_eager():
    """``--compile``: the same images to float rounding (minutes: the compiler runs)."""
    from cdiff import Pipeline

    images = {}
    for compiled in (False, True):
        pipe = Pipeline.from_run(None, device="cpu", solver="dpm", steps=4, compile=compiled)
        ex = pipe.examples()[0]
        images[compiled] = pipe.generate(mask=ex["mask"], text=ex["text"], num=2, progress=False).images
    for a, b in zip(images[False], images[True], strict=True):
        assert np.abs(a.astype(int) - b.astype(int)).max() <= 2
