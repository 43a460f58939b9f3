"""The modality registry: one module per conditioning modality, holding everything that knows it.

A :class:`Modality` says how its condition is encoded for the UNet (:meth:`Modality.build_encoder`),
read from user input (:meth:`Modality.read`), taken from the prepared dataset
(:meth:`Modality.from_dataset`), nulled for classifier-free guidance (:meth:`Modality.null`), named
on the command line (:attr:`Modality.option`) and drawn in grids and pages (:meth:`Modality.tile`).
Stages, the CLI, the collaboration, evaluation and visualisation loop over :func:`names`; no code
outside this package branches on a modality's name.

A new modality is one module with a subclass and one :func:`register` call; it can live outside
the package (the test suite registers a toy one).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from cdiff.errors import InputError


@dataclass
class Context:
    """What a modality may need to turn values into raw condition tensors.

    ``folder``: the trained expert's folder (its tokenizer, say); ``meta``: its ``config.json``
    record, or ``{"unimodal": <config section>}`` while training; ``data``: the prepared dataset
    (for ``val:<id>`` values and training); ``resolution``: the image size.
    """

    resolution: int
    meta: dict[str, Any] = field(default_factory=dict)
    folder: Path | None = None
    data: Any = None  # PreparedDataset | None
    run_dir: Path | None = None
    cache: dict[str, Any] = field(default_factory=dict)  # per-context memo (a loaded tokenizer, ...)


class ConditionEncoder(nn.Module):
    """What a modality's encoder is: ``encode(raw rows)`` → ``{"tokens": (B, n, C), ...}``.

    ``extra_in`` input channels (a ``"concat"`` entry of ``(B, extra_in, h, w)``) are
    concatenated to the UNet's input when non-zero.
    """

    extra_in: int = 0


class Modality(ABC):
    """The interface of a modality module; subclass it, implement the abstract methods, :func:`register` it."""

    name: str = ""
    option: str = ""  # the CLI option of generate (e.g. --text); empty: only --cond NAME=VALUE
    option_help: str = ""
    option_type: type = str  # what the option takes (a Path for files)
    target_option: str = ""  # edit's target option (e.g. --target-text); empty: none
    target_help: str = ""
    describes: str = ""  # what a value is, for messages ("a caption", "a mask file")
    has_vocabulary: bool = False  # True: the encoder's size depends on the prepared tokenizer
    pictured: bool = False  # True: :meth:`tile` draws its conditions (a mask); False: they are shown as text
    released_role: str = ""  # in the release's re-weighting: "early" (the mask) or "late" (the text)

    @property
    def plural(self) -> str:
        """The folder name for pictures of this modality's conditions (``masks/``)."""
        return self.name + "s"

    @abstractmethod
    def build_encoder(self, cfg: Any, latent_size: int, vocab_size: int | None = None) -> ConditionEncoder:
        """The condition encoder of a uni-modal model (``cfg``: the ``unimodal`` config section)."""

    def vocab_size(self, data: Any) -> int | None:
        """The encoder's vocabulary size from the prepared dataset, when it has one."""
        return None

    def parameter_notes(self, cfg: Any, vocab: int) -> dict[str, int]:
        """Extra rows for ``train-unimodal --dry-run``'s parameter table."""
        return {}

    def export_assets(self, data: Any, folder: Path) -> None:
        """Files a trained expert needs beside its weights (e.g. the tokenizer); none by default."""
        return None

    @abstractmethod
    def from_dataset(self, data: Any, ids: list[str], ctx: Context) -> torch.Tensor:
        """Raw conditions of prepared samples ``ids``, one row each."""

    def dataset_value(self, data: Any, sample_id: str) -> str:
        """A JSON value that :meth:`read` turns back into sample ``sample_id``'s condition."""
        return f"val:{sample_id}"

    @abstractmethod
    def read(self, values: list[Any], ctx: Context, notes: list[str]) -> torch.Tensor:
        """Raw conditions, one row per user value (what the CLI, JSONL and the API give)."""

    @abstractmethod
    def null(self, like: torch.Tensor, ctx: Context) -> torch.Tensor:
        """The null condition (classifier-free guidance) shaped like one row of ``like``: ``like[:1]``."""

    def record(self, value: Any) -> str:
        """A JSON-able record of a user value (a path or caption as given; arrays as a description)."""
        return str(value)

    def persist(self, value: Any, raw_row: torch.Tensor, folder: Path, stem: str) -> str:
        """The record of a value once results are written to ``folder`` (files may be written there)."""
        return self.record(value)

    def save_picture(self, raw_row: torch.Tensor, path: Path) -> bool:
        """Write a condition as a file that :meth:`read` reads back (an edit's target); False: none."""
        return False

    def resolve_path(self, value: str, base: Path) -> str:
        """A JSONL value read relative to the file's folder (for file-valued modalities)."""
        return value

    def tile(self, raw_row: torch.Tensor, size: int) -> np.ndarray | None:
        """A picture of one condition for grids and pages (None: it is shown as text)."""
        return None

    def caption(self, value: Any) -> str | None:
        """Text shown beside pictures (None: nothing)."""
        return None

    def source_tile(self, data: Any, sample_id: str, size: int) -> np.ndarray:
        """In training grids: what stands for sample ``sample_id``'s condition (its picture, or its image)."""
        if not self.pictured:
            return data.image(sample_id)
        return self.tile(self.from_dataset(data, [sample_id], Context(resolution=size, data=data))[0], size)

    def overlay(self, raw_row: torch.Tensor, size: int) -> np.ndarray | None:
        """A class map to draw over a result (visualize), or None."""
        return None

    # ---- evaluation (``cdiff evaluate``) --------------------------------------------------------
    # A modality that can be judged names its per-image scores (``columns``: key → (title, short
    # title), in table order) and its ``headline`` score (the paper's claims compare methods on it).
    columns: dict[str, tuple[str, str]] = {}
    headline: str = ""
    judged_by: str = ""  # how the scores are read, for pages

    def truth(self, data: Any, ids: list[str], judges: Any) -> Any:
        """What images made from the conditions of prepared faces ``ids`` are judged against."""
        return None

    def judge(self, judges: Any, images: torch.Tensor, truth: Any) -> dict[str, torch.Tensor]:
        """Per-image scores of ``images`` (B, 3, H, W in [-1, 1]) against ``truth``; ``judges``: the
        evaluator models (:class:`cdiff.models.evaluator.Evaluator`). Keys with one value per image
        are scores; others (a parsed map) are what :meth:`reading` draws. None by default."""
        return {}

    def reading(self, scores: dict[str, torch.Tensor], j: int) -> np.ndarray | None:
        """A picture of what the judges read in image ``j`` (the parser's map), or None."""
        return None


