"""caption_notes: words the demo text model never saw whole, and captions cut at max_length."""

from __future__ import annotations

import pytest

from cdiff.data.tokenizer import caption_notes, load_bert, load_tokenizer
from cdiff.stages.demo_weights import shipped_run


@pytest.fixture(scope="module")
def demo_tokenizer():
    return load_tokenizer(shipped_run() / "text" / "tokenizer")


def test_unknown_word_is_named_with_close_known_words(demo_tokenizer) -> None:
    notes = caption_notes(demo_tokenizer, ["He is in his sixties.", "He is in his sixties."], 77)
    assert notes == [
        'caption "He is in his sixties." has words the text model never saw as whole words: '
        "sixties (it knows e.g. thirties, seventies)"
    ]


def test_several_unknown_words_in_one_note(demo_tokenizer) -> None:
    assert caption_notes(demo_tokenizer, ["She is SMILING, with eyeglasses!"], 77) == [
        'caption "She is SMILING, with eyeglasses!" has words the text model never saw as whole words: '
        "smiling (no known word is close); eyeglasses (no known word is close)"
    ]


def test_known_words_and_punctuation_give_no_note(demo_tokenizer) -> None:
    captions = [
        "He is in his seventies. He has a full beard.",
        "This lady doesn't have any beard at all; she is a teenager!",
        "The man is about thirty-five years old.",
    ]
    assert caption_notes(demo_tokenizer, captions, 77) == []


def test_long_caption_is_reported_truncated(demo_tokenizer) -> None:
    caption = " ".join(["beard"] * 100)
    assert caption_notes(demo_tokenizer, [caption, "He is old."], 77) == [
        f'caption "{caption[:57]}..." is 102 tokens long with [CLS]/[SEP]; '
        "it was truncated to 77 tokens, so the last 25 were dropped"
    ]
    assert caption_notes(demo_tokenizer, [" ".join(["beard"] * 75)], 77) == []  # exactly 77 tokens


def test_bert_tokenizer(tmp_path) -> None:
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", ".", "he", "has", "a", "short", "beard"]
    vocab += ["##s", "s", "i", "x", "t", "e", "##i", "##x", "##t", "##e"]
    (tmp_path / "vocab.txt").write_text("\n".join(vocab) + "\n")
    tok = load_bert(str(tmp_path), 77)
    assert caption_notes(tok, ["He has a short beard."], 77) == []
    assert caption_notes(tok, ["He has a short beards."], 6) == [
        'caption "He has a short beards." has words the text model never saw as whole words: '
        "beards (it knows e.g. beard)",
        'caption "He has a short beards." is 9 tokens long with [CLS]/[SEP]; '
        "it was truncated to 6 tokens, so the last 3 were dropped",
    ]
