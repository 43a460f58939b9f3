"""Collaboration: dynamic diffusers, the combination math, the released re-weighting, training only the diffusers."""

from __future__ import annotations

import math

import pytest
import torch

from cdiff import config as C
from cdiff.diffusion.predictors import CollabPredictor
from cdiff.models import store
from cdiff.models.collab import (
    Collaboration,
    DiffuserSet,
    combine,
    diffuser_record,
    influence_weights,
    released_reweight,
)
from cdiff.models.unimodal import UnimodalModel
from cdiff.stages import train_diffuser
from cdiff.training.loop import fit

TINY_DIFFUSER = {
    "diffuser.unet.block_out_channels": [8, 16],
    "diffuser.unet.layers_per_block": 1,
    "diffuser.unet.attention": [False, True],
    "diffuser.unet.heads": 2,
    "diffuser.unet.norm_num_groups": 4,
    "diffuser.unet.cross_attention_dim": 32,
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


def tiny(modalities=("mask", "text"), **over):
    torch.manual_seed(0)
    cfg = C.load_config("demo", {**TINY_DIFFUSER, "diffuser.modalities": list(modalities), **over})
    experts = {}
    for m in modalities:
        kind = "mask" if m.startswith("mask") else "text"
        experts[m] = UnimodalModel(cfg.unimodal, kind, 3, 8, vocab_size=50)
    extra = {m: 19 for m, e in experts.items() if e.concat}
    return cfg, Collaboration(experts, DiffuserSet(cfg.diffuser, 3, 8, extra), list(modalities))


def raw_for(modalities, B=2):
    g = torch.Generator().manual_seed(1)
    return {
        m: torch.randint(0, 19, (B, 32, 32), generator=g)
        if m.startswith("mask")
        else torch.randint(0, 50, (B, 77), generator=g)
        for m in modalities
    }


@pytest.mark.parametrize("preset", ["celeba256", "celeba512"])
def test_paper_diffuser_counts(preset):
    cfg = C.load_config(preset)
    assert train_diffuser.parameter_counts(cfg) == {
        "mask dynamic diffuser": 13_404_641,
        "text dynamic diffuser": 13_404_641,
    }
    cfg = C.load_config(preset, {"diffuser.unet.time_injection": "additive"})
    assert set(train_diffuser.parameter_counts(cfg).values()) == {13_136_321}
    # the head count changes no parameter
    cfg = C.load_config(preset, {"diffuser.unet.heads": 4})
    assert set(train_diffuser.parameter_counts(cfg).values()) == {13_404_641}


def test_softmax_and_combine():
    a, b = torch.randn(2, 1, 4, 4), torch.randn(2, 1, 4, 4)
    w = influence_weights([a, b])
    assert w.shape == (2, 2, 1, 4, 4)
    assert torch.allclose(w.sum(0), torch.ones(2, 1, 4, 4))
    assert torch.allclose(w[0], torch.sigmoid(a - b), atol=1e-6)
    e1, e2 = torch.randn(2, 3, 4, 4), torch.randn(2, 3, 4, 4)
    assert torch.allclose(combine([e1, e2], w), w[0] * e1 + w[1] * e2, atol=1e-6)


def test_released_reweight_formula():
    w = torch.full((2, 3, 1, 2, 2), 0.5)  # modalities: mask, text
    t = torch.tensor([1000, 500, 0])
    out = released_reweight(w, ["mask", "text"], t)
    for k, tk in enumerate(t.tolist()):
        s = (math.cos((1 - tk / 1000) * math.pi) + 1) / 2
        m = s * 0.5
        assert out[0, k].flatten()[0].item() == pytest.approx(2 * m / (1 + m), abs=1e-6)
        assert out[1, k].flatten()[0].item() == pytest.approx((1 - m) / (1 + m), abs=1e-6)
    assert torch.allclose(out.sum(0), torch.ones(3, 1, 2, 2))
    assert out[0, 2].max() == 0  # at t = 0 the text model has it all
    # the order of the modality list does not matter
    assert torch.allclose(released_reweight(w.flip(0), ["text", "mask"], t).flip(0), out)
    with pytest.raises(Exception, match="mask and text only"):
        released_reweight(torch.full((3, 1, 1, 1, 1), 1 / 3), ["mask", "text", "sketch"], t[:1])


@pytest.mark.parametrize("modalities", [("mask", "text"), ("mask", "text", "text2")])
def test_zero_initialised_diffusers_start_from_the_average(modalities):
    cfg, collab = tiny(modalities)
    raw = raw_for(modalities)
    x, t = torch.randn(2, 3, 8, 8), torch.tensor([10, 700])
    with torch.no_grad():
        conds = collab.encode(raw)
        eps, w = collab(x, t, conds)
        experts = collab.expert_eps(x, t, conds)
    assert w.shape == (len(modalities), 2, 1, 8, 8)
    assert torch.allclose(w, torch.full_like(w, 1 / len(modalities)))
    assert torch.allclose(eps, sum(experts) / len(modalities), atol=1e-6)


def test_mask_diffuser_sees_the_concatenated_mask():
    cfg, collab = tiny(**{"unimodal.mask_concat": True})
    assert collab.diffusers.nets["mask"].unet.conv_in.in_channels == 3 + 19
    assert collab.diffusers.nets["text"].unet.conv_in.in_channels == 3


def test_training_moves_only_the_diffusers_and_beats_the_average(tmp_path):
    cfg, collab = tiny(
        **{"diffuser.train.lr": 3e-3, "diffuser.train.batch_size": 4, "diffuser.train.steps": 60}
    )
    experts_before = {k: v.clone() for k, v in collab.experts.state_dict().items()}
    task = train_diffuser.DiffuserTask(collab, cfg, scale=1.0)
    g = torch.Generator().manual_seed(0)
    data = [
        {
            "mean": torch.randn(3, 8, 8, generator=g),
            "std": torch.zeros(3, 8, 8),
            **{f"cond_{m}": r[0] for m, r in raw_for(("mask", "text"), 1).items()},
        }
        for _ in range(4)
    ]
    # a fixed batch, fixed noise and timesteps: the diffusers should learn per-pixel weights that beat 50/50
    batch = {k: torch.stack([d[k] for d in data]) for k in data[0]}
    first = task(batch, torch.Generator().manual_seed(5))[1]["loss_average"]
    result = fit(task, _Repeat(data), cfg.diffuser.train, tmp_path, show_progress=False)
    assert result.step == 60
    for k, v in collab.experts.state_dict().items():
        assert torch.equal(v, experts_before[k]), k
    assert all(not p.requires_grad for p in collab.experts.parameters())
    with torch.no_grad():
        loss, logs = task(batch, torch.Generator().manual_seed(5))
    assert logs["loss_average"] == pytest.approx(first)
    assert loss.item() < 0.97 * logs["loss_average"]


class _Repeat(torch.utils.data.Dataset):
    def __init__(self, items):
        self.items = items

    def __len__(self):
        return len(self.items)

    def __getitem__(self, i):
        return self.items[i]


def test_influence_every_reuses_maps_within_a_batch():
    cfg, collab = tiny()
    with torch.no_grad():  # make the diffusers non-trivial
        for net in collab.diffusers.nets.values():
            torch.nn.init.normal_(net.unet.conv_out.weight, std=0.5)
    pred = CollabPredictor(collab, influence_every=2)
    enc = pred.encode(raw_for(("mask", "text")))
    x = [torch.randn(2, 3, 8, 8) for _ in range(3)]
    t = [torch.tensor([900, 900]), torch.tensor([500, 500]), torch.tensor([100, 100])]
    with torch.no_grad():
        w = [pred(x[i], t[i], enc)[1]["weights"] for i in range(3)]
    assert torch.equal(w[0], w[1]) and not torch.equal(w[1], w[2])
    pred_all = CollabPredictor(collab, influence_every=1)
    enc = pred_all.encode(raw_for(("mask", "text")))
    with torch.no_grad():
        assert not torch.equal(
            pred_all(x[0], t[0], enc)[1]["weights"], pred_all(x[1], t[1], enc)[1]["weights"]
        )


def test_composable_weights_are_fixed():
    cfg, collab = tiny()
    pred = CollabPredictor(collab, "composable", [0.25, 0.75])
    enc = pred.encode(raw_for(("mask", "text")))
    x, t = torch.randn(2, 3, 8, 8), torch.tensor([400, 20])
    with torch.no_grad():
        eps, extras = pred(x, t, enc)
        e = collab.expert_eps(x, t, enc[0])
    assert torch.allclose(eps, 0.25 * e[0] + 0.75 * e[1], atol=1e-6)
    assert extras["weights"].shape == (2, 2, 1, 8, 8)


def test_bf16_experts_run(tmp_path):
    cfg, collab = tiny()
    collab.experts.to(torch.bfloat16)
    with torch.no_grad():
        conds = collab.encode(raw_for(("mask", "text")))
        eps, _ = collab(torch.randn(2, 3, 8, 8), torch.tensor([3, 4]), conds)
    assert eps.dtype == torch.float32 and torch.isfinite(eps).all()


def test_diffusers_save_load_identical(tmp_path):
    cfg, collab = tiny(**{"unimodal.mask_concat": True})
    with torch.no_grad():
        for net in collab.diffusers.nets.values():
            torch.nn.init.normal_(net.unet.conv_out.weight, std=0.5)
    x, t = torch.randn(2, 3, 8, 8), torch.tensor([10, 600])
    with torch.no_grad():
        conds = collab.encode(raw_for(("mask", "text")))
        before = collab.logits(x, t, conds)
    record = {"latent_channels": 3, "latent_size": 8, "extra_in": {"mask": 19}}
    store.save(tmp_path, "diffuser", collab.diffusers, diffuser_record(collab.diffusers, record))
    loaded, meta = store.load(tmp_path, "diffuser")
    assert meta["diffuser"]["modalities"] == ["mask", "text"]
    with torch.no_grad():
        after = loaded(x, t, {m: {k: v.float() for k, v in c.items()} for m, c in conds.items()})
    for a, b in zip(before, after, strict=True):
        assert torch.equal(a, b)


def test_loss_is_mse_to_the_true_noise():
    cfg, collab = tiny()
    task = train_diffuser.DiffuserTask(collab, cfg, scale=1.0)
    batch = {
        "mean": torch.randn(2, 3, 8, 8),
        "std": torch.zeros(2, 3, 8, 8),
        **{f"cond_{m}": v for m, v in raw_for(("mask", "text")).items()},
    }
    loss, logs = task(batch, torch.Generator().manual_seed(3))
    # zero-initialised diffusers: the collaborative loss equals the plain average's
    assert loss.item() == pytest.approx(logs["loss_average"], rel=1e-5)
    assert logs["w_mask"] == pytest.approx(0.5) and logs["w_text"] == pytest.approx(0.5)


def test_training_against_guided_experts():
    """diffuser.train_guidance: the diffusers weigh the guided predictions that sampling will combine."""
    cfg, collab = tiny(**{"diffuser.train_guidance": 3.0})
    raw = raw_for(("mask", "text"), 2)
    nulls = {"mask": torch.zeros_like(raw["mask"][0]), "text": torch.zeros_like(raw["text"][0])}
    task = train_diffuser.DiffuserTask(collab, cfg, scale=1.0, nulls=nulls)
    g = torch.Generator().manual_seed(0)
    batch = {"mean": torch.randn(2, 3, 8, 8, generator=g), "std": torch.zeros(2, 3, 8, 8)}
    batch.update({f"cond_{m}": r for m, r in raw.items()})
    with torch.no_grad():
        logs = task(batch, torch.Generator().manual_seed(1))[1]
        # by hand, with the same draws: the average of u + 3 (e - u) over the experts
        gen = torch.Generator().manual_seed(1)
        z0 = batch["mean"] + batch["std"] * torch.randn(batch["mean"].shape, generator=gen)
        t = torch.randint(0, len(task.alpha_bar), (2,), generator=gen)
        eps = torch.randn(z0.shape, generator=gen)
        z_t = train_diffuser.q_sample(z0, t, eps, task.alpha_bar)
        e = collab.expert_eps(z_t, t, collab.encode(raw))
        u = collab.expert_eps(z_t, t, collab.encode({m: nulls[m].expand_as(raw[m]) for m in raw}))
        guided = [ui + 3.0 * (ei - ui) for ei, ui in zip(e, u, strict=True)]
        expected = torch.nn.functional.mse_loss(sum(guided) / 2, eps).item()
        plain = torch.nn.functional.mse_loss(sum(e) / 2, eps).item()
    assert logs["loss_average"] == pytest.approx(expected, rel=1e-5)
    assert expected != pytest.approx(plain)
    with pytest.raises(Exception, match="null condition"):
        train_diffuser.DiffuserTask(collab, cfg, scale=1.0)
