"""The attributes a caption describes, as class indices: what the evaluator's classifier predicts.

The text modality describes gender (through pronouns), the beard and the age (seed §B.1):

- synthetic data: the generator's ground truth (``gender`` man/woman, ``beard`` 0..3, ``age`` 0..4);
- CelebA: CelebA-Dialog's fine-grained degrees (``No_Beard`` and ``Young``, 0..5 each, REFERENCE.md §4);
  gender from the caption's pronouns (CelebA-Dialog has no gender label);
- the release's preprocessed layout (``codiff``): captions only, so gender from pronouns, beard and age unknown.

Unknown values are ``-1`` (ignored by the losses and metrics). An attribute counts as *stated* by a
caption when the caption says it: its beard or age sentence is present, or it uses a gendered word.
"""

from __future__ import annotations

import re
from typing import Any

from cdiff.data.captions import canonical_key

# attribute -> number of classes, per data source
CLASSES: dict[str, dict[str, int]] = {
    "synthetic": {"gender": 2, "beard": 4, "age": 5},
    "celeba": {"gender": 2, "beard": 6, "age": 6},
    "codiff": {"gender": 2, "beard": 6, "age": 6},
}
GENDERS = ("woman", "man")  # class 0, 1
_MALE = re.compile(r"\b(he|his|him|himself|man|men|guy|gentleman|boy|male)\b", re.IGNORECASE)
_FEMALE = re.compile(r"\b(she|her|hers|herself|woman|women|lady|girl|female)\b", re.IGNORECASE)


def classes(source: str) -> dict[str, int]:
    return dict(CLASSES[source])


def caption_gender(caption: str) -> int:
    """1 (man) or 0 (woman) from the caption's gendered words; -1 when none or both."""
    male, female = bool(_MALE.search(caption)), bool(_FEMALE.search(caption))
    return -1 if male == female else int(male)


def targets(record: dict[str, Any], source: str) -> dict[str, int]:
    """Class index per attribute for one prepared record (``-1`` where unknown)."""
    attrs = record.get("attributes") or {}
    out = {name: -1 for name in CLASSES[source]}
    if source == "synthetic" and attrs:
        out["gender"] = GENDERS.index(attrs["gender"])
        out["beard"], out["age"] = int(attrs["beard"]), int(attrs["age"])
        return out
    out["gender"] = caption_gender(record.get("raw_caption") or record.get("caption") or "")
    for name, key in (("beard", "No_Beard"), ("age", "Young")):
        value = attrs.get(key)
        if value is not None and 0 <= int(value) < CLASSES[source][name]:
            out[name] = int(value)
    return out


def stated(record: dict[str, Any], source: str) -> dict[str, int]:
    """The targets the record's caption states (the others set to -1): what text accuracy checks."""
    out = targets(record, source)
    caption = record.get("caption") or ""
    sentences = {canonical_key(k): v for k, v in (record.get("attribute_captions") or {}).items()}
    if caption_gender(caption) == -1:
        out["gender"] = -1
    for name, key in (("beard", "No_Beard"), ("age", "Young")):
        if sentences and not str(sentences.get(key) or "").strip():
            out[name] = -1  # the caption has no sentence about it
    return out
