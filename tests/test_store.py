"""The model store: one save/load for every kind, with one-line errors for what is not a model."""

from __future__ import annotations

import json

import pytest
import torch

from cdiff.errors import InputError
from cdiff.models import store
from cdiff.stages.demo_weights import shipped_dir


def test_every_shipped_model_round_trips(tmp_path):
    for part, kind in [
        ("vae", "vae"),
        ("text", "unimodal"),
        ("diffuser", "diffuser"),
        ("evaluator", "evaluator"),
    ]:
        model, record = store.load(shipped_dir() / part, kind)
        assert not model.training and not any(p.requires_grad for p in model.parameters())
        store.save(tmp_path / part, kind, model, {k: v for k, v in record.items() if k != "kind"})
        again, rec2 = store.load(tmp_path / part, kind)
        assert rec2 == {"kind": kind, **record}  # the evaluator's shipped record predates "kind"
        for a, b in zip(model.state_dict().values(), again.state_dict().values(), strict=True):
            assert torch.equal(a, b)
        assert json.loads((tmp_path / part / "config.json").read_text())["kind"] == kind


def test_store_errors_name_the_folder_and_the_command(tmp_path):
    with pytest.raises(InputError, match=r"no trained VAE in .*; make it first: cdiff train-vae --run"):
        store.load(tmp_path / "vae", "vae")
    with pytest.raises(InputError, match=r"holds a diffuser model, not a trained VAE"):
        store.load(shipped_dir() / "diffuser", "vae")
    with pytest.raises(InputError, match="unknown model kind 'gan'"):
        store.load(tmp_path, "gan")
    folder = tmp_path / "mask"
    model, record = store.load(shipped_dir() / "mask", "unimodal")
    store.save(folder, "unimodal", model, {k: v for k, v in record.items() if k != "kind"})
    weights = folder / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:1000])  # truncated
    with pytest.raises(InputError, match=r"cannot be read .*cdiff train-unimodal --modality mask .* --force"):
        store.load(folder, "unimodal")
    (folder / "config.json").write_text("{not json")
    with pytest.raises(InputError, match=r"config.json cannot be read \(JSONDecodeError\)"):
        store.load(folder, "unimodal")
