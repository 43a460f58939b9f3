"""Diffuser sets and the conditions they read, without models: folders, example files, old layouts."""

from __future__ import annotations

import json

import pytest

from cdiff.errors import InputError
from cdiff.stages import compare, conditions
from cdiff.stages import generate as gen
from cdiff.stages.run import Run


def _set(root, folder, mods):
    (root / folder).mkdir(parents=True)
    (root / folder / "manifest.json").write_text("{}")
    (root / folder / "config.json").write_text(json.dumps({"diffuser": {"modalities": mods}}))


def test_a_set_in_the_wrong_folder_names_where_it_belongs(tmp_path):
    _set(tmp_path, "diffuser", ["mask", "text", "sketch"])  # a run from before sets were named
    run = Run(tmp_path)
    assert run.has_set(["sketch", "mask", "text"]) and not run.has_set(["mask", "text"])
    with pytest.raises(
        InputError, match="holds the diffusers of mask, text, sketch.*diffuser-mask-sketch-text"
    ):
        run.diffuser_part(["mask", "text"])


def test_all_over_modalities_without_their_set_is_one_line(tmp_path):
    _set(tmp_path, "diffuser", ["mask", "text"])
    run = Run(tmp_path)
    with pytest.raises(InputError, match="train-diffuser --modalities mask,sketch"):
        compare.methods_for(run, ["mask", "sketch"])
    assert "collaborative" not in compare.methods_for(run, ["mask", "sketch"], strict=False)


def test_example_pairs_without_a_modality_fall_back_or_name_the_fix(tmp_path):
    (tmp_path / "examples").mkdir()
    (tmp_path / "examples" / "pairs.jsonl").write_text(json.dumps({"text": "He is old."}) + "\n")
    run = Run(tmp_path)
    assert conditions._val_rows(run, ["text"], 4) == [{"text": "He is old."}]
    with pytest.raises(InputError, match=r"has no mask\); give conditions .*cdiff prepare"):
        conditions._val_rows(run, ["mask", "text"], 4)


def test_a_set_method_names_itself_in_its_errors():
    with pytest.raises(InputError, match="--method collaborative-mask needs two or more"):
        gen.chosen_modalities(gen.GenerateRequest(method="collaborative-mask"))
