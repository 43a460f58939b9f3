"""Presets, overrides and the strict schema."""

from __future__ import annotations

import pytest

from cdiff import config as C
from cdiff.errors import InputError


@pytest.mark.parametrize("name", C.PRESETS)
def test_presets_ship_and_load(name):
    assert name in C.preset_names()
    cfg = C.load_config(name)
    assert cfg.name == name


def test_preset_values():
    assert C.load_config("demo").data.source == "synthetic" and C.load_config("demo").data.resolution == 64
    assert (
        C.load_config("celeba256").data.resolution == 256
        and C.load_config("celeba256").data.val_count == 3000
    )
    assert C.load_config("celeba512").data.resolution == 512
    assert C.load_config("celeba512").data.tokenizer == "bert-base-uncased"


def test_overrides_typed():
    cfg = C.load_config("demo", ["data.num=12", "data.tokenizer=bert-base-uncased", "data.masks=/x"])
    assert cfg.data.num == 12 and cfg.data.tokenizer == "bert-base-uncased" and cfg.data.masks == "/x"
    assert C.load_config("demo", {"data.num": 5}).data.num == 5


@pytest.mark.parametrize(
    "override, message",
    [
        ("data.nmu=3", "unknown config key 'data.nmu'"),
        ("dat.num=3", "unknown config key 'dat'"),
        ("data.num=many", "'data.num': expected an integer"),
        ("data.source=imagenet", "'data.source': 'imagenet' is not one of synthetic, celeba, codiff"),
        ("data.image_format=gif", "'data.image_format'"),
        ("data=3", "'data' must be a mapping"),
        ("novalue", "KEY=VALUE"),
    ],
)
def test_bad_keys_name_the_path(override, message):
    with pytest.raises(InputError, match=message):
        C.load_config("demo", [override])


def test_yaml_file_and_unknown_preset(tmp_path):
    path = tmp_path / "mine.yaml"
    path.write_text("name: mine\ndata:\n  num: 7\n  resolutoin: 32\n")
    with pytest.raises(InputError, match="data.resolutoin"):
        C.load_config(str(path))
    path.write_text("name: mine\ndata:\n  num: 7\n")
    assert C.load_config(str(path)).data.num == 7
    with pytest.raises(InputError, match="unknown preset 'nope'"):
        C.load_config("nope")
    with pytest.raises(InputError, match="config file not found"):
        C.load_config(str(tmp_path / "missing.yaml"))
    (tmp_path / "broken.yaml").write_text("data: [1, 2\n")
    with pytest.raises(InputError, match="not valid YAML"):
        C.load_config(str(tmp_path / "broken.yaml"))


def test_yaml_roundtrip():
    cfg = C.load_config("celeba256", ["data.captions=/data/c.json"])
    again = C.build(C.Config, __import__("yaml").safe_load(C.to_yaml(cfg)))
    assert again == cfg
