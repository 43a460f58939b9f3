"""CelebA-Dialog captions and attribute degrees.

The seed (§B.1) keeps only what the mask cannot show: the beard and age sentences of
CelebA-Dialog's ``attribute_wise_captions`` (keys ``Bangs``, ``Eyeglasses``, ``No_Beard``,
``Smiling``, ``Young``). :func:`trim_caption` does that for real and synthetic data alike;
the untrimmed caption is kept as ``raw_caption``.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from cdiff.errors import InputError

ATTRIBUTE_KEYS = ("Bangs", "Eyeglasses", "No_Beard", "Smiling", "Young")
KEPT_KEYS = ("No_Beard", "Young")  # beard, then age: what the text modality describes
_ALIASES = {"beard": "No_Beard", "no_beard": "No_Beard", "young": "Young", "age": "Young"}


def canonical_key(key: str) -> str:
    """CelebA-Dialog attribute key from its common spellings (``beard`` → ``No_Beard``, ``age`` → ``Young``)."""
    k = key.strip()
    return _ALIASES.get(k.lower(), k)


def trim_caption(attribute_captions: dict[str, Any]) -> str:
    """Beard sentence + age sentence, the text condition the paper trains on."""
    canon = {canonical_key(k): v for k, v in attribute_captions.items()}
    parts = [str(canon.get(k) or "").strip() for k in KEPT_KEYS]
    return " ".join(p for p in parts if p)


def image_id(key: str) -> str:
    """``"27000.jpg"`` / ``"27000.png"`` / ``"27000"`` → ``"27000"``."""
    return Path(str(key)).stem


def read_dialog_captions(path: str | Path) -> dict[str, dict[str, Any]]:
    """Read a captions JSON into ``{id: {"caption", "raw_caption", "attribute_captions"}}``.

    Accepts CelebA-Dialog's ``captions_hq.json`` (``{"<n>.jpg": {"overall_caption",
    "attribute_wise_captions"}}``), the release's trimmed file (``{"<n>.jpg":
    {"Beard_and_Age": caption}}``) and a plain ``{"<n>.jpg": caption}`` dict.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(
            f"captions file not found: {path}; pass CelebA-Dialog's captions_hq.json with --captions"
        )
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InputError(
            f"captions file {path} is not valid JSON ({exc.__class__.__name__}); is it captions_hq.json?"
        ) from None
    if not isinstance(data, dict):
        raise InputError(f'captions file {path}: expected a JSON object keyed by image name like "0.jpg"')
    return {image_id(k): _parse_entry(v, k, path) for k, v in data.items()}


def _parse_entry(value: Any, key: str, path: Path) -> dict[str, Any]:
    if isinstance(value, str):
        return {"caption": value.strip(), "raw_caption": value.strip(), "attribute_captions": {}}
    if not isinstance(value, dict):
        raise InputError(f"captions file {path}: entry {key!r} is neither a caption nor an object")
    if "Beard_and_Age" in value:
        text = str(value["Beard_and_Age"] or "").strip()
        return {"caption": text, "raw_caption": text, "attribute_captions": {}}
    attrs = value.get("attribute_wise_captions")
    overall = str(value.get("overall_caption") or "").strip()
    if not isinstance(attrs, dict):
        raise InputError(
            f"captions file {path}: entry {key!r} has no attribute_wise_captions; is it CelebA-Dialog's captions_hq.json?"
        )
    attrs = {canonical_key(k): ("" if v is None else str(v)) for k, v in attrs.items()}
    return {"caption": trim_caption(attrs), "raw_caption": overall, "attribute_captions": attrs}


def read_attribute_table(path: str | Path, hq_mapping: str | Path | None = None) -> dict[str, dict[str, int]]:
    """Read CelebA-Dialog's fine-grained attribute degrees into ``{id: {attribute: degree}}``.

    A whitespace-separated table: an optional first line with the row count, a header line
    naming the attributes (``Bangs Eyeglasses No_Beard Smiling Young``, optionally preceded by
    an image-name column), then one row per image: ``<name> <degree> ...``. Names are CelebA-HQ
    ids (``27000.jpg``) or, with ``hq_mapping`` (``CelebA-HQ-to-CelebA-mapping.txt``), original
    CelebA file names (``000001.jpg``).
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(
            f"attribute table not found: {path}; pass CelebA-Dialog's fine-grained annotation file"
        )
    lines = [
        ln.split() for ln in path.read_text(encoding="utf-8", errors="replace").splitlines() if ln.strip()
    ]
    if lines and len(lines[0]) == 1 and lines[0][0].isdigit():
        lines = lines[1:]
    if not lines:
        raise InputError(f"attribute table {path} is empty")
    header = [h for h in lines[0] if not re.fullmatch(r"(?i)(file|image|name|img)[_ ]?(name|id)?", h)]
    names = [canonical_key(h) for h in header]
    to_hq = _read_hq_mapping(hq_mapping) if hq_mapping else None
    table: dict[str, dict[str, int]] = {}
    for row in lines[1:]:
        if len(row) != len(names) + 1:
            raise InputError(
                f"attribute table {path}: row {' '.join(row)!r} has {len(row) - 1} values, header has {len(names)}"
            )
        try:
            degrees = {n: int(float(v)) for n, v in zip(names, row[1:], strict=True)}
        except ValueError:
            raise InputError(f"attribute table {path}: non-numeric degree in row {' '.join(row)!r}") from None
        key = image_id(row[0])
        if to_hq is not None:
            if row[0] not in to_hq:
                continue  # a CelebA image that is not in CelebA-HQ
            key = to_hq[row[0]]
        table[key] = degrees
    return table


def _read_hq_mapping(path: str | Path) -> dict[str, str]:
    """``CelebA-HQ-to-CelebA-mapping.txt`` (``idx orig_idx orig_file``) → ``{orig_file: idx}``."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"CelebA-HQ mapping file not found: {path}")
    out = {}
    for line in path.read_text().splitlines()[1:]:
        parts = line.split()
        if len(parts) >= 3 and parts[0].isdigit():
            out[parts[2]] = parts[0]
    if not out:
        raise InputError(
            f"{path} has no 'idx orig_idx orig_file' rows; is it CelebA-HQ-to-CelebA-mapping.txt?"
        )
    return out