class PictureModality(Modality):
    """A modality whose conditions are pictures (a mask, a sketch): files, ``val:<id>``, images or arrays.

    Paths are recorded resolved; a picture given as an image or array is written beside the results
    with :meth:`save_picture` when they are saved, so pages can show it.
    """

    pictured = True

    def record(self, value: Any) -> str:
        if _is_image(value):
            return f"<image {value.size[0]}×{value.size[1]}>"
        if isinstance(value, np.ndarray | torch.Tensor):
            return f"<array {'×'.join(map(str, value.shape))}>"
        text = str(value)
        return text if text.startswith("val:") else str(Path(text).resolve())

    def resolve_path(self, value: str, base: Path) -> str:
        return value if Path(value).is_absolute() or value.startswith("val:") else str(base / value)

    def persist(self, value: Any, raw_row: torch.Tensor, folder: Path, stem: str) -> str:
        if isinstance(value, str | Path):
            return self.record(value)
        path = folder / "conditions" / f"{stem}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        self.save_picture(raw_row, path)
        return str(path.resolve())


def _is_image(value: Any) -> bool:
    from PIL import Image

    return isinstance(value, Image.Image)


_REGISTRY: dict[str, Modality] = {}


def register(modality: Modality) -> Modality:
    """Add a modality (replacing one of the same name); returns it."""
    if not modality.name or not modality.name.isidentifier():
        raise ValueError(f"a modality needs an identifier name, got {modality.name!r}")
    _REGISTRY[modality.name] = modality
    return modality


def unregister(name: str) -> None:
    _REGISTRY.pop(name, None)


def names() -> list[str]:
    """The registered modalities, in registration order (the built-ins: text, mask)."""
    return list(_REGISTRY)


def get(name: str) -> Modality:
    """The modality called ``name``, or an :class:`InputError` listing the known ones."""
    try:
        return _REGISTRY[name]
    except KeyError:
        raise InputError(f"unknown modality '{name}'; known: {', '.join(_REGISTRY)}") from None


def check(modalities: list[str] | tuple[str, ...], what: str = "diffuser.modalities") -> list[str]:
    unknown = [m for m in modalities if m not in _REGISTRY]
    if unknown:
        raise InputError(f"{what}: unknown modality {', '.join(unknown)}; known: {', '.join(_REGISTRY)}")
    return list(modalities)


from cdiff.modalities import text as _text  # noqa: E402,F401,I001  (the built-ins register themselves)
from cdiff.modalities import mask as _mask  # noqa: E402,F401
from cdiff.modalities import sketch as _sketch  # noqa: E402,F401

__all__ = [
    "ConditionEncoder",
    "Context",
    "Modality",
    "PictureModality",
    "check",
    "get",
    "names",
    "register",
    "unregister",
]
