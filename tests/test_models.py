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
