"""Evaluation metrics on hand-made cases, the attribute targets, and the FID code path."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from cdiff import metrics as M
from cdiff.data import attributes as A


def test_pixel_accuracy_perfect_and_shuffled():
    g = torch.Generator().manual_seed(0)
    labels = torch.randint(0, 19, (4, 16, 16), generator=g)
    assert torch.equal(M.pixel_accuracy(labels, labels), torch.ones(4))
    # a prediction of another image of uniform random labels agrees on ~1/19 of the pixels
    other = torch.randint(0, 19, (4, 16, 16), generator=g)
    assert abs(float(M.pixel_accuracy(other, labels).mean()) - 1 / 19) < 0.03
    # half of the pixels changed: 0.5 exactly
    half = labels.clone()
    half[:, :8] = (half[:, :8] + 1) % 19
    assert torch.allclose(M.pixel_accuracy(half, labels), torch.full((4,), 0.5))
    with pytest.raises(ValueError):
        M.pixel_accuracy(labels[:, :8], labels)


def test_protocol_labels_average_then_argmax():
    # a 64x64 map whose left half is class 3 and right half class 7, as confident probabilities
    probs = torch.zeros(1, 19, 64, 64)
    probs[0, 3, :, :32] = 1
    probs[0, 7, :, 32:] = 1
    small = M.protocol_labels(probs, 32)
    assert small.shape == (1, 32, 32)
    assert (small[0, :, :16] == 3).all() and (small[0, :, 16:] == 7).all()
    labels = probs.argmax(1)
    assert torch.equal(M.nearest_labels(labels, 32), small)
    assert torch.equal(M.nearest_labels(labels, 64), labels)


def test_mean_iou():
    t = torch.tensor([[[0, 0, 1, 1]]])
    assert M.mean_iou(t, t, 19) == 1.0
    p = torch.tensor([[[0, 1, 1, 1]]])
    assert M.mean_iou(p, t, 19) == pytest.approx((1 / 2 + 2 / 3) / 2)


def test_attribute_hits_and_text_accuracy():
    logits = {"beard": torch.tensor([[5.0, 0, 0], [0, 5.0, 0], [0, 0, 5.0]]), "age": torch.eye(3) * 5}
    targets = {"beard": torch.tensor([0, 2, -1]), "age": torch.tensor([0, 1, 2])}
    hits = M.attribute_hits(logits, targets)
    assert hits["beard"][:2].tolist() == [1.0, 0.0] and hits["beard"][2].isnan()
    assert hits["age"].tolist() == [1.0, 1.0, 1.0]
    assert M.text_accuracy(hits).tolist() == [1.0, 0.5, 1.0]  # unknown targets do not count
    assert M.nanmean(hits["beard"]) == 0.5


def test_frechet_distance_known_values():
    d = 4
    mu1, mu2 = np.zeros(d), np.arange(d, dtype=float)
    eye = np.eye(d)
    assert M.frechet_distance(mu1, eye, mu1, eye) == pytest.approx(0.0, abs=1e-9)
    assert M.frechet_distance(mu1, eye, mu2, eye) == pytest.approx(float((mu2**2).sum()))
    a, b = np.diag([1.0, 4.0, 9.0, 16.0]), np.diag([4.0, 4.0, 1.0, 0.0])
    expected = sum((np.sqrt(x) - np.sqrt(y)) ** 2 for x, y in zip(np.diag(a), np.diag(b), strict=True))
    assert M.frechet_distance(mu1, a, mu1, b) == pytest.approx(expected, rel=1e-9)
    # from samples: the same set gives 0, a shifted one about the shift squared
    g = torch.Generator().manual_seed(0)
    f = torch.randn(2000, 3, generator=g)
    assert M.frechet_between(f, f) == pytest.approx(0.0, abs=1e-6)
    assert M.frechet_between(f, f + 2) == pytest.approx(12.0, rel=1e-6)


def test_paired_difference_interval():
    a = torch.full((50,), 0.8) + torch.linspace(-0.01, 0.01, 50)
    b = torch.full((50,), 0.7)
    d = M.paired_difference(a, b)
    assert d["mean"] == pytest.approx(0.1, abs=1e-6) and d["low"] > 0.09 and d["high"] < 0.11
    same = M.paired_difference(b, b)
    assert same["low"] == same["high"] == 0.0
    nan = M.paired_difference(torch.tensor([float("nan")]), torch.tensor([1.0]))
    assert nan["pairs"] == 0


def test_fid_code_path_with_random_inception(tmp_path):
    """The FID Inception (pytorch-fid's architecture) with random weights, loaded from a local file."""
    pytest.importorskip("pytorch_fid")
    torch.manual_seed(0)
    path = tmp_path / M.FID_WEIGHTS
    torch.save(M.build_fid_inception().state_dict(), path)
    model = M.load_fid_inception(M.find_inception(path))
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 256, (32, 32, 3), dtype=np.uint8) for _ in range(6)]
    f = M.inception_features(model, images, batch=4)
    assert f.shape == (6, 2048) and torch.isfinite(f).all()
    assert M.frechet_between(f, f) == pytest.approx(0.0, abs=1e-3)
    assert M.frechet_between(f[:3], f[3:]) > 0
    bad = tmp_path / "bad.pth"
    torch.save({"not": torch.zeros(1)}, bad)
    with pytest.raises(M.InputError, match="not the FID Inception"):
        M.load_fid_inception(bad)
    with pytest.raises(M.InputError, match="not found"):
        M.find_inception(tmp_path / "missing.pth")


def test_attribute_targets_synthetic_and_celeba():
    syn = {
        "caption": "The lady looks like she is in her thirties.",
        "attribute_captions": {"No_Beard": "", "Young": "The lady looks like she is in her thirties."},
        "attributes": {"gender": "woman", "beard": 0, "age": 2},
    }
    assert A.targets(syn, "synthetic") == {"gender": 0, "beard": 0, "age": 2}
    assert A.stated(syn, "synthetic") == {"gender": 0, "beard": -1, "age": 2}  # no beard sentence
    celeba = {
        "caption": "He has a long beard. This man is in his fifties.",
        "attribute_captions": {"No_Beard": "He has a long beard.", "Young": "This man is in his fifties."},
        "attributes": {"Bangs": 0, "Eyeglasses": 0, "No_Beard": 4, "Smiling": 1, "Young": 3},
    }
    assert A.stated(celeba, "celeba") == {"gender": 1, "beard": 4, "age": 3}
    plain = {"caption": "This person is young.", "attributes": None}  # no degrees, no pronoun
    assert A.targets(plain, "codiff") == {"gender": -1, "beard": -1, "age": -1}
    assert A.caption_gender("She and he") == -1
