"""Caption trimming (seed §B.1) and the CelebA-Dialog readers."""

from __future__ import annotations

import json

import pytest

from cdiff.data import captions as cap
from cdiff.errors import InputError


def test_trim_keeps_beard_then_age_only():
    attrs = {
        "Bangs": "He has bangs.",
        "Eyeglasses": "He wears glasses.",
        "No_Beard": "He has a thick beard.",
        "Smiling": "He smiles.",
        "Young": "He is in his forties.",
    }
    assert cap.trim_caption(attrs) == "He has a thick beard. He is in his forties."
    assert cap.trim_caption({"No_Beard": "", "Young": "She is a teen."}) == "She is a teen."
    assert cap.trim_caption({"No_Beard": None, "Young": " She is a teen. "}) == "She is a teen."


def test_read_dialog_formats(tmp_path):
    data = {
        "0.jpg": {
            "attribute_wise_captions": {"Bangs": "b", "No_Beard": "No beard.", "Young": "Young."},
            "overall_caption": "All of it.",
        },
        "1.jpg": {"Beard_and_Age": "He is old."},
        "2.jpg": "plain caption",
    }
    (tmp_path / "c.json").write_text(json.dumps(data))
    read = cap.read_dialog_captions(tmp_path / "c.json")
    assert read["0"]["caption"] == "No beard. Young." and read["0"]["raw_caption"] == "All of it."
    assert read["0"]["attribute_captions"]["Bangs"] == "b"
    assert read["1"]["caption"] == "He is old." and read["2"]["caption"] == "plain caption"


def test_read_dialog_errors(tmp_path):
    with pytest.raises(InputError, match="captions file not found"):
        cap.read_dialog_captions(tmp_path / "nope.json")
    (tmp_path / "bad.json").write_text("{oops")
    with pytest.raises(InputError, match="not valid JSON"):
        cap.read_dialog_captions(tmp_path / "bad.json")
    (tmp_path / "odd.json").write_text(json.dumps({"0.jpg": {"something": 1}}))
    with pytest.raises(InputError, match="attribute_wise_captions"):
        cap.read_dialog_captions(tmp_path / "odd.json")


def test_attribute_table_with_count_header_and_mapping(tmp_path):
    (tmp_path / "a.txt").write_text(
        "2\nBangs Eyeglasses No_Beard Smiling Young\n0.jpg 0 1 2 3 4\n5.jpg 5 4 3 2 1\n"
    )
    table = cap.read_attribute_table(tmp_path / "a.txt")
    assert table == {
        "0": {"Bangs": 0, "Eyeglasses": 1, "No_Beard": 2, "Smiling": 3, "Young": 4},
        "5": {"Bangs": 5, "Eyeglasses": 4, "No_Beard": 3, "Smiling": 2, "Young": 1},
    }
    (tmp_path / "orig.txt").write_text("image_name Bangs Young\n000003.jpg 1 2\n000009.jpg 0 0\n")
    (tmp_path / "map.txt").write_text("idx orig_idx orig_file\n0 2 000003.jpg\n")
    mapped = cap.read_attribute_table(tmp_path / "orig.txt", tmp_path / "map.txt")
    assert mapped == {"0": {"Bangs": 1, "Young": 2}}
    (tmp_path / "short.txt").write_text("Bangs Young\n0.jpg 1\n")
    with pytest.raises(InputError, match="has 1 values, header has 2"):
        cap.read_attribute_table(tmp_path / "short.txt")
