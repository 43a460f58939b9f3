"""The evaluator models learn the synthetic faces: the parser and classifier reach a stated accuracy."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from cdiff.cli import app
from cdiff.data.prepared import PreparedDataset
from cdiff.models import store
from cdiff.stages.train_evaluator import augment

runner = CliRunner()
SMALL = [
    "evaluator.parser_channels=[8,16,32]",
    "evaluator.classifier_channels=[8,16,32,64]",
    "evaluator.train.batch_size=32",
    "evaluator.train.lr=3e-3",
    "evaluator.train.lr_schedule=cosine",
    "evaluator.train.warmup_steps=10",
    "evaluator.train.sample_every=1000",
]


@pytest.mark.slow  # a learning test (40 s; train-evaluator itself runs in the tiny run and the shipped evaluator's accuracy is checked): make test-all
def test_evaluator_trains_to_a_stated_accuracy(tmp_path):
    """300 synthetic faces at 32 px, 200 steps (~15 s): parser ≥ 0.8 pixel accuracy, gender ≥ 0.8.

    Chance levels for comparison: the majority class (background) covers about 0.61 of the
    pixels, the majority gender about 0.6 of the faces.
    """
    run = tmp_path / "run"
    assert (
        runner.invoke(app, ["prepare", "--num", "300", "--resolution", "32", "--run", str(run)]).exit_code
        == 0
    )
    sets = [a for s in SMALL for a in ("--set", s)]
    r = runner.invoke(app, ["train-evaluator", "--run", str(run), "--steps", "200", *sets])
    assert r.exit_code == 0, r.output
    val = json.loads((run / "evaluator" / "manifest.json").read_text())["metrics"]["val"]
    data = PreparedDataset.open(run / "data")
    labels = np.stack([data.label(i) for i in data.split("val")])
    majority = np.bincount(labels.ravel()).max() / labels.size
    assert majority < 0.65
    assert val["parser_accuracy"] >= 0.8, val
    assert val["gender_accuracy"] >= 0.8, val
    # the exported models load and read an image as the training run did
    models, meta = store.load(run / "evaluator", "evaluator")
    parser, classifier, spec = models.parser, models.classifier, models.spec
    assert spec.attributes == {"gender": 2, "beard": 4, "age": 5} and meta["metrics"]["val"] == val
    x = torch.zeros(2, 3, 32, 32)
    assert parser(x).shape == (2, 19, 32, 32) and classifier(x)["age"].shape == (2, 5)


def test_augment_swaps_left_and_right_classes_when_flipping():
    label = torch.zeros(1, 4, 4, dtype=torch.long)
    label[0, :, 0] = 4  # l_eye on the image's left column
    label[0, :, 3] = 7  # r_brow on the right
    x = torch.zeros(1, 3, 4, 4)
    flipped = None
    for seed in range(20):  # some seed flips the image
        _, out = augment(x, label, torch.Generator().manual_seed(seed))
        if not torch.equal(out, label):
            flipped = out
            break
    assert flipped is not None
    assert (flipped[0, :, 3] == 5).all() and (
        flipped[0, :, 0] == 6
    ).all()  # now r_eye on the right, l_brow left
